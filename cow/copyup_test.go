package cow

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/internal/testenv"
)

func cuOpenDir(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestCopyUp(t *testing.T) {
	src, dst, work := t.TempDir(), t.TempDir(), t.TempDir()
	when := time.Date(2019, 5, 6, 7, 8, 9, 123456789, time.UTC)
	data := bytes.Repeat([]byte("0123456789"), 100000)
	cuMust(t, os.WriteFile(filepath.Join(src, "file"), data, 0o640))
	cuMust(t, os.Chmod(filepath.Join(src, "file"), 0o4751))
	// A sparse file: data, a 1 MiB hole, data.
	f, err := os.Create(filepath.Join(src, "sparse"))
	cuMust(t, err)
	_, err = f.WriteAt([]byte("head"), 0)
	cuMust(t, err)
	_, err = f.WriteAt([]byte("tail"), 1<<21)
	cuMust(t, err)
	cuMust(t, f.Close())
	cuMust(t, os.Mkdir(filepath.Join(src, "dir"), 0o710))
	cuMust(t, os.Symlink("/etc/passwd", filepath.Join(src, "link")))
	cuMust(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o620))
	xattrOK := unix.Setxattr(filepath.Join(src, "file"), "user.k", []byte("v"), 0) == nil
	if xattrOK {
		cuMust(t, unix.Setxattr(filepath.Join(src, "file"), "user.overlay.opaque", []byte("y"), 0))
	}
	root := os.Geteuid() == 0
	for _, n := range []string{"file", "sparse", "dir", "link", "fifo"} {
		if root {
			cuMust(t, os.Lchown(filepath.Join(src, n), 123, 456))
		}
		ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
		cuMust(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, n), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	sfd, dfd, wfd := cuOpenDir(t, src), cuOpenDir(t, dst), cuOpenDir(t, work)
	for _, n := range []string{"file", "sparse", "dir", "link", "fifo"} {
		opts := CopyUpOptions{Work: wfd, DataLimit: -1, Xattrs: map[string][]byte{"user.layerfs.origin": []byte("o")}}
		if err := CopyUp(sfd, dfd, n, opts); err != nil {
			t.Fatalf("CopyUp(%s): %v", n, err)
		}
		var a, b unix.Stat_t
		cuMust(t, unix.Lstat(filepath.Join(src, n), &a))
		cuMust(t, unix.Lstat(filepath.Join(dst, n), &b))
		if a.Mode != b.Mode || a.Size != b.Size || a.Mtim != b.Mtim || (root && (a.Uid != b.Uid || a.Gid != b.Gid)) {
			t.Errorf("%s: copy mode %o size %d mtime %v uid %d, want %o %d %v %d", n, b.Mode, b.Size, b.Mtim, b.Uid, a.Mode, a.Size, a.Mtim, a.Uid)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "file")); !bytes.Equal(got, data) {
		t.Errorf("file data differs")
	}
	var sp unix.Stat_t
	cuMust(t, unix.Stat(filepath.Join(dst, "sparse"), &sp))
	if sp.Blocks*512 > 1<<20 {
		t.Errorf("sparse copy uses %d bytes: hole not kept", sp.Blocks*512)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "sparse")); len(got) != 1<<21+4 || string(got[:4]) != "head" || string(got[1<<21:]) != "tail" {
		t.Errorf("sparse content differs")
	}
	if tgt, _ := os.Readlink(filepath.Join(dst, "link")); tgt != "/etc/passwd" {
		t.Errorf("link target %q", tgt)
	}
	if xattrOK {
		buf := make([]byte, 16)
		if n, err := unix.Getxattr(filepath.Join(dst, "file"), "user.k", buf); err != nil || string(buf[:n]) != "v" {
			t.Errorf("user.k = %q, %v", buf[:n], err)
		}
		if _, err := unix.Getxattr(filepath.Join(dst, "file"), "user.overlay.opaque", buf); !errors.Is(err, unix.ENODATA) {
			t.Errorf("overlay xattr copied: %v", err)
		}
		if n, err := unix.Getxattr(filepath.Join(dst, "file"), "user.layerfs.origin", buf); err != nil || string(buf[:n]) != "o" {
			t.Errorf("origin xattr = %q, %v", buf[:n], err)
		}
	}
	// The work dir is left empty; an existing name is not replaced.
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir holds %d entries", len(ents))
	}
	if err := CopyUp(sfd, dfd, "file", CopyUpOptions{Work: wfd, DataLimit: -1}); !errors.Is(err, unix.EEXIST) {
		t.Errorf("CopyUp over an existing name: %v, want EEXIST", err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir holds %d entries after a failed copy-up", len(ents))
	}
}

