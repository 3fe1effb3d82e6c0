package integration

// End-to-end tests of commit, diff and export: the real binary, real FUSE mounts.
//
// Round trips: mount base:1, apply the same changes through the mount and to a
// plain copy of the base tree, commit, umount, mount the committed tag: the tree
// equals the copy (internal/treecmp: type, mode, owner, size, content, link target,
// xattrs, hardlink groups, mtime). umoci unpack of the committed image gives the
// same tree.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/treecmp"
	"golang.org/x/sys/unix"
)

// op is one change, applied to a tree rooted at root.
type op func(root string) error

func write(rel, data string) op {
	return func(r string) error { return os.WriteFile(filepath.Join(r, rel), []byte(data), 0o644) }
}

func appendTo(rel, data string) op {
	return func(r string) error {
		f, err := os.OpenFile(filepath.Join(r, rel), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
}

func remove(rel string) op { return func(r string) error { return os.Remove(filepath.Join(r, rel)) } }
func removeAll(rel string) op {
	return func(r string) error { return os.RemoveAll(filepath.Join(r, rel)) }
}
func mkdir(rel string) op {
	return func(r string) error { return os.Mkdir(filepath.Join(r, rel), 0o755) }
}
func rename(a, b string) op {
	return func(r string) error { return os.Rename(filepath.Join(r, a), filepath.Join(r, b)) }
}
func hardlink(a, b string) op {
	return func(r string) error { return os.Link(filepath.Join(r, a), filepath.Join(r, b)) }
}
func symlink(target, rel string) op {
	return func(r string) error { return os.Symlink(target, filepath.Join(r, rel)) }
}
func chmod(rel string, m os.FileMode) op {
	return func(r string) error { return os.Chmod(filepath.Join(r, rel), m) }
}
func chown(rel string, uid, gid int) op {
	return func(r string) error { return os.Lchown(filepath.Join(r, rel), uid, gid) }
}
func mkfifo(rel string) op {
	return func(r string) error { return unix.Mkfifo(filepath.Join(r, rel), 0o640) }
}
func mknod(rel string, major, minor uint32) op {
	return func(r string) error {
		return unix.Mknod(filepath.Join(r, rel), unix.S_IFCHR|0o620, int(unix.Mkdev(major, minor)))
	}
}
func setxattr(rel, k, v string) op {
	return func(r string) error { return unix.Lsetxattr(filepath.Join(r, rel), k, []byte(v), 0) }
}
func removexattr(rel, k string) op {
	return func(r string) error { return unix.Lremovexattr(filepath.Join(r, rel), k) }
}

// sparse makes a size-byte file with a few data islands and holes everywhere else.
func sparse(rel string, size int64) op {
	return func(r string) error {
		f, err := os.Create(filepath.Join(r, rel))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			return err
		}
		for _, off := range []int64{0, size / 3, size - 5} {
			if _, err := f.WriteAt([]byte("data!"), off); err != nil {
				return err
			}
		}
		return f.Close()
	}
}

type changeSet struct {
	name string
	ops  []op
}

var changeSets = []changeSet{
	{"modify lower files", []op{appendTo("etc/passwd", "new:x:1001:1001::/:/bin/sh\n"), write("etc/motd", "changed\n"), write("var/lib/data/05.dat", "")}},
	{"add files and dirs", []op{mkdir("new"), mkdir("new/sub"), write("new/sub/f", "f\n"), write("etc/conf.d/c.conf", "c=3\n"), symlink("../etc", "new/etc-link")}},
	{"delete lower files and dirs", []op{remove("etc/motd"), removeAll("usr/share/doc"), remove("var/lib/data/00.dat"), remove("lib"), remove("opt/dangling")}},
	{"delete and recreate dir", []op{removeAll("etc/conf.d"), mkdir("etc/conf.d"), write("etc/conf.d/only.conf", "only\n"), removeAll("var/log"), mkdir("var/log")}},
	{"file to dir and back", []op{remove("etc/motd"), mkdir("etc/motd"), write("etc/motd/inside", "x\n"), removeAll("opt/app/sub"), write("opt/app/sub", "now a file\n")}},
	{"rename lower dirs", []op{rename("usr/share/doc", "usr/share/documentation"), rename("etc/conf.d", "etc/conf.old"), mkdir("etc/conf.d"), rename("var/lib/data/01.dat", "var/lib/one.dat")}},
	{"hard links to lower files", []op{hardlink("etc/passwd", "etc/passwd.link"), hardlink("usr/lib/libx.so.1", "opt/libx-copy"), mkdir("links"), write("links/a", "a\n"), hardlink("links/a", "links/b")}},
	{"hard link then modify", []op{hardlink("etc/conf.d/a.conf", "a.conf.link"), appendTo("a.conf.link", "more\n"), appendTo("usr/lib/libx.so.1.0", "tail")}},
	{"chmod only and chown only", []op{chmod("etc/motd", 0o600), chown("etc/conf.d/a.conf", 1000, 1000), chmod("var/lib/data", 0o700), chown("srv/www", 33, 33), chmod("usr/bin/tool", 0o755), chown("lib", 1000, 1000)}},
	{"special files", []op{mkfifo("run/newpipe"), mknod("dev/tty0", 4, 0), remove("dev/null"), mknod("dev/null", 1, 5), symlink("/abs/target", "abs-link")}},
	{"xattrs", []op{setxattr("opt/app/config.json", "user.origin", "changed"), removexattr("opt/app/config.json", "user.empty"), setxattr("etc/motd", "user.new", "v"), write("xfile", "x"), setxattr("xfile", "user.k", "\x00\x01binary")}},
	{"long and non-UTF-8 names", []op{write(strings.Repeat("n", 251), "longest name with room for .wh.\n"), write("caf\xe9 \x01\x7f.txt", "odd\n"), remove(nonUTF8), appendTo(longName, "more\n"), write(deepPath+".new", "deeper\n"), mkdir("d\xff\xfe"), write("d\xff\xfe/f", "in odd dir\n")}},
	{"sparse 1 GiB", []op{sparse("big.sparse", 1<<30)}},
}

// applyOps applies ops to root and then normalizes the mtimes they touched.
func applyOps(t *testing.T, root string, ops []op, since time.Time) {
	t.Helper()
	for i, o := range ops {
		if err := o(root); err != nil {
			t.Fatalf("change %d in %s: %v", i, root, err)
		}
	}
	normalizeTimes(t, root, since)
}

func TestCommitRoundTrip(t *testing.T) {
	e := newCommitEnv(t)
	umoci := true
	if _, err := exec.LookPath("umoci"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("umoci not on PATH in CI")
		}
		umoci = false
	}
	for i, cs := range changeSets {
		t.Run(cs.name, func(t *testing.T) {
			e.t = t
			name := fmt.Sprintf("rt%d", i)
			tag := fmt.Sprintf("rt:%d", i)
			mnt := e.mount(name, "base:1")
			ref := filepath.Join(t.TempDir(), "ref")
			copyTree(t, e.baseDir, ref)
			since := time.Now().Add(-time.Second)
			applyOps(t, ref, cs.ops, since)
			applyOps(t, mnt, cs.ops, since)
			treecmp.Equal(t, ref, mnt, treeOpts) // the mount itself, before any commit
			// Even sets commit while mounted, odd ones after umount.
			if i%2 == 1 {
				e.ok("umount", mnt)
			}
			id := strings.TrimSpace(e.ok("commit", name, tag))
			if !strings.HasPrefix(id, "sha256:") || len(id) != 71 {
				t.Fatalf("commit printed %q, want sha256:<64 hex>", id)
			}
			if i%2 == 0 {
				e.ok("umount", mnt)
			}
			check := e.mount(name+"-check", tag)
			treecmp.Equal(t, ref, check, treeOpts)
			if cs.name == "sparse 1 GiB" {
				var st unix.Stat_t
				if err := unix.Stat(filepath.Join(check, "big.sparse"), &st); err != nil {
					t.Fatal(err)
				}
				if st.Blocks*512 > 64<<20 {
					t.Errorf("big.sparse takes %d bytes after the round trip, want it sparse", st.Blocks*512)
				}
				layers, _ := e.storeManifest("docker.io/library/" + tag)
				if fi, err := os.Stat(e.blobPath(layers[len(layers)-1])); err != nil || fi.Size() > 16<<20 {
					t.Errorf("layer of a 1 GiB sparse file is %v bytes (%v), want it small", fi.Size(), err)
				}
			}
			e.ok("umount", check)
			if umoci && cs.name != "sparse 1 GiB" {
				bundle := filepath.Join(t.TempDir(), "bundle")
				out, err := exec.Command("umoci", "unpack", "--image", filepath.Join(e.root, "store")+":docker.io/library/"+tag, bundle).CombinedOutput()
				if err != nil {
					t.Fatalf("umoci unpack: %v\n%s", err, out)
				}
				treecmp.Equal(t, ref, filepath.Join(bundle, "rootfs"), umociOpts)
			}
		})
	}
	e.t = t
}

