package fs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"github.com/layerfs/layerfs/internal/treecmp"
	"golang.org/x/sys/unix"
)

// specialKinds are the file types that are never opened for data: a fifo is held
// by a plain fd (O_RDWR|O_NONBLOCK), the others by an O_PATH fd (a socket cannot
// be opened; a device node is not opened by a test).
var specialKinds = []struct {
	name string
	mode uint32
	dev  int
}{
	{"fifo", unix.S_IFIFO, 0},
	{"sock", unix.S_IFSOCK, 0},
	{"chr", unix.S_IFCHR, int(unix.Mkdev(1, 3))},
}

// TestChangeUnlinkedSpecialFile: a fifo, socket or device node held open whose name
// is gone (unlinked, or renamed over), a layer's or one made through the mount, can
// still be chmod'ed, chown'ed and have its times set through its fd, as on a local
// filesystem and through kernel overlayfs, in both data modes: they failed with
// ENOENT (review 15, finding 1). fstat then shows the change with nlink 0, its
// xattrs are kept, and nothing reaches a layer, a name of the upper dir, or the
// work dir (a layer's file is changed as an unnamed copy).
func TestChangeUnlinkedSpecialFile(t *testing.T) {
	testenv.RequireRoot(t)
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			lower := t.TempDir()
			for _, k := range specialKinds {
				for _, how := range []string{"unlink", "rename"} {
					p := filepath.Join(lower, k.name+"-"+how)
					must(t, unix.Mknod(p, k.mode|0o640, k.dev))
					must(t, unix.Lsetxattr(p, "trusted.kept", []byte("lower"), 0))
				}
			}
			before, err := treecmp.Snapshot(lower, treecmp.Options{})
			must(t, err)
			u := mountUnionMode(t, cow.FormatOverlay, pt, lower)
			p := func(s string) string { return filepath.Join(u.mnt, s) }
			for _, k := range specialKinds {
				for _, where := range []string{"lower", "upper"} {
					for _, how := range []string{"unlink", "rename"} {
						t.Run(k.name+"/"+where+"/"+how, func(t *testing.T) {
							changeUnlinkedSpecial(t, p, k.name, k.mode, k.dev, where, how)
						})
					}
				}
			}
			after, err := treecmp.Snapshot(lower, treecmp.Options{})
			must(t, err)
			if d := treecmp.Diff(before, after, treecmp.Options{}); len(d) > 0 {
				t.Errorf("the layer changed:\n%s", strings.Join(d, "\n"))
			}
			for _, dir := range []string{u.upper, u.work} {
				must(t, filepath.WalkDir(dir, func(q string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					var st unix.Stat_t
					must(t, unix.Lstat(q, &st))
					if st.Uid == 1000 || strings.HasPrefix(d.Name(), "copyup-") {
						t.Errorf("%s: mode %o uid %d: a change through a deleted name reached a name", q, st.Mode, st.Uid)
					}
					return nil
				}))
			}
		})
	}
}

