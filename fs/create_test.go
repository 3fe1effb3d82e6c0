package fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// A CREATE of a name the upper dir already has (the kernel sends one for a name
// it holds a negative entry for) opens the file as open(2) would: its owner,
// mode, data and inode number stay. A copied-up file keeps the inode number of
// its origin, which CREATE looks for only when the file was there before.
func TestCreateOfExistingUpperFile(t *testing.T) {
	u := mountUnion(t, cow.FormatOCI)
	if err := os.Mkdir(filepath.Join(u.mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(u.mnt, "d", "f")
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lstat before: %v, want ENOENT", err) // the kernel keeps a negative entry
	}
	up := filepath.Join(u.upper, "d", "f")
	if err := os.WriteFile(up, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(up, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(up, 1000, 1001); err != nil {
		t.Fatal(err)
	}
	const ino = 987654321
	if err := unix.Setxattr(up, originXattr, originValue(ino, 5), 0); err != nil {
		t.Skipf("no %s on the upper filesystem: %v", originXattr, err)
	}

	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o640 || st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("after open(O_CREAT): mode %o owner %d:%d, want 640 1000:1001", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st.Ino != ino {
		t.Errorf("after open(O_CREAT): ino %d, want the origin's %d", st.Ino, ino)
	}
	if got := readFile(t, p); got != "old" {
		t.Errorf("content %q, want %q", got, "old")
	}
}

// A new file's owner and mode are the caller's, whichever of Create's short cuts
// applies: a root caller's file keeps the owner this process gave it, and its
// chmod is left out only where the open already set the mode; a whiteout of the
// name, in either encoding, goes. Both modes of the mount, both encodings.
func TestCreateOwnerModeAndWhiteout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates files as another user")
	}
	for _, f := range []cow.Format{cow.FormatOCI, cow.FormatOverlay} {
		for _, pt := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/passthrough=%v", f, pt), func(t *testing.T) {
				lower := t.TempDir()
				if err := os.Chmod(lower, 0o755); err != nil { // the mount's root
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(lower, "w"), []byte("lower"), 0o644); err != nil {
					t.Fatal(err)
				}
				// This process's umask (the server's) is 077, a caller's 022: a
				// file asked for as 0666 must come out 0644, not 0600.
				old := unix.Umask(0o077)
				t.Cleanup(func() { unix.Umask(old) })
				u := mountUnionMode(t, f, pt, lower)
				if err := os.Chmod(u.mnt, 0o755); err != nil { // made under umask 077
					t.Fatal(err)
				}
				for d := filepath.Dir(u.mnt); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
					if err := os.Chmod(d, 0o755); err != nil { // nobody walks to the mount
						t.Fatal(err)
					}
				}
				sh := func(cred *syscall.Credential, script string) {
					t.Helper()
					// inMount, not cmd.Dir: a chdir into this process's own
					// mount between fork and exec can deadlock (go-fuse's doc).
					cmd := inMount(u.mnt, "umask 022; "+script)
					if cred != nil {
						cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
					}
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("%s: %v: %s", script, err, out)
					}
				}

				check := func(name string, mode os.FileMode, uid, gid uint32) {
					t.Helper()
					var st unix.Stat_t
					if err := unix.Lstat(filepath.Join(u.mnt, name), &st); err != nil {
						t.Fatal(err)
					}
					if st.Mode&0o7777 != uint32(mode) || st.Uid != uid || st.Gid != gid {
						t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", name, st.Mode&0o7777, st.Uid, st.Gid, mode, uid, gid)
					}
					if err := unix.Lstat(filepath.Join(u.upper, name), &st); err != nil {
						t.Fatal(err)
					}
					if st.Mode&0o7777 != uint32(mode) || st.Uid != uid || st.Gid != gid {
						t.Errorf("upper %s: mode %o owner %d:%d, want %o %d:%d", name, st.Mode&0o7777, st.Uid, st.Gid, mode, uid, gid)
					}
				}
				sh(nil, ": > plain")
				check("plain", 0o644, 0, 0)
				fd, err := unix.Open(filepath.Join(u.mnt, "suid"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o4755)
				if err != nil {
					t.Fatal(err)
				}
				unix.Close(fd)
				check("suid", 0o4700, 0, 0) // this process's umask

				// A whiteout of the name (rm of the lower file) is replaced.
				if err := os.Remove(filepath.Join(u.mnt, "w")); err != nil {
					t.Fatal(err)
				}
				sh(nil, ": > w")
				check("w", 0o644, 0, 0)
				if got := readFile(t, filepath.Join(u.mnt, "w")); got != "" {
					t.Errorf("w after rm and create: %q, want empty", got)
				}
				if _, err := os.Lstat(filepath.Join(u.upper, cow.WhiteoutName("w"))); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the OCI whiteout of w is left: %v", err)
				}

				// Another user's file is given to them.
				if err := os.Mkdir(filepath.Join(u.mnt, "pub"), 0o777); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(u.mnt, "pub"), 0o777); err != nil {
					t.Fatal(err)
				}
				sh(&syscall.Credential{Uid: 65534, Gid: 65534}, ": > pub/nobody")
				check("pub/nobody", 0o644, 65534, 65534)
			})
		}
	}
}
