package integration

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// modesImage is a tiny image as the rootless review's (rev16-rootless): a 0000
// /etc/shadow (Fedora, RHEL), a 4111 sudo, a 0555 dir, a 0000 dir with a file
// in it, a hard-link pair of uid 1000, /dev/null and a file with a
// security.capability xattr.
func modesImage(t *testing.T, r *rootlessEnv) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	add := func(h tar.Header, data string) {
		t.Helper()
		h.ModTime, h.Format, h.Size = mtime, tar.FormatPAX, int64(len(data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	dir := func(name string, mode int64) { add(tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}, "") }
	dir("etc/", 0o755)
	add(tar.Header{Name: "etc/shadow", Mode: 0, Gid: 42}, "root:*:1::::::\n")
	dir("usr/", 0o755)
	dir("usr/bin/", 0o555)
	add(tar.Header{Name: "usr/bin/sudo", Mode: 0o4111}, "#!sudo\n")
	dir("priv/", 0o755)
	dir("priv/sec/", 0)
	add(tar.Header{Name: "priv/sec/key", Mode: 0o400}, "key\n")
	dir("hl/", 0o755)
	add(tar.Header{Name: "hl/a", Mode: 0o644, Uid: 1000, Gid: 1000}, "a\n")
	add(tar.Header{Name: "hl/b", Typeflag: tar.TypeLink, Linkname: "hl/a", Uid: 1000, Gid: 1000}, "")
	dir("dev/", 0o755)
	add(tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, "")
	add(tar.Header{Name: "ping", Mode: 0o755, PAXRecords: map[string]string{
		"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
	}}, "p\n")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(r.dir, "modes.tar")
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run("import", in, "modes:1")
	return "modes:1"
}

// mountAsNobody mounts image as container name on a new dir of nobody's and
// returns it; it is unmounted at the end of the test if the test has not.
func (r *rootlessEnv) mountAsNobody(name, image string) string {
	t := r.t
	t.Helper()
	r.allowFuse()
	mnt := filepath.Join(r.dir, "mnt-"+name)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, nobodyID, nobodyID); err != nil {
		t.Fatal(err)
	}
	r.run("mount", "--name", name, image, mnt)
	t.Cleanup(func() { exec.Command("fusermount3", "-u", mnt).Run() })
	return mnt
}

// sh runs a shell script as nobody in r.dir and returns its output; it fails the
// test if the script fails.
func (r *rootlessEnv) sh(script string) string {
	r.t.Helper()
	out, err := r.trySh(script)
	if err != nil {
		r.t.Fatalf("%s as nobody: %v: %s", script, err, out)
	}
	return out
}