// changeUnlinkedSpecial holds the file kind at name (a layer's, or one it makes
// through the mount), takes its name away and changes it through the fd.
func changeUnlinkedSpecial(t *testing.T, p func(string) string, kind string, mode uint32, dev int, where, how string) {
	name := kind + "-" + how
	if where == "upper" {
		name = "new-" + name
		must(t, unix.Mknod(p(name), mode|0o640, dev))
		must(t, unix.Lsetxattr(p(name), "trusted.kept", []byte("upper"), 0))
	}
	flags := unix.O_PATH | unix.O_NOFOLLOW
	if mode == unix.S_IFIFO {
		flags = unix.O_RDWR | unix.O_NONBLOCK
	}
	fd, err := unix.Open(p(name), flags|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)
	var st0 unix.Stat_t
	must(t, unix.Fstat(fd, &st0))
	if how == "unlink" {
		must(t, unix.Unlink(p(name)))
	} else {
		must(t, os.WriteFile(p(name+".over"), []byte("over"), 0o644))
		must(t, unix.Rename(p(name+".over"), p(name)))
	}

	// fchmod, fchown, futimens; by the fd's /proc link for an O_PATH fd.
	ts := []unix.Timespec{{Sec: 1e9}, {Sec: 1e9}}
	var errs [3]error
	if mode == unix.S_IFIFO {
		errs = [3]error{unix.Fchmod(fd, 0o600), unix.Fchown(fd, 1000, 1000), futimens(fd, ts)}
	} else {
		errs = [3]error{
			unix.Chmod(procFd(fd), 0o600),
			unix.Fchownat(fd, "", 1000, 1000, unix.AT_EMPTY_PATH),
			unix.UtimesNanoAt(unix.AT_FDCWD, procFd(fd), ts, 0),
		}
	}
	for i, call := range []string{"fchmod", "fchown", "futimens"} {
		if errs[i] != nil {
			t.Errorf("%s through the fd of %s: %v", call, name, errs[i])
		}
	}
	var st unix.Stat_t
	must(t, unix.Fstat(fd, &st))
	if st.Mode != mode|0o600 || st.Uid != 1000 || st.Gid != 1000 || st.Mtim.Sec != 1e9 || st.Nlink != 0 || st.Ino != st0.Ino || st.Rdev != st0.Rdev {
		t.Errorf("fstat after the changes: mode %o uid %d gid %d mtime %d nlink %d ino %d rdev %d, want %o 1000 1000 %d 0 %d %d",
			st.Mode, st.Uid, st.Gid, st.Mtim.Sec, st.Nlink, st.Ino, st.Rdev, mode|0o600, int64(1e9), st0.Ino, st0.Rdev)
	}
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(procFd(fd), "trusted.kept", buf); err != nil || string(buf[:n]) != where {
		t.Errorf("getxattr trusted.kept through the fd = %q, %v, want %q", buf[:max(n, 0)], err, where)
	}

	var nst unix.Stat_t
	err = unix.Lstat(p(name), &nst)
	switch {
	case how == "unlink" && err != unix.ENOENT:
		t.Errorf("lstat %s after unlink: %v, want ENOENT", name, err)
	case how == "rename" && (err != nil || nst.Mode != unix.S_IFREG|0o644 || nst.Uid != 0):
		t.Errorf("lstat %s after the rename over it: mode %o uid %d, %v; want the file, unchanged", name, nst.Mode, nst.Uid, err)
	}
}

// TestChangeUnlinkedLinkedFifo: a layer's fifo whose layer has another name for it
// (a hard link), held open and unlinked, then chmod'ed through its fd: the change
// shows at the other name too, as on a local filesystem and through overlayfs
// with index=on, and the layer does not change.
func TestChangeUnlinkedLinkedFifo(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			lower := t.TempDir()
			must(t, unix.Mkfifo(filepath.Join(lower, "a"), 0o644))
			must(t, os.Link(filepath.Join(lower, "a"), filepath.Join(lower, "b")))
			before, err := treecmp.Snapshot(lower, treecmp.Options{})
			must(t, err)
			u := mountUnionMode(t, cow.FormatOverlay, pt, lower)
			p := func(s string) string { return filepath.Join(u.mnt, s) }

			fd, err := unix.Open(p("a"), unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			must(t, err)
			defer unix.Close(fd)
			ino := lstat(t, p("a")).Ino
			must(t, unix.Unlink(p("a")))
			if err := unix.Fchmod(fd, 0o600); err != nil {
				t.Fatalf("fchmod of the unlinked fifo: %v", err)
			}
			if st := lstat(t, p("b")); st.Mode&0o7777 != 0o600 || st.Ino != ino {
				t.Errorf("b after fchmod through a's fd: mode %o ino %d, want 600 and %d", st.Mode&0o7777, st.Ino, ino)
			}
			var st unix.Stat_t
			must(t, unix.Fstat(fd, &st))
			if st.Mode&0o7777 != 0o600 || st.Nlink != 1 {
				t.Errorf("fstat after fchmod: mode %o nlink %d, want 600 and 1 (b's)", st.Mode&0o7777, st.Nlink)
			}
			after, err := treecmp.Snapshot(lower, treecmp.Options{})
			must(t, err)
			if d := treecmp.Diff(before, after, treecmp.Options{}); len(d) > 0 {
				t.Errorf("the layer changed:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}
