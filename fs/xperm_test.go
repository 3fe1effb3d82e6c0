package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// forceMaskLayer writes a layer as containers/storage stores one under
// force_mask = "shared": every entry root-owned and 0755 on disk, the real owner
// and mode in user.containers.override_stat (the layer's root dir too). plain
// has no override; link is a symlink. Dirs on the way are opened for the
// test's other users.
func forceMaskLayer(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		must(t, os.Chmod(p, 0o755))
	}
	for _, dir := range []string{"d", "tmp", "priv"} {
		must(t, os.Mkdir(filepath.Join(d, dir), 0o755))
	}
	for _, f := range []string{"d/f", "plain"} {
		must(t, os.WriteFile(filepath.Join(d, f), []byte("x\n"), 0o755))
	}
	must(t, os.Symlink("d/f", filepath.Join(d, "link")))
	for p, v := range map[string]string{
		".":    "0:0:0555:dir",
		"d":    "0:0:0755:dir",
		"d/f":  "1000:1000:0644:file", // newer writers append the type
		"tmp":  "0:0:1777",
		"priv": "1000:1000:700",
	} {
		must(t, unix.Setxattr(filepath.Join(d, p), overrideContainersXattr, []byte(v), 0))
	}
	return d
}

// mountXperm mounts lowers with xattr_permissions=xperm and a fresh upper.
func mountXperm(t *testing.T, xperm int, lowers ...string) *union {
	t.Helper()
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	d := t.TempDir()
	must(t, os.Chmod(d, 0o755))
	u := &union{mnt: filepath.Join(d, "mnt"), upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"), lowers: lowers}
	for _, p := range []string{u.mnt, u.upper, u.work} {
		must(t, os.Mkdir(p, 0o755))
	}
	u.m = mountXpermAt(t, u, xperm)
	t.Cleanup(func() { u.unmount(t) })
	return u
}

func mountXpermAt(t *testing.T, u *union, xperm int) *MountPoint {
	t.Helper()
	m, err := Mount(u.mnt, Options{Lowers: u.lowers, Upper: u.upper, Work: u.work, Format: cow.FormatOverlay,
		FsName: "layerfs-test", XattrPermissions: xperm})
	must(t, err)
	return m
}

// statOf returns "mode uid:gid type" of p (lstat).
func statOf(t *testing.T, p string) string {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	typ := map[uint32]string{unix.S_IFREG: "file", unix.S_IFDIR: "dir", unix.S_IFLNK: "link"}[st.Mode&unix.S_IFMT]
	return fmt.Sprintf("%04o %d:%d %s", st.Mode&0o7777, st.Uid, st.Gid, typ)
}

// asUser runs script in dir as uid:gid and returns its trimmed output.
func asUser(dir string, uid uint32, script string) string {
	cmd := inMount(dir, script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, _ := cmd.CombinedOutput()
	return strings.TrimSpace(string(out))
}

func xattrOf(t *testing.T, p, name string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(buf[:n])
}

// TestXattrPermissions: with xattr_permissions=2 (what containers/storage passes
// with force_mask), lower entries show the owner and mode of their layer's
// override xattr, the kernel checks access by them, chmod and chown of a
// copied-up entry go to the upper's override xattrs (not to the file), entries
// made through the mount get one with their maker's owner, and all of it holds
// after a remount. A layer whose root carries no override shows its files as
// stored, as fuse-overlayfs does.
func TestXattrPermissions(t *testing.T) {
	lower := forceMaskLayer(t)
	bare := forceMaskLayer(t) // the same, but its root names no override
	must(t, unix.Removexattr(bare, overrideContainersXattr))
	must(t, os.Rename(filepath.Join(bare, "d"), filepath.Join(bare, "bd")))
	u := mountXperm(t, 2, lower, bare)
	p := func(name string) string { return filepath.Join(u.mnt, name) }

	for name, want := range map[string]string{
		".":     "0555 0:0 dir",
		"d":     "0755 0:0 dir",
		"d/f":   "0644 1000:1000 file",
		"tmp":   "1777 0:0 dir",
		"priv":  "0700 1000:1000 dir",
		"plain": "0755 0:0 file",
		"link":  "0777 0:0 link",
		"bd/f":  "0755 0:0 file", // its layer's root has no override
	} {
		if got := statOf(t, p(name)); got != want {
			t.Errorf("stat %s through the mount = %s, want %s", name, got, want)
		}
	}
	// The overrides are the mount's own: nobody sets, removes or sees them
	// through it (a user could otherwise make a file of theirs root's and
	// set-uid).
	for _, name := range []string{overrideContainersXattr, overrideUserXattr} {
		if err := unix.Setxattr(p("d/f"), name, []byte("0:0:4755"), 0); err != unix.EPERM {
			t.Errorf("setxattr %s through the mount = %v, want EPERM", name, err)
		}
		if err := unix.Removexattr(p("d/f"), name); err != unix.EPERM {
			t.Errorf("removexattr %s through the mount = %v, want EPERM", name, err)
		}
	}
	if got := xattrOf(t, p("d/f"), overrideContainersXattr); got != "<"+unix.ENODATA.Error()+">" {
		t.Errorf("getxattr %s through the mount = %q, want ENODATA", overrideContainersXattr, got)
	}
	lbuf := make([]byte, 4096)
	ln, err := unix.Listxattr(p("d/f"), lbuf)
	must(t, err)
	if strings.Contains(string(lbuf[:ln]), "override_stat") {
		t.Errorf("listxattr through the mount shows an override: %q", lbuf[:ln])
	}
	if got := statOf(t, p("d/f")); got != "0644 1000:1000 file" {
		t.Errorf("d/f after the refused setxattr = %s", got)
	}
	// readdirplus: the listing's attributes are the same.
	ents, err := os.ReadDir(p("d"))
	must(t, err)
	for _, e := range ents {
		if fi, err := e.Info(); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("d/%s listed with mode %v (%v), want 0644", e.Name(), fi.Mode(), err)
		}
	}

	// The kernel checks access by the shown owners and modes.
	if got := asUser(u.mnt, 1000, `echo a >> d/f && echo own-ok; echo t > tmp/t && echo tmp-ok; ls priv >/dev/null && echo priv-ok`); got != "own-ok\ntmp-ok\npriv-ok" {
		t.Errorf("uid 1000 in the mount: %q, want own-ok, tmp-ok, priv-ok", got)
	}
	if got := asUser(u.mnt, 1001, `(echo a >> d/f) 2>/dev/null || echo denied; ls priv >/dev/null 2>&1 || echo denied; rm -f tmp/t 2>/dev/null; test -e tmp/t && echo sticky`); got != "denied\ndenied\nsticky" {
		t.Errorf("uid 1001 in the mount: %q, want denied, denied, sticky", got)
	}
	if got := readFile(t, p("d/f")); got != "x\na\n" {
		t.Errorf("d/f = %q after uid 1000's append", got)
	}

	// A new file: its maker's owner and mode in the upper's override xattrs.
	if got := statOf(t, p("tmp/t")); got != "0644 1000:1000 file" {
		t.Errorf("stat tmp/t (made by uid 1000) = %s, want 0644 1000:1000 file", got)
	}
	for _, x := range []string{overrideContainersXattr, overrideUserXattr} {
		if got := xattrOf(t, filepath.Join(u.upper, "tmp/t"), x); got != "1000:1000:644" {
			t.Errorf("%s of upper tmp/t = %q, want 1000:1000:644", x, got)
		}
	}
	if got := asUser(u.mnt, 1000, `umask 027; mkdir tmp/nd && echo ok`); got != "ok" {
		t.Errorf("mkdir by uid 1000: %q", got)
	}
	if got := statOf(t, p("tmp/nd")); got != "0750 1000:1000 dir" {
		t.Errorf("stat tmp/nd = %s, want 0750 1000:1000 dir", got)
	}

	// chmod and chown of a lower file after its copy-up: in the xattrs, not the file.
	must(t, unix.Chmod(p("d/f"), 0o4600))
	if got := statOf(t, p("d/f")); got != "4600 1000:1000 file" {
		t.Errorf("stat d/f after chmod 4600 = %s", got)
	}
	must(t, os.Lchown(p("d/f"), 2000, 2001))
	if got := statOf(t, p("d/f")); got != "0600 2000:2001 file" { // chown clears set-uid
		t.Errorf("stat d/f after chown 2000:2001 = %s, want 0600 2000:2001 file", got)
	}
	if got := statOf(t, filepath.Join(u.upper, "d/f")); got != "0755 0:0 file" {
		t.Errorf("the upper's d/f itself = %s, want it as stored (0755 0:0 file)", got)
	}
	if got := xattrOf(t, filepath.Join(u.upper, "d/f"), overrideContainersXattr); got != "2000:2001:600" {
		t.Errorf("override of upper d/f = %q, want 2000:2001:600", got)
	}
	// Through an open file too (fchmod).
	f, err := os.OpenFile(p("priv"), os.O_RDONLY, 0)
	must(t, err)
	must(t, f.Chmod(0o710))
	f.Close()
	if got := statOf(t, p("priv")); got != "0710 1000:1000 dir" {
		t.Errorf("stat priv after fchmod 710 = %s", got)
	}
	// A symlink's owner is its own (no override).
	must(t, os.Lchown(p("link"), 5, 6))
	if got := statOf(t, p("link")); got != "0777 5:6 link" {
		t.Errorf("stat link after lchown 5:6 = %s", got)
	}

	// Remounted, the upper's overrides are read back.
	u.unmount(t)
	u.m = mountXpermAt(t, u, 2)
	for name, want := range map[string]string{"d/f": "0600 2000:2001 file", "tmp/t": "0644 1000:1000 file", "tmp/nd": "0750 1000:1000 dir", "priv": "0710 1000:1000 dir", "tmp": "1777 0:0 dir"} {
		if got := statOf(t, p(name)); got != want {
			t.Errorf("after a remount, stat %s = %s, want %s", name, got, want)
		}
	}
}

// TestXattrPermissionsOff: without the option the same layer shows as stored,
// chmod changes the file and no override xattr is written.
func TestXattrPermissionsOff(t *testing.T) {
	lower := forceMaskLayer(t)
	u := mountXperm(t, 0, lower)
	p := func(name string) string { return filepath.Join(u.mnt, name) }
	for name, want := range map[string]string{"d/f": "0755 0:0 file", "tmp": "0755 0:0 dir", "priv": "0755 0:0 dir"} {
		if got := statOf(t, p(name)); got != want {
			t.Errorf("stat %s = %s, want %s", name, got, want)
		}
	}
	if got := asUser(u.mnt, 1000, `(echo a >> d/f) 2>/dev/null || echo denied`); got != "denied" {
		t.Errorf("uid 1000 appending to root's 0755 d/f: %q, want denied", got)
	}
	must(t, os.Chmod(p("d/f"), 0o600))
	if got := statOf(t, filepath.Join(u.upper, "d/f")); got != "0600 0:0 file" {
		t.Errorf("the upper's d/f after chmod 600 = %s", got)
	}
	if got := xattrOf(t, filepath.Join(u.upper, "d/f"), overrideContainersXattr); got != "1000:1000:0644:file" {
		t.Errorf("override of upper d/f = %q, want the lower's, copied up unchanged", got)
	}
	must(t, os.WriteFile(p("new"), nil, 0o644))
	if got := xattrOf(t, filepath.Join(u.upper, "new"), overrideContainersXattr); !strings.Contains(got, "no data") {
		t.Errorf("override of a new file without the option = %q, want none", got)
	}
}

func TestParseOverride(t *testing.T) {
	for v, want := range map[string][4]uint32{
		"1000:1000:0644":      {1000, 1000, 0o644, 1},
		"0:0:1777":            {0, 0, 0o1777, 1},
		"5:6:0755:dir":        {5, 6, 0o755, 1},
		"5:6:040755":          {5, 6, 0o755, 1}, // type bits dropped
		"5:6":                 {0, 0, 0, 0},
		"a:6:0755":            {0, 0, 0, 0},
		"5:6:9":               {0, 0, 0, 0},
		"1:2:644:char-1-3:xx": {1, 2, 0o644, 1},
	} {
		u, g, m, ok := parseOverride([]byte(v))
		got := [4]uint32{u, g, m, 0}
		if ok {
			got[3] = 1
		}
		if got != want {
			t.Errorf("parseOverride(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestXattrPermissionsKept: what the rev19-xperm review found each showing the
// stored owner and mode, or an override it should not, in place of the one a
// file had: a hard link's reply, a copy-up from a layer that uses
// user.fuseoverlayfs.override_stat, a copy-up from a layer without overrides
// whose file carries a stale one (it made the file root's and set-uid), and a
// dir made in a dir set-gid by its override (the kernel makes it set-gid too).
func TestXattrPermissionsKept(t *testing.T) {
	lower := forceMaskLayer(t)
	bare := forceMaskLayer(t) // its root names no override
	must(t, unix.Removexattr(bare, overrideContainersXattr))
	must(t, os.Rename(filepath.Join(bare, "d"), filepath.Join(bare, "bd")))
	must(t, unix.Setxattr(filepath.Join(bare, "bd/f"), overrideContainersXattr, []byte("0:0:4755"), 0))
	fo := t.TempDir() // overrides in user.fuseoverlayfs.override_stat
	must(t, os.Chmod(fo, 0o755))
	must(t, os.Mkdir(filepath.Join(fo, "secret"), 0o755))
	must(t, os.WriteFile(filepath.Join(fo, "secret/key"), []byte("k\n"), 0o755))
	for p, v := range map[string]string{".": "0:0:755", "secret": "0:0:700", "secret/key": "0:0:600"} {
		must(t, unix.Setxattr(filepath.Join(fo, p), overrideUserXattr, []byte(v), 0))
	}
	must(t, os.Mkdir(filepath.Join(lower, "sg"), 0o755))
	must(t, unix.Setxattr(filepath.Join(lower, "sg"), overrideContainersXattr, []byte("0:1000:2777"), 0))
	u := mountXperm(t, 2, lower, fo, bare)
	p := func(name string) string { return filepath.Join(u.mnt, name) }

	must(t, os.WriteFile(p("tmp/s"), []byte("secret\n"), 0o644))
	must(t, os.Chmod(p("tmp/s"), 0o600))
	must(t, os.Link(p("tmp/s"), p("tmp/s2")))
	for _, name := range []string{"tmp/s", "tmp/s2"} {
		if got := statOf(t, p(name)); got != "0600 0:0 file" {
			t.Errorf("%s after a hard link = %s, want 0600 0:0 file", name, got)
		}
	}
	now := time.Now()
	for _, name := range []string{"secret/key", "bd/f"} {
		must(t, os.Chtimes(p(name), now, now)) // a copy-up
	}
	for name, want := range map[string]string{"secret": "0700 0:0 dir", "secret/key": "0600 0:0 file", "bd/f": "0755 0:0 file"} {
		if got := statOf(t, p(name)); got != want {
			t.Errorf("%s after its copy-up = %s, want %s", name, got, want)
		}
	}
	if got := asUser(u.mnt, 1001, `cat tmp/s secret/key 2>/dev/null || echo denied`); got != "denied" {
		t.Errorf("uid 1001 reading root's 0600 files: %q, want denied", got)
	}
	if got := asUser(u.mnt, 1001, `mkdir sg/nd && mkdir sg/nd/sub && echo ok`); got != "ok" {
		t.Fatalf("mkdir in a set-gid dir: %q", got)
	}
	for _, name := range []string{"sg/nd", "sg/nd/sub"} {
		if got := statOf(t, p(name)); got != "2755 1001:1000 dir" {
			t.Errorf("%s = %s, want 2755 1001:1000 dir (set-gid, its group)", name, got)
		}
	}
}
