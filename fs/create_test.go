package fs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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