// TestCommitDockerFlow is the tutorial's flow: commit -a -c 'CMD [...]' -p NAME REF.
func TestCommitDockerFlow(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("busy1", "base:1")
	if err := os.MkdirAll(filepath.Join(mnt, "data/html"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "data/html/index.html"), []byte("<h1>Busybox test page</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(e.ok("commit", "-a", "Chenwj<cwj@cwj.com>", "-m", "add page", "-c", `CMD ["/bin/httpd","-f","-h","/data/html"]`, "-c", "ENV A=1", "-c", "EXPOSE 80", "-p", "busy1", "chenwenj/httpd:v2"))
	img := e.inspect("chenwenj/httpd:v2")
	if img["Id"] != id {
		t.Errorf("inspect Id = %v, commit printed %s", img["Id"], id)
	}
	if img["Author"] != "Chenwj<cwj@cwj.com>" {
		t.Errorf("Author = %v", img["Author"])
	}
	layers, cfg := e.storeManifest("docker.io/chenwenj/httpd:v2")
	baseLayers, _ := e.storeManifest("docker.io/library/base:1")
	if len(layers) != len(baseLayers)+1 {
		t.Errorf("%d layers, want base's %d + 1", len(layers), len(baseLayers))
	}
	c := cfg["config"].(map[string]any)
	if got := fmt.Sprint(c["Cmd"]); got != "[/bin/httpd -f -h /data/html]" {
		t.Errorf("Cmd = %s", got)
	}
	if got := fmt.Sprint(c["Env"]); !strings.Contains(got, "A=1") {
		t.Errorf("Env = %s", got)
	}
	if _, ok := c["ExposedPorts"].(map[string]any)["80/tcp"]; !ok {
		t.Errorf("ExposedPorts = %v", c["ExposedPorts"])
	}
	hist := cfg["history"].([]any)
	last := hist[len(hist)-1].(map[string]any)
	if last["author"] != "Chenwj<cwj@cwj.com>" || last["comment"] != "add page" || last["empty_layer"] == true || last["created"] == nil {
		t.Errorf("history entry = %v", last)
	}
	if !strings.Contains(e.ok("images"), "chenwenj/httpd") {
		t.Errorf("images does not list chenwenj/httpd")
	}

	// Nothing changed since: an empty_layer history entry and no new layer; untagged.
	e.ok("commit", "--rebase", "busy1", "v3")
	id2 := strings.TrimSpace(e.ok("commit", "busy1"))
	if !strings.HasPrefix(id2, "sha256:") {
		t.Fatalf("commit printed %q", id2)
	}
	img2 := e.inspect(id2)
	if tags := img2["RepoTags"]; fmt.Sprint(tags) != "[]" {
		t.Errorf("untagged commit has RepoTags %v", tags)
	}
	l3, _ := e.storeManifest("docker.io/library/v3:latest")
	e.ok("tag", id2, "v4")
	l4, cfg4 := e.storeManifest("docker.io/library/v4:latest")
	if len(l4) != len(l3) {
		t.Errorf("empty commit added a layer: %d -> %d", len(l3), len(l4))
	}
	h4 := cfg4["history"].([]any)
	if h4[len(h4)-1].(map[string]any)["empty_layer"] != true {
		t.Errorf("empty commit's history entry is not empty_layer: %v", h4[len(h4)-1])
	}

	// Bad changes are refused before anything happens.
	e.fails("not a valid change command", "commit", "-c", "RUN rm -rf /", "busy1")
	e.fails("invalid reference", "commit", "busy1", "NotLower")
	e.fails("No such container", "commit", "nope")
}

// TestCommitRebase: after --rebase the next commit holds only the newer changes.
func TestCommitRebase(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("rb", "base:1")
	ref := filepath.Join(t.TempDir(), "ref")
	copyTree(t, e.baseDir, ref)
	since := time.Now().Add(-time.Second)
	first := []op{write("one", "1\n"), remove("etc/motd")}
	applyOps(t, ref, first, since)
	applyOps(t, mnt, first, since)
	e.ok("commit", "--rebase", "rb", "rb:1")
	if d := e.ok("diff", "rb"); d != "" {
		t.Errorf("diff after commit --rebase = %q, want nothing", d)
	}
	treecmp.Equal(t, ref, mnt, treeOpts) // still the same tree, now over the new image
	second := []op{write("two", "2\n"), appendTo("one", "more\n")}
	applyOps(t, ref, second, since)
	applyOps(t, mnt, second, since)
	if d, want := e.ok("diff", "rb"), "C /one\nA /two\n"; d != want {
		t.Errorf("diff after more changes = %q, want %q", d, want)
	}
	e.ok("commit", "rb", "rb:2")
	e.ok("umount", mnt)
	l1, _ := e.storeManifest("docker.io/library/rb:1")
	l2, _ := e.storeManifest("docker.io/library/rb:2")
	if len(l2) != len(l1)+1 {
		t.Errorf("rb:2 has %d layers, want rb:1's %d + 1", len(l2), len(l1))
	}
	check := e.mount("rb-check", "rb:2")
	treecmp.Equal(t, ref, check, treeOpts)
}

// TestCommitRebaseKeepsInodes: files the container changed or made keep their
// inode numbers across commit --rebase and a remount, as on a local filesystem
// (git's index and tail -F go by them); hard links stay one inode.
func TestCommitRebaseKeepsInodes(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("ino", "base:1")
	ops := []op{write("one", "1\n"), appendTo("etc/passwd", "x:1:1::/:/bin/sh\n"), hardlink("one", "one-link")}
	applyOps(t, mnt, ops, time.Now().Add(-time.Second))
	names := []string{"one", "one-link", "etc", "etc/passwd", "etc/motd"}
	inos := func(dir string) map[string]uint64 {
		m := map[string]uint64{}
		for _, n := range names {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(dir, n), &st); err != nil {
				t.Fatal(err)
			}
			m[n] = st.Ino
		}
		return m
	}
	before := inos(mnt)
	if before["one"] != before["one-link"] {
		t.Fatalf("hard links have inodes %d and %d", before["one"], before["one-link"])
	}
	check := func(when string, dir string) {
		t.Helper()
		for n, ino := range inos(dir) {
			if ino != before[n] {
				t.Errorf("%s: st_ino of %s = %d, was %d", when, n, ino, before[n])
			}
		}
	}
	e.ok("commit", "--rebase", "ino", "ino:1")
	check("after commit --rebase", mnt)
	e.ok("umount", mnt)
	mnt2 := e.mountpoint()
	e.ok("mount", "--name", "ino", "ino:1", mnt2)
	check("after a remount", mnt2)
	applyOps(t, mnt2, []op{write("two", "2\n"), appendTo("one", "more\n")}, time.Now().Add(-time.Second))
	names = append(names, "two")
	before = inos(mnt2)
	e.ok("umount", mnt2)
	// Not mounted: commit --rebase rewrites the container's state only.
	e.ok("commit", "--rebase", "ino", "ino:2")
	mnt3 := e.mountpoint()
	e.ok("mount", "--name", "ino", "ino:2", mnt3)
	check("after a commit --rebase while unmounted", mnt3)
	e.ok("umount", mnt3)
}

// TestCommitSquash: one layer holding the merged tree.
func TestCommitSquash(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("sq", "base:1")
	ref := filepath.Join(t.TempDir(), "ref")
	copyTree(t, e.baseDir, ref)
	since := time.Now().Add(-time.Second)
	ops := []op{write("one", "1\n"), removeAll("usr/share"), hardlink("etc/passwd", "pw")}
	applyOps(t, ref, ops, since)
	applyOps(t, mnt, ops, since)
	e.ok("commit", "--squash", "-c", "USER 1000", "sq", "sq:1")
	layers, cfg := e.storeManifest("docker.io/library/sq:1")
	if len(layers) != 1 {
		t.Errorf("squashed image has %d layers", len(layers))
	}
	if cfg["config"].(map[string]any)["User"] != "1000" {
		t.Errorf("User = %v", cfg["config"])
	}
	check := e.mount("sq-check", "sq:1")
	treecmp.Equal(t, ref, check, treeOpts)
}

// TestCommitSameUpperSameDigest: committing the same upper twice gives the same
// layer; with --source-date-epoch the whole image is the same.
func TestCommitSameUpperSameDigest(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("det", "base:1")
	applyOps(t, mnt, changeSets[6].ops, time.Now().Add(-time.Second))
	applyOps(t, mnt, changeSets[2].ops, time.Now().Add(-time.Second))
	for _, comp := range []string{"gzip", "zstd", "none"} {
		e.ok("commit", "--compression", comp, "det", "det:"+comp+"1")
		e.ok("commit", "--compression", comp, "det", "det:"+comp+"2")
		a, _ := e.storeManifest("docker.io/library/det:" + comp + "1")
		b, _ := e.storeManifest("docker.io/library/det:" + comp + "2")
		if a[len(a)-1] != b[len(b)-1] {
			t.Errorf("%s: layer digests %s and %s differ", comp, a[len(a)-1], b[len(b)-1])
		}
	}
	id1 := e.ok("commit", "--source-date-epoch", "1700000000", "-a", "me", "det")
	id2 := e.ok("commit", "--source-date-epoch", "1700000000", "-a", "me", "det")
	if id1 != id2 {
		t.Errorf("--source-date-epoch commits gave %s and %s", id1, id2)
	}
}

// TestDiff checks docker diff's format on a known change set.
func TestDiff(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("df", "base:1")
	applyOps(t, mnt, []op{write("etc/motd", "x"), removeAll("usr/share/doc"), mkdir("new"), write("new/f", "")}, time.Now())
	want := "C /etc\nC /etc/motd\nA /new\nA /new/f\nC /usr\nC /usr/share\nD /usr/share/doc\n"
	if got := e.ok("diff", "df"); got != want {
		t.Errorf("diff =\n%s\nwant\n%s", got, want)
	}
	if got := e.ok("diff", mnt); got != want {
		t.Errorf("diff by mountpoint = %q", got)
	}
}

// TestCommitRebaseOpenFile: a file open for writing across commit --rebase keeps
// working, and what is written after the rebase shows in the mount and in the next
// commit.
func TestCommitRebaseOpenFile(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("rbo", "base:1")
	f, err := os.OpenFile(filepath.Join(mnt, "etc/log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("one\n"); err != nil {
		t.Fatal(err)
	}
	e.ok("commit", "--rebase", "rbo", "rbo:1")
	if _, err := f.WriteString("two\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(mnt, "etc/log")); string(b) != "one\ntwo\n" {
		t.Errorf("etc/log through the mount after the rebase = %q, want both lines", b)
	}
	e.ok("commit", "rbo", "rbo:2")
	e.ok("umount", mnt)
	check := e.mount("rbo-check", "rbo:2")
	if b, _ := os.ReadFile(filepath.Join(check, "etc/log")); string(b) != "one\ntwo\n" {
		t.Errorf("etc/log in the next commit = %q, want both lines", b)
	}
}