func TestCopyUpDataLimit(t *testing.T) {
	src, dst, work := t.TempDir(), t.TempDir(), t.TempDir()
	cuMust(t, os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte("x"), 1<<20), 0o644))
	sfd, dfd, wfd := cuOpenDir(t, src), cuOpenDir(t, dst), cuOpenDir(t, work)
	cuMust(t, CopyUp(sfd, dfd, "big", CopyUpOptions{Work: wfd, DataLimit: 0}))
	if fi, _ := os.Stat(filepath.Join(dst, "big")); fi.Size() != 0 {
		t.Errorf("DataLimit 0: size %d", fi.Size())
	}
	cuMust(t, os.Remove(filepath.Join(dst, "big")))
	cuMust(t, CopyUp(sfd, dfd, "big", CopyUpOptions{Work: wfd, DataLimit: 10}))
	if got, _ := os.ReadFile(filepath.Join(dst, "big")); string(got) != "xxxxxxxxxx" {
		t.Errorf("DataLimit 10: %q", got)
	}
}

func cuMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCopyUpKeepDirTimes(t *testing.T) {
	src, dst, work := t.TempDir(), t.TempDir(), t.TempDir()
	cuMust(t, os.WriteFile(filepath.Join(src, "f"), []byte("f"), 0o644))
	cuMust(t, os.WriteFile(filepath.Join(src, "g"), []byte("g"), 0o644))
	when := time.Date(2018, 1, 2, 3, 4, 5, 6, time.UTC)
	ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
	sfd, dfd, wfd := cuOpenDir(t, src), cuOpenDir(t, dst), cuOpenDir(t, work)
	var mu sync.Mutex
	for _, tc := range []struct {
		name string
		keep bool
	}{{"f", true}, {"g", false}} {
		cuMust(t, unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, 0))
		opts := CopyUpOptions{Work: wfd, DataLimit: -1, KeepDirTimes: tc.keep, PlaceLock: &mu}
		cuMust(t, CopyUp(sfd, dfd, tc.name, opts))
		var st unix.Stat_t
		cuMust(t, unix.Stat(dst, &st))
		got := time.Unix(st.Mtim.Unix()).UTC()
		if kept := got.Equal(when); kept != tc.keep {
			t.Errorf("CopyUp(%s, KeepDirTimes=%v): parent mtime %v, was %v", tc.name, tc.keep, got, when)
		}
	}
	if !mu.TryLock() {
		t.Errorf("PlaceLock still held after CopyUp")
	}
}

// TestCopyUpSpecialFileXattrs: a fifo's or device node's xattrs (trusted.*,
// security.* such as SELinux labels; Linux refuses user.* on them) are copied up
// with it, as overlayfs does. Only regular files and dirs had theirs copied: a
// chown of a layer's fifo through a mount dropped its xattrs, and so did commit.
func TestCopyUpSpecialFileXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("trusted.* xattrs and mknod need root")
	}
	src, dst, work := t.TempDir(), t.TempDir(), t.TempDir()
	cuMust(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o640))
	cuMust(t, unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	for _, n := range []string{"fifo", "null"} {
		if err := unix.Setxattr(filepath.Join(src, n), "trusted.label", []byte("v-"+n), 0); err != nil {
			t.Skipf("setxattr trusted.* on a %s: %v", n, err)
		}
	}
	sfd, dfd, wfd := cuOpenDir(t, src), cuOpenDir(t, dst), cuOpenDir(t, work)
	for _, n := range []string{"fifo", "null"} {
		opts := CopyUpOptions{Work: wfd, DataLimit: -1, Xattrs: map[string][]byte{"trusted.layerfs.origin": []byte("o")}}
		cuMust(t, CopyUp(sfd, dfd, n, opts))
		buf := make([]byte, 64)
		sz, err := unix.Getxattr(filepath.Join(dst, n), "trusted.label", buf)
		if err != nil || string(buf[:sz]) != "v-"+n {
			t.Errorf("%s: copy has trusted.label %q (%v), want %q", n, buf[:max(sz, 0)], err, "v-"+n)
		}
		if _, err := unix.Getxattr(filepath.Join(dst, n), "trusted.layerfs.origin", buf); err != nil {
			t.Errorf("%s: copy has no private origin xattr: %v", n, err)
		}
	}
}