func (r *rootlessEnv) trySh(script string) (string, error) {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = r.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + r.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// tarListing lists a tar as "name mode uid:gid data" lines (data of regular files
// only), sorted.
func tarListing(t *testing.T, p string) []string {
	t.Helper()
	var out []string
	for _, e := range readTarFile(t, p) {
		h := e.hdr
		name := strings.TrimSuffix(h.Name, "/")
		line := fmt.Sprintf("%s %04o %c", name, h.Mode&0o7777, h.Typeflag)
		if h.Typeflag == tar.TypeReg {
			line += " " + strings.TrimSpace(string(e.body))
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

// has fails t unless every line of want is in got.
func has(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	set := map[string]bool{}
	for _, g := range got {
		set[g] = true
	}
	for _, w := range want {
		if !set[w] {
			t.Errorf("%s: no %q in\n%s", what, w, strings.Join(got, "\n"))
		}
	}
}

// TestRootlessOwnerDeniedModes: unprivileged export, diff and commit read files
// and dirs whose modes deny their owner (the image's 0000 /etc/shadow, 4111 sudo
// and 0000 dir; a user's chmod 0, 0200, 0000 and 0300 through the mount), as
// umoci's rootless mode does; each failed with "permission denied"
// (rev16-rootless items 2 and 3).
func TestRootlessOwnerDeniedModes(t *testing.T) {
	r := newRootlessEnv(t)
	img := modesImage(t, r)
	r.run("export", "-o", "img.tar", img)
	has(t, "export of the image", tarListing(t, filepath.Join(r.dir, "img.tar")),
		"etc/shadow 0000 0 root:*:1::::::", "usr/bin/sudo 4111 0 #!sudo", "priv/sec 0000 5",
		"priv/sec/key 0400 0 key")
	mnt := r.mountAsNobody("c", img)
	r.sh("cd " + mnt + " && echo x > f0 && chmod 0 f0 && echo w > w && chmod 0200 w" +
		" && mkdir -p d/in && echo z > d/in/z && chmod 0 d/in/z d/in d && mkdir e && echo e > e/f && chmod 0300 e")
	diff := r.run("diff", "c")
	for _, w := range []string{"A /f0", "A /w", "A /d", "A /d/in/z", "A /e", "A /e/f"} {
		if !strings.Contains(diff, w+"\n") {
			t.Errorf("diff as nobody: no %q in\n%s", w, diff)
		}
	}
	r.run("export", "-o", "c.tar", "c")
	mine := []string{"f0 0000 0 x", "w 0200 0 w", "d 0000 5", "d/in/z 0000 0 z", "e 0300 5", "e/f 0644 0 e"}
	has(t, "export of the container", tarListing(t, filepath.Join(r.dir, "c.tar")), append(mine, "etc/shadow 0000 0 root:*:1::::::")...)
	r.run("commit", "c", "modes:2")
	r.run("umount", mnt)
	r.run("export", "-o", "img2.tar", "modes:2")
	has(t, "export of the commit", tarListing(t, filepath.Join(r.dir, "img2.tar")), append(mine, "usr/bin/sudo 4111 0 #!sudo")...)
	r.run("rm", "c")
}

// TestRootlessCopyUpOwnerDenied: as nobody, chmod, touch and mv through the mount
// of image entries whose modes deny their owner read (0000 /etc/shadow, 4111
// sudo, a 0000 dir, a dir holding them) copy them up, as a root mount does; each
// failed with "Permission denied" (rev16-rootless item 5). The image's layer
// keeps its modes.
func TestRootlessCopyUpOwnerDenied(t *testing.T) {
	r := newRootlessEnv(t)
	img := modesImage(t, r)
	mnt := r.mountAsNobody("c", img)
	r.sh("cd " + mnt + " && chmod 600 etc/shadow && touch etc/shadow && cat etc/shadow && mv etc etc2" +
		" && chmod 4755 usr/bin/sudo && chmod 700 priv/sec && cat priv/sec/key && chmod 0 priv/sec && mv priv priv2")
	out := r.sh("cd " + mnt + " && stat -c '%n %a' etc2/shadow usr/bin/sudo priv2/sec && ls priv2 etc2")
	if want := "etc2/shadow 600\nusr/bin/sudo 4755\npriv2/sec 0\netc2:\nshadow\n\npriv2:\nsec\n"; out != want {
		t.Errorf("after the edits:\n%s\nwant:\n%s", out, want)
	}
	r.run("commit", "c", "modes:2")
	r.run("umount", mnt)
	r.run("export", "-o", "img2.tar", "modes:2")
	has(t, "export of the commit", tarListing(t, filepath.Join(r.dir, "img2.tar")),
		"etc2/shadow 0600 0 root:*:1::::::", "usr/bin/sudo 4755 0 #!sudo", "priv2/sec 0000 5", "priv2/sec/key 0400 0 key")
	r.run("export", "-o", "img1.tar", img)
	has(t, "export of the image", tarListing(t, filepath.Join(r.dir, "img1.tar")),
		"etc/shadow 0000 0 root:*:1::::::", "usr/bin/sudo 4111 0 #!sudo", "priv/sec 0000 5")
	r.run("rm", "c")
}

// TestRootlessDirNoOwnerAccess: a dir nobody makes 0000 or 0300 through the mount
// is listed, stat-able and chmod-able there, as with fuse-overlayfs and a plain
// dir; it vanished (EACCES from the fs's opaque check, rev16-rootless item 4).
// An opaque dir (made over a lower one) stays opaque through such modes: after
// chmod 700 it shows its own entries, not the lower ones.
func TestRootlessDirNoOwnerAccess(t *testing.T) {
	r := newRootlessEnv(t)
	img := modesImage(t, r)
	mnt := r.mountAsNobody("c", img)
	r.sh("cd " + mnt + " && mkdir d e && echo in > d/f && chmod 0 d && chmod 0300 e" +
		" && rm -rf hl && mkdir hl && echo new > hl/n && chmod 0 hl")
	out := r.sh("cd " + mnt + " && ls && stat -c '%n %a' d e hl && chmod 700 d e hl && ls d e hl && cat d/f")
	want := "d\ndev\ne\netc\nhl\nping\npriv\nusr\nd 0\ne 300\nhl 0\nd:\nf\n\ne:\n\nhl:\nn\nin\n"
	if out != want {
		t.Errorf("through the mount:\n%s\nwant:\n%s", out, want)
	}
	// The same, looked up for the first time while 0000 (a fresh mount).
	r.run("umount", mnt)
	r.run("mount", "--name", "c", img, mnt)
	r.sh("cd " + mnt + " && chmod 0 hl d")
	r.run("umount", mnt)
	r.run("mount", "--name", "c", img, mnt)
	out = r.sh("cd " + mnt + " && stat -c '%n %a' d hl && chmod 700 hl d && ls hl d")
	if want := "d 0\nhl 0\nd:\nf\n\nhl:\nn\n"; out != want {
		t.Errorf("after a remount:\n%s\nwant:\n%s", out, want)
	}
	r.run("umount", mnt)
	r.run("rm", "c")
}

// TestRootlessUnpackWarns: as nobody, the first unpack of a layer (here by an
// export) names the device nodes and xattrs it cannot make in one WARNING line
// on stderr; they went without a word (rev16-rootless item 6). A second export
// does not unpack again and says nothing.
func TestRootlessUnpackWarns(t *testing.T) {
	r := newRootlessEnv(t)
	img := modesImage(t, r)
	export := func() string {
		cmd := exec.Command(r.bin, "--root", filepath.Join(r.dir, "root"), "export", "-o", "x.tar", img)
		cmd.Dir = r.dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + r.dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}}
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("export as nobody: %v\n%s", err, errOut.String())
		}
		return errOut.String()
	}
	out := export()
	for _, w := range []string{"WARNING: unprivileged unpack of layer", "dev/null (char device 1:3)", "ping (xattr security.capability)"} {
		if !strings.Contains(out, w) {
			t.Errorf("export's stderr does not say %q:\n%s", w, out)
		}
	}
	if n := strings.Count(out, "WARNING"); n != 1 {
		t.Errorf("export's stderr has %d warnings, want 1:\n%s", n, out)
	}
	if out := export(); strings.Contains(out, "WARNING") {
		t.Errorf("second export's stderr: %s", out)
	}
}

// TestRootlessBelowOwnerDeniedDir: as nobody, below an image's 0000 dir the user
// made 0700 through the mount, a nested dir lists, its file reads, a symlink
// reads, a dir's xattrs read and the dir moves, as on a local dir; each failed
// with EACCES, as the fs walked the path, read the link and opened the entry for
// its xattrs in the layer's 0000 copy with no fallback (rev16-diff2 item 2). A
// symlink in a dir the user made 0000 is committed with its target; the commit
// failed with "readlink: permission denied" (rev16-diff2 item 1).
func TestRootlessBelowOwnerDeniedDir(t *testing.T) {
	r := newRootlessEnv(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{
		{Name: "z/", Typeflag: tar.TypeDir, Mode: 0},
		{Name: "z/sub/", Typeflag: tar.TypeDir, Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}},
		{Name: "z/sub/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
		{Name: "z/l", Typeflag: tar.TypeSymlink, Linkname: "sub/f"},
		{Name: "z/e/", Typeflag: tar.TypeDir, Mode: 0},
	} {
		h.ModTime, h.Format = time.Unix(1700000000, 0), tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("f\n"))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "n.tar"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run("import", filepath.Join(r.dir, "n.tar"), "n:1")
	mnt := r.mountAsNobody("c", "n:1")
	out := r.sh("cd " + mnt + " && chmod 700 z && ls z z/sub && cat z/sub/f && readlink z/l && cat z/l" +
		" && getfattr --only-values -n user.k z/sub && echo && ls -l z >/dev/null && mv z z2 && ls z2/sub && stat -c '%n %a' z2 z2/e")
	if want := "z:\ne\nl\nsub\n\nz/sub:\nf\nf\nsub/f\nf\nv\nf\nz2 700\nz2/e 0\n"; out != want {
		t.Errorf("through the mount:\n%s\nwant:\n%s", out, want)
	}
	r.sh("cd " + mnt + " && mkdir q && ln -s t q/l && echo hi > q/f && chmod 0 q")
	r.run("commit", "c", "n:2")
	r.run("umount", mnt)
	r.run("export", "-o", "n2.tar", "n:2")
	has(t, "export of the commit", tarListing(t, filepath.Join(r.dir, "n2.tar")),
		"q 0000 5", "q/l 0777 2", "q/f 0644 0 hi", "z2 0700 5", "z2/sub/f 0644 0 f", "z2/l 0777 2")
	for _, e := range readTarFile(t, filepath.Join(r.dir, "n2.tar")) {
		if e.hdr.Name == "q/l" && e.hdr.Linkname != "t" || e.hdr.Name == "z2/l" && e.hdr.Linkname != "sub/f" {
			t.Errorf("%s -> %q", e.hdr.Name, e.hdr.Linkname)
		}
	}
	r.run("rm", "c")
}

// TestRootlessChmodDuringLookups: as nobody, a chmod through the mount of a dir
// the user made 0000 is kept while the mount looks the dir up meanwhile (ls -l
// of its parent in a loop): the lookup's opaque check opens the dir up for a
// moment, and put back the mode it had read over the chmod, in the upper dir,
// for good (rev16-diff2 item 3: within a few hundred rounds).
func TestRootlessChmodDuringLookups(t *testing.T) {
	r := newRootlessEnv(t)
	img := modesImage(t, r)
	mnt := r.mountAsNobody("c", img)
	// The upper dir may show the lookup's widened 0700 for a moment, never 0.
	up := filepath.Join(r.dir, "root", "work", "c", "upper", "d")
	out := r.sh("set -e; cd " + mnt + "; mkdir d; chmod 0 d; stat -c %a " + up + "; stop=" + r.dir + "/stop\n" +
		"( while [ ! -e $stop ]; do ls -l >/dev/null 2>&1; done ) &\n" +
		"for i in $(seq 1500); do chmod 0 d; chmod 300 d; [ $(stat -c %a " + up + ") != 0 ] || { echo undone at $i; break; }; done\n" +
		"touch $stop; wait; stat -c %a d " + up)
	if want := "0\n300\n300\n"; out != want {
		t.Errorf("through the mount:\n%s\nwant:\n%s", out, want)
	}
	r.run("umount", mnt)
	r.run("mount", "--name", "c", img, mnt)
	if out := r.sh("stat -c %a " + mnt + "/d"); out != "300\n" {
		t.Errorf("after a remount: %s, want 300", out)
	}
	r.run("umount", mnt)
	r.run("rm", "c")
}
