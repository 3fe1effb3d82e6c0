package integration

// Regressions from a bug hunt of mount -> edit -> diff/commit with kernel overlayfs
// (index=on) and GNU tar as oracles. Each test builds its own small base image.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// newCommitEnvFrom is newCommitEnv with a base tree made by build instead of
// makeBaseTree.
func newCommitEnvFrom(t *testing.T, build func(b *treeBuilder)) *commitEnv {
	t.Helper()
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	e := &commitEnv{t: t, root: t.TempDir(), baseDir: filepath.Join(t.TempDir(), "base")}
	t.Cleanup(e.cleanup)
	b := &treeBuilder{t: t, root: e.baseDir}
	b.dir(".", 0o755, 0, 0)
	build(b)
	b.setTimes(baseTime)
	tarPath := filepath.Join(t.TempDir(), "base.tar")
	tarTree(t, e.baseDir, tarPath)
	e.ok("import", tarPath, "base:1")
	return e
}

// TestCommitChownLinkedSymlink: lchown of one name of a layer's hard-linked symlink
// changes the other name too, in the mount and in the commit (copy-up used to link
// only regular files' names, so the commit kept the old owner on the other name).
func TestCommitChownLinkedSymlink(t *testing.T) {
	e := newCommitEnvFrom(t, func(b *treeBuilder) {
		b.dir("d", 0o755, 0, 0)
		b.symlink("target", "s1")
		b.link("s1", "d/s2") // a hard link to the symlink itself
	})
	mnt := e.mount("ls", "base:1")
	if err := os.Lchown(filepath.Join(mnt, "s1"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	e.ok("commit", "ls", "ls:1")
	e.ok("umount", mnt)
	check := e.mount("ls-check", "ls:1")
	var a, b unix.Stat_t
	if err := unix.Lstat(filepath.Join(check, "s1"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(check, "d/s2"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Uid != 1000 || b.Uid != 1000 || a.Ino != b.Ino || b.Nlink != 2 {
		t.Errorf("committed s1 uid %d ino %d, d/s2 uid %d ino %d nlink %d; want both uid 1000, one inode, 2 links", a.Uid, a.Ino, b.Uid, b.Ino, b.Nlink)
	}
}

// TestCommitFifoXattrs: a chown of a layer's fifo keeps its xattrs (copy-up
// dropped them for fifos and device nodes), through the mount and in the commit.
func TestCommitFifoXattrs(t *testing.T) {
	e := newCommitEnvFrom(t, func(b *treeBuilder) {
		b.fifo("p", 0o640)
		b.xattrs("p", map[string]string{"trusted.label": "fifo-label"})
	})
	mnt := e.mount("fx", "base:1")
	if err := os.Lchown(filepath.Join(mnt, "p"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	get := func(dir string) string {
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(dir, "p"), "trusted.label", buf)
		if err != nil {
			return err.Error()
		}
		return string(buf[:n])
	}
	if got := get(mnt); got != "fifo-label" {
		t.Errorf("trusted.label of p through the mount after chown = %q", got)
	}
	e.ok("commit", "fx", "fx:1")
	e.ok("umount", mnt)
	if got := get(e.mount("fx-check", "fx:1")); got != "fifo-label" {
		t.Errorf("trusted.label of p in the commit = %q", got)
	}
}

// TestDiffBelowOpaqueDir: rm -rf a; mkdir -p a/b over a lower a/b/c lists a/b/c as
// deleted (the opaque a hides it; the commit drops it), not only a's own children.
func TestDiffBelowOpaqueDir(t *testing.T) {
	e := newCommitEnvFrom(t, func(b *treeBuilder) {
		b.dir("a", 0o755, 0, 0)
		b.dir("a/b", 0o755, 0, 0)
		b.dir("a/b/c", 0o755, 0, 0)
		b.file("a/b/c/f", "f\n", 0o644, 0, 0)
		b.file("a/top", "top\n", 0o644, 0, 0)
	})
	mnt := e.mount("op", "base:1")
	if err := os.RemoveAll(filepath.Join(mnt, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(mnt, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "a/b/g"), []byte("g\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "C /a\nC /a/b\nD /a/b/c\nA /a/b/g\nD /a/top\n"
	if got := e.ok("diff", "op"); got != want {
		t.Errorf("diff =\n%s\nwant\n%s", got, want)
	}
}

// TestCommitTimeAfter2262: `touch -d @10000000000` (year 2286) through the mount is
// what the commit records (the time went through UnixNano, which wraps, and the
// file was dated 1901).
func TestCommitTimeAfter2262(t *testing.T) {
	e := newCommitEnvFrom(t, func(b *treeBuilder) {
		b.file("f", "f\n", 0o644, 0, 0)
	})
	// What the filesystem under the store makes of that time.
	probe := filepath.Join(e.root, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{{Sec: 10000000000, Nsec: 5}, {Sec: 10000000000, Nsec: 5}}
	if err := unix.UtimesNano(probe, ts); err != nil {
		t.Fatal(err)
	}
	var want unix.Stat_t
	if err := unix.Lstat(probe, &want); err != nil {
		t.Fatal(err)
	}
	mnt := e.mount("tm", "base:1")
	if err := unix.UtimesNano(filepath.Join(mnt, "f"), ts); err != nil {
		t.Fatal(err)
	}
	e.ok("commit", "tm", "tm:1")
	e.ok("umount", mnt)
	check := e.mount("tm-check", "tm:1")
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(check, "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mtim != want.Mtim {
		t.Errorf("committed f mtime %d.%09d, want %d.%09d", st.Mtim.Sec, st.Mtim.Nsec, want.Mtim.Sec, want.Mtim.Nsec)
	}
	if strings.TrimSpace(e.ok("diff", "tm-check")) != "" {
		t.Errorf("diff of a fresh mount is not empty")
	}
}