// TestCopyRangeLarge: the data copies (copy_file_range, sendfile, and through
// memory with one range split in two halves copied at once) give the source's
// bytes, each at its offset, for a range not at the file's start and of an odd
// size, and keep a hole of a large sparse file through CopyUp.
func TestCopyRangeLarge(t *testing.T) {
	dir := t.TempDir()
	const size = parallelCopyMin*2 + 12345
	data := make([]byte, size)
	for i := 0; i+8 <= size; i += 8 {
		binary.LittleEndian.PutUint64(data[i:], uint64(i))
	}
	cuMust(t, os.WriteFile(filepath.Join(dir, "src"), data, 0o644))
	src, err := unix.Open(filepath.Join(dir, "src"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	cuMust(t, err)
	defer unix.Close(src)
	const off = 4097
	for name, copyFn := range map[string]func(dst, src int, off, n int64) error{
		"kernel": copyRangeKernel, "user": copyRangeUser, "mem": copyRangeMem,
	} {
		p := filepath.Join(dir, name)
		dst, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		cuMust(t, err)
		err = copyFn(dst, src, off, size-off)
		unix.Close(dst)
		if err != nil {
			t.Fatalf("%s copy: %v", name, err)
		}
		got, _ := os.ReadFile(p)
		if len(got) != size || !bytes.Equal(got[off:], data[off:]) || !bytes.Equal(got[:off], make([]byte, off)) {
			t.Errorf("%s copy of [%d, %d): %d bytes, not the source's", name, off, size, len(got))
		}
	}

	// Through CopyUp: data, a 24 MiB hole, data, with DataLimit cutting the tail.
	sdir, ddir, work := t.TempDir(), t.TempDir(), t.TempDir()
	f, err := os.Create(filepath.Join(sdir, "sparse"))
	cuMust(t, err)
	_, err = f.WriteAt(data[:parallelCopyMin+3], 0)
	cuMust(t, err)
	_, err = f.WriteAt(data[:parallelCopyMin+5], parallelCopyMin+24<<20)
	cuMust(t, err)
	cuMust(t, f.Close())
	limit := int64(2*parallelCopyMin + 24<<20 + 1)
	sfd, dfd, wfd := cuOpenDir(t, sdir), cuOpenDir(t, ddir), cuOpenDir(t, work)
	cuMust(t, CopyUp(sfd, dfd, "sparse", CopyUpOptions{Work: wfd, DataLimit: limit}))
	want, _ := os.ReadFile(filepath.Join(sdir, "sparse"))
	got, _ := os.ReadFile(filepath.Join(ddir, "sparse"))
	if int64(len(got)) != limit || !bytes.Equal(got, want[:limit]) {
		t.Errorf("sparse copy-up: %d bytes, want the source's first %d", len(got), limit)
	}
	var st unix.Stat_t
	cuMust(t, unix.Stat(filepath.Join(ddir, "sparse"), &st))
	if st.Blocks*512 > limit-16<<20 {
		t.Errorf("sparse copy-up uses %d bytes of %d: hole not kept", st.Blocks*512, limit)
	}
}

// TestCopyUpFullUpper: a copy-up into an upper dir that fills up part way fails
// with ENOSPC and leaves no file. pwrite may write less than asked when the
// filesystem fills during the call; the copy took the short write for a whole one
// and made a file whose tail was a hole of zeros.
func TestCopyUpFullUpper(t *testing.T) {
	testenv.RequireRoot(t)
	upper := t.TempDir()
	if err := unix.Mount("tmpfs", upper, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(upper, unix.MNT_DETACH) })
	dst, work := filepath.Join(upper, "dst"), filepath.Join(upper, "work")
	cuMust(t, os.Mkdir(dst, 0o755))
	cuMust(t, os.Mkdir(work, 0o700))
	// Leave 512 KiB: the last pwrite of a 1 MiB chunk writes half.
	cuMust(t, os.WriteFile(filepath.Join(upper, "fill"), make([]byte, 4<<20-512<<10), 0o644))
	src := t.TempDir()
	data := bytes.Repeat([]byte{0x5a}, 1<<20)
	cuMust(t, os.WriteFile(filepath.Join(src, "f"), data, 0o644))
	sfd, dfd, wfd := cuOpenDir(t, src), cuOpenDir(t, dst), cuOpenDir(t, work)
	err := CopyUp(sfd, dfd, "f", CopyUpOptions{Work: wfd, DataLimit: -1})
	if !errors.Is(err, unix.ENOSPC) {
		got, _ := os.ReadFile(filepath.Join(dst, "f"))
		t.Fatalf("CopyUp into a full upper = %v (copy equal to the source: %v), want ENOSPC", err, bytes.Equal(got, data))
	}
	if _, err := os.Lstat(filepath.Join(dst, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lstat(dst/f) after a failed copy-up = %v, want not exist", err)
	}
}

// TestCopyUpSymlinkXattrs: a symlink's own xattrs (trusted.*, security.* such as
// SELinux labels; Linux refuses user.* on symlinks) are copied up with it, as
// overlayfs does, private ones left out, and never those of its target; Diff and
// Apply keep them, so a commit does. The copy-up made the link and set its owner
// and times only: a chown -h, a touch -h or a mv of its parent dir through a mount
// dropped them, and so did the commit.
func TestCopyUpSymlinkXattrs(t *testing.T) {
	testenv.RequireRoot(t)
	src, dst, work := t.TempDir(), t.TempDir(), t.TempDir()
	cuMust(t, os.WriteFile(filepath.Join(src, "target"), []byte("t"), 0o644))
	cuMust(t, os.Symlink("target", filepath.Join(src, "link")))
	want := map[string]string{"trusted.sym": "v", "security.selinux": "system_u:object_r:bin_t:s0"}
	for k, v := range want {
		if err := unix.Lsetxattr(filepath.Join(src, "link"), k, []byte(v), 0); err != nil {
			t.Skipf("lsetxattr %s on a symlink: %v", k, err)
		}
	}
	cuMust(t, unix.Lsetxattr(filepath.Join(src, "link"), "trusted.overlay.origin", []byte("x"), 0))
	cuMust(t, unix.Lsetxattr(filepath.Join(src, "link"), "trusted.layerfs.other", []byte("x"), 0))
	cuMust(t, unix.Setxattr(filepath.Join(src, "target"), "trusted.target", []byte("t"), 0))
	sfd, dfd, wfd := cuOpenDir(t, src), cuOpenDir(t, dst), cuOpenDir(t, work)
	opts := CopyUpOptions{Work: wfd, DataLimit: -1, Xattrs: map[string][]byte{"trusted.layerfs.origin": []byte("o")}}
	cuMust(t, CopyUp(sfd, dfd, "link", opts))
	link := filepath.Join(dst, "link")
	if got, w := xattrString(t, link), `security.selinux="system_u:object_r:bin_t:s0",trusted.sym="v"`; got != w {
		t.Errorf("copied-up symlink has xattrs %s, want %s", got, w)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(link, "trusted.layerfs.origin", buf); err != nil || string(buf[:n]) != "o" {
		t.Errorf("copied-up symlink's origin xattr = %q, %v; want \"o\"", buf[:max(n, 0)], err)
	}
	for _, k := range []string{"trusted.overlay.origin", "trusted.layerfs.other"} {
		if _, err := unix.Lgetxattr(link, k, buf); !errors.Is(err, unix.ENODATA) {
			t.Errorf("copied-up symlink has private xattr %s: %v", k, err)
		}
	}
	// The round trip of a commit: Diff of the upper, Apply of the layer.
	layer := readAll(t, Diff(context.Background(), dst, DiffOptions{}))
	if got, w := xattrString(t, filepath.Join(applyBytes(t, layer), "link")), `security.selinux="system_u:object_r:bin_t:s0",trusted.sym="v"`; got != w {
		t.Errorf("symlink after Diff and Apply has xattrs %s, want %s", got, w)
	}
}
