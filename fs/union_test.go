package fs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"github.com/layerfs/layerfs/internal/treecmp"
	"golang.org/x/sys/unix"
)

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("Lstat(%s): %v", p, err)
	}
	return st
}

// readdirInos lists dir with getdents and returns name -> d_ino.
func readdirInos(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]uint64{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(int(f.Fd()), buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		b := buf[:n]
		for len(b) > 0 {
			ino := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 | uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
			reclen := int(b[16]) | int(b[17])<<8
			name := string(b[19:reclen])
			name = name[:strings.IndexByte(name, 0)]
			out[name] = ino
			b = b[reclen:]
		}
	}
}

func TestInodeStability(t *testing.T) {
	lower := tree(t, map[string]string{"d/f": "data", "d/g": "g", "top": "t"})
	must(t, os.Link(filepath.Join(lower, "d/f"), filepath.Join(lower, "d/h")))
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	before := map[string]uint64{}
	for _, n := range []string{"d", "d/f", "d/g", "d/h", "top"} {
		before[n] = lstat(t, p(n)).Ino
	}
	if before["d/f"] != before["d/h"] {
		t.Errorf("hard links: ino %d != %d", before["d/f"], before["d/h"])
	}
	rd := readdirInos(t, p("d"))
	for _, n := range []string{"f", "g", "h"} {
		if rd[n] != before["d/"+n] {
			t.Errorf("readdir ino of d/%s = %d, stat says %d", n, rd[n], before["d/"+n])
		}
	}
	// Copy-up by write, chmod and xattr, then create a new file.
	must(t, os.WriteFile(p("d/f"), []byte("changed"), 0o644))
	must(t, os.Chmod(p("d/g"), 0o600))
	must(t, unix.Setxattr(p("top"), "user.x", []byte("1"), 0))
	must(t, os.WriteFile(p("d/new"), []byte("n"), 0o644))
	newIno := lstat(t, p("d/new")).Ino
	check := func(when string) {
		t.Helper()
		for n, ino := range before {
			if got := lstat(t, p(n)).Ino; got != ino {
				t.Errorf("%s: ino of %s = %d, want %d", when, n, got, ino)
			}
		}
		if got := lstat(t, p("d/new")).Ino; got != newIno {
			t.Errorf("%s: ino of d/new = %d, want %d", when, got, newIno)
		}
		rd := readdirInos(t, p("d"))
		for _, n := range []string{"f", "g", "h", "new"} {
			if want := lstat(t, p("d/"+n)).Ino; rd[n] != want {
				t.Errorf("%s: readdir ino of d/%s = %d, stat says %d", when, n, rd[n], want)
			}
		}
		if st := lstat(t, p("d/h")); st.Nlink != 2 || readFile(t, p("d/h")) != "changed" {
			t.Errorf("%s: d/h nlink %d content %q, want 2 and the write through d/f", when, st.Nlink, readFile(t, p("d/h")))
		}
		var dev uint64
		for _, n := range []string{"", "d", "d/f", "d/new", "top"} {
			st := lstat(t, p(n))
			if dev == 0 {
				dev = st.Dev
			} else if st.Dev != dev {
				t.Errorf("%s: st_dev of %q = %d, want %d", when, n, st.Dev, dev)
			}
		}
	}
	check("after copy-up")
	u.remount(t, cow.FormatOCI)
	check("after remount")
}

func TestNamesAndPaths(t *testing.T) {
	u := mountUnion(t, cow.FormatOCI, tree(t, map[string]string{"x": "x"}))
	long := strings.Repeat("n", 256)
	if err := os.WriteFile(filepath.Join(u.mnt, long), nil, 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("create 256-byte name: %v, want ENAMETOOLONG", err)
	}
	if _, err := os.Lstat(filepath.Join(u.mnt, long)); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("lstat 256-byte name: %v, want ENAMETOOLONG", err)
	}
	ok := strings.Repeat("m", 255)
	must(t, os.WriteFile(filepath.Join(u.mnt, ok), []byte("1"), 0o644))
	// A deep path close to PATH_MAX, made relative to an open dir as the kernel
	// limits each path argument to PATH_MAX.
	comp := strings.Repeat("d", 200)
	dir := u.mnt
	depth := 0
	for len(dir)-len(u.mnt) < 6000 {
		dir = filepath.Join(dir, comp)
		depth++
	}
	rel := strings.TrimPrefix(dir, u.mnt+"/")
	root, err := os.Open(u.mnt)
	must(t, err)
	defer root.Close()
	cur := int(root.Fd())
	for i := 0; i < depth; i++ {
		must(t, unix.Mkdirat(cur, comp, 0o755))
		fd, err := unix.Openat(cur, comp, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		must(t, err)
		if cur != int(root.Fd()) {
			unix.Close(cur)
		}
		cur = fd
	}
	must(t, unix.Close(cur))
	if len(rel) < 5000 {
		t.Fatalf("deep path only %d bytes", len(rel))
	}
	// Deeper than PATH_MAX in total: reach it in two steps, then write and read.
	half := rel[:strings.LastIndexByte(rel[:3000], '/')]
	hfd, err := unix.Openat(int(root.Fd()), half, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	must(t, err)
	defer unix.Close(hfd)
	rest := rel[len(half)+1:]
	fd, err := unix.Openat(hfd, rest+"/f", unix.O_CREAT|unix.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("create at depth %d bytes: %v", len(rel), err)
	}
	unix.Write(fd, []byte("deep"))
	unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstatat(hfd, rest+"/f", &st, 0); err != nil || st.Size != 4 {
		t.Errorf("stat of a file %d bytes deep: %v size %d", len(rel), err, st.Size)
	}
	for _, bad := range []string{".wh.x", ".wh..wh..opq"} {
		if err := os.WriteFile(filepath.Join(u.mnt, bad), nil, 0o644); err == nil {
			t.Errorf("create %s: no error, want refusal", bad)
		}
	}
}

func TestWhiteoutsAndRename(t *testing.T) {
	for _, f := range []cow.Format{cow.FormatOCI, cow.FormatOverlay} {
		t.Run(f.String(), func(t *testing.T) {
			lower := tree(t, map[string]string{"d/a": "a", "d/sub/b": "b", "e/": "", "f1": "1", "f2": "2", "full/x": "x"})
			u := mountUnion(t, f, lower)
			p := func(s string) string { return filepath.Join(u.mnt, s) }
			if err := unix.Rmdir(p("full")); !errors.Is(err, unix.ENOTEMPTY) {
				t.Errorf("rmdir of a non-empty lower dir: %v, want ENOTEMPTY", err)
			}
			must(t, os.Remove(p("full/x")))
			must(t, unix.Rmdir(p("full")))
			if _, err := os.Lstat(p("full")); !os.IsNotExist(err) {
				t.Errorf("full after rmdir: %v", err)
			}
			// Rename a lower dir: no EXDEV, content kept, old name gone.
			must(t, os.Rename(p("d"), p("d2")))
			if got := readFile(t, p("d2/sub/b")); got != "b" {
				t.Errorf("d2/sub/b = %q", got)
			}
			if _, err := os.Lstat(p("d")); !os.IsNotExist(err) {
				t.Errorf("d after rename: %v", err)
			}
			// NOREPLACE and EXCHANGE.
			if err := unix.Renameat2(unix.AT_FDCWD, p("f1"), unix.AT_FDCWD, p("f2"), unix.RENAME_NOREPLACE); !errors.Is(err, unix.EEXIST) {
				t.Errorf("RENAME_NOREPLACE: %v, want EEXIST", err)
			}
			must(t, unix.Renameat2(unix.AT_FDCWD, p("f1"), unix.AT_FDCWD, p("f2"), unix.RENAME_EXCHANGE))
			if readFile(t, p("f1")) != "2" || readFile(t, p("f2")) != "1" {
				t.Errorf("after exchange f1=%q f2=%q", readFile(t, p("f1")), readFile(t, p("f2")))
			}
			must(t, unix.Renameat2(unix.AT_FDCWD, p("d2"), unix.AT_FDCWD, p("e"), unix.RENAME_EXCHANGE))
			if readFile(t, p("e/a")) != "a" {
				t.Errorf("after dir exchange e/a missing")
			}
			if ents, _ := os.ReadDir(p("d2")); len(ents) != 0 {
				t.Errorf("after dir exchange d2 has %d entries, want 0", len(ents))
			}
			// Nothing reserved shows through the mount.
			ents, err := os.ReadDir(u.mnt)
			must(t, err)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".wh.") {
					t.Errorf("readdir shows %s", e.Name())
				}
			}
			u.remount(t, f)
			if _, err := os.Lstat(p("full")); !os.IsNotExist(err) {
				t.Errorf("full after remount: %v", err)
			}
			if readFile(t, p("e/sub/b")) != "b" {
				t.Errorf("e/sub/b after remount")
			}
		})
	}
}

func TestOpenFilesAndData(t *testing.T) {
	lower := tree(t, map[string]string{"big": strings.Repeat("L", 1<<20), "ro": "read only"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }

	// Unlink of an open file: the fd keeps working, fstat says nlink 0.
	f, err := os.OpenFile(p("tmp"), os.O_CREATE|os.O_RDWR, 0o644)
	must(t, err)
	must(t, os.Remove(p("tmp")))
	_, err = f.WriteAt([]byte("still here"), 0)
	must(t, err)
	buf := make([]byte, 10)
	_, err = f.ReadAt(buf, 0)
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Fstat(int(f.Fd()), &st))
	if string(buf) != "still here" || st.Nlink != 0 {
		t.Errorf("unlinked open file: read %q nlink %d", buf, st.Nlink)
	}
	f.Close()

	// O_TMPFILE, then linked into place.
	tfd, err := unix.Open(u.mnt, unix.O_TMPFILE|unix.O_RDWR, 0o640)
	must(t, err)
	_, err = unix.Write(tfd, []byte("tmp"))
	must(t, err)
	must(t, unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", tfd), unix.AT_FDCWD, p("linked"), unix.AT_SYMLINK_FOLLOW))
	unix.Close(tfd)
	if got := readFile(t, p("linked")); got != "tmp" {
		t.Errorf("linked tmpfile = %q", got)
	}
	if st := lstat(t, p("linked")); st.Nlink != 1 || st.Mode&0o777 != 0o640 {
		t.Errorf("linked tmpfile nlink %d mode %o", st.Nlink, st.Mode)
	}

	// O_TRUNC of a big lower file copies no data; truncate keeps the prefix.
	must(t, os.WriteFile(p("big"), []byte("short"), 0o644))
	if got := readFile(t, p("big")); got != "short" {
		t.Errorf("big after O_TRUNC write = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(u.upper, "big")); err != nil || fi.Size() != 5 {
		t.Errorf("upper big: %v %v", fi, err)
	}

	// Shared writable mmap (in a child process, see TestMain).
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LAYERFS_TEST_MMAP_WRITE="+p("ro"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mmap child: %v %s", err, out)
	}
	if got := readFile(t, p("ro")); got != "READ only" {
		t.Errorf("after mmap write: %q", got)
	}

	// SEEK_DATA/SEEK_HOLE, fallocate, flock.
	sf, err := os.OpenFile(p("sparse"), os.O_CREATE|os.O_RDWR, 0o644)
	must(t, err)
	defer sf.Close()
	_, err = sf.WriteAt([]byte("start"), 0)
	must(t, err)
	_, err = sf.WriteAt([]byte("end"), 1<<20)
	must(t, err)
	must(t, unix.Fallocate(int(sf.Fd()), 0, 1<<21, 4096))
	if fi, _ := sf.Stat(); fi.Size() != 1<<21+4096 {
		t.Errorf("size after fallocate = %d", fi.Size())
	}
	if off, err := unix.Seek(int(sf.Fd()), 8192, unix.SEEK_DATA); err != nil || off != 1<<20 {
		t.Errorf("SEEK_DATA = %d, %v; want %d", off, err, 1<<20)
	}
	if off, err := unix.Seek(int(sf.Fd()), 0, unix.SEEK_HOLE); err != nil || off != 4096 {
		t.Errorf("SEEK_HOLE = %d, %v; want 4096", off, err)
	}
	must(t, unix.Flock(int(sf.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	other, err := os.Open(p("sparse"))
	must(t, err)
	defer other.Close()
	if err := unix.Flock(int(other.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("second flock: %v, want EWOULDBLOCK", err)
	}
	var sfs unix.Statfs_t
	must(t, unix.Statfs(u.mnt, &sfs))
	var ufs unix.Statfs_t
	must(t, unix.Statfs(u.upper, &ufs))
	if sfs.Blocks != ufs.Blocks {
		t.Errorf("statfs blocks %d, upper has %d", sfs.Blocks, ufs.Blocks)
	}
	must(t, sf.Sync())
}

// TestSymlinkEscape: images whose paths lead outside through symlinks or "..".
func TestSymlinkEscape(t *testing.T) {
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "passwd"), []byte("host secret"), 0o644))
	lower := tree(t, map[string]string{
		"etc":        "->" + outside,
		"up":         "->../../../../../../../../" + outside,
		"dir/rel":    "->../../../..",
		"dir/real":   "r",
		"lib/":       "",
		"lib/loop/x": "x",
	})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	// Through the mount the symlinks are symlinks; the kernel follows them in the
	// caller's namespace, which is fine. What must never happen: the mount itself
	// writing or reading through them.
	if tgt, err := os.Readlink(p("etc")); err != nil || tgt != outside {
		t.Errorf("readlink etc = %q, %v", tgt, err)
	}
	// Writing "etc/passwd" relative to the image (as chroot would) must not reach
	// the host: do it the way a chrooted writer does, with openat2 IN_ROOT.
	root, err := os.Open(u.mnt)
	must(t, err)
	defer root.Close()
	how := unix.OpenHow{Flags: unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC, Mode: 0o644, Resolve: unix.RESOLVE_IN_ROOT}
	if fd, err := unix.Openat2(int(root.Fd()), "etc/passwd", &how); err == nil {
		unix.Write(fd, []byte("pwned"))
		unix.Close(fd)
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "passwd")); string(got) != "host secret" {
		t.Fatalf("host file changed to %q", got)
	}
	// Copy-up of entries whose parents are symlinks cannot happen: chmod and
	// setxattr of the symlinks themselves, rename over them.
	must(t, os.Lchown(p("etc"), 1, 1))
	must(t, os.Rename(p("up"), p("up2")))
	must(t, os.Rename(p("dir"), p("dir2")))
	must(t, os.WriteFile(p("dir2/real"), []byte("w"), 0o644))
	if got, _ := os.ReadFile(filepath.Join(outside, "passwd")); string(got) != "host secret" {
		t.Fatalf("host file changed to %q", got)
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		t.Errorf("outside dir has %d entries, want 1", len(ents))
	}
	if st := lstat(t, filepath.Join(u.upper, "etc")); st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Uid != 1 {
		t.Errorf("upper etc: mode %o uid %d, want the chowned symlink", st.Mode, st.Uid)
	}
	var ost unix.Stat_t
	must(t, unix.Lstat(outside, &ost))
	if ost.Uid == 1 {
		t.Errorf("lchown reached the host dir")
	}
}

func TestPauseResume(t *testing.T) {
	u := mountUnion(t, cow.FormatOCI, tree(t, map[string]string{"r": "read"}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Looked up before the Pause: the paused CREATE below holds the root dir's
	// lock in the kernel, so a LOOKUP of r while paused would wait for Resume.
	lstat(t, filepath.Join(u.mnt, "r"))
	must(t, u.m.Pause(ctx))
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(filepath.Join(u.mnt, "w"), []byte("x"), 0o644) }()
	if got := readFile(t, filepath.Join(u.mnt, "r")); got != "read" {
		t.Errorf("read while paused = %q", got)
	}
	select {
	case err := <-done:
		t.Fatalf("write finished while paused: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := os.Lstat(filepath.Join(u.upper, "w")); err == nil {
		t.Errorf("upper changed while paused")
	}
	u.m.Resume()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("write still blocked after Resume")
	}
}

func TestRebase(t *testing.T) {
	lower := tree(t, map[string]string{"a": "a", "gone": "g"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("b"), []byte("b"), 0o644))
	must(t, os.Remove(p("gone")))
	must(t, os.WriteFile(p("a"), []byte("a2"), 0o644))
	open, err := os.OpenFile(p("b"), os.O_WRONLY, 0)
	must(t, err)
	defer open.Close()
	// "Commit": the old upper becomes a lower; a fresh upper takes its place.
	newUpper := t.TempDir()
	must(t, u.m.Pause(context.Background()))
	must(t, u.m.Rebase([]string{u.upper, lower}, newUpper, nil))
	u.m.Resume()
	_, err = open.WriteAt([]byte("B"), 0)
	must(t, err)
	if got, _ := os.ReadFile(filepath.Join(newUpper, "b")); string(got) != "B" {
		t.Errorf("write through an fd opened before Rebase: new upper b = %q", got)
	}
	if readFile(t, p("a")) != "a2" || readFile(t, p("b")) != "B" {
		t.Errorf("after rebase a=%q b=%q", readFile(t, p("a")), readFile(t, p("b")))
	}
	if _, err := os.Lstat(p("gone")); !os.IsNotExist(err) {
		t.Errorf("gone after rebase: %v", err)
	}
	must(t, os.WriteFile(p("c"), []byte("c"), 0o644))
	if _, err := os.Lstat(filepath.Join(newUpper, "c")); err != nil {
		t.Errorf("write after rebase did not reach the new upper: %v", err)
	}
}

// TestConcurrentChanges hammers one union from several goroutines; -race and the
// final tree check catch lost updates, deadlocks and crashes.
func TestConcurrentChanges(t *testing.T) {
	spec := map[string]string{}
	for i := 0; i < 20; i++ {
		spec[filepath.Join("d", string(rune('a'+i)), "f")] = "lower"
	}
	u := mountUnion(t, cow.FormatOCI, tree(t, spec))
	done := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func(g int) {
			var err error
			defer func() { done <- err }()
			for i := 0; i < 20 && err == nil; i++ {
				dir := filepath.Join(u.mnt, "d", string(rune('a'+i)))
				name := filepath.Join(dir, "g"+string(rune('0'+g)))
				if err = os.WriteFile(name, []byte("x"), 0o644); err != nil {
					return
				}
				if err = os.Rename(name, name+"r"); err != nil {
					return
				}
				if _, err = os.ReadDir(dir); err != nil {
					return
				}
				if _, err = os.ReadFile(filepath.Join(dir, "f")); err != nil {
					return
				}
				if g == i%8 {
					err = os.WriteFile(filepath.Join(dir, "f"), []byte("upper"), 0o644)
				}
			}
		}(g)
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	for i := 0; i < 20; i++ {
		dir := filepath.Join(u.mnt, "d", string(rune('a'+i)))
		ents, err := os.ReadDir(dir)
		must(t, err)
		if len(ents) != 9 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			up, _ := os.ReadDir(filepath.Join(u.upper, "d", string(rune('a'+i))))
			var unames []string
			for _, e := range up {
				unames = append(unames, e.Name())
			}
			t.Errorf("%s has %d entries %q, want 9; upper has %q", dir, len(ents), names, unames)
		}
		if got := readFile(t, filepath.Join(dir, "f")); got != "upper" {
			t.Errorf("%s/f = %q", dir, got)
		}
	}
}

func TestXattrPrivacy(t *testing.T) {
	testenv.RequireRoot(t)
	lower := tree(t, map[string]string{"d/f": "f", "g": "g"})
	must(t, unix.Setxattr(filepath.Join(lower, "d"), cow.OverlayOpaqueXattr, []byte("y"), 0))
	must(t, unix.Setxattr(filepath.Join(lower, "g"), "user.overlay.origin", []byte("x"), 0))
	must(t, unix.Setxattr(filepath.Join(lower, "g"), "user.visible", []byte("v"), 0))
	u := mountUnion(t, cow.FormatOverlay, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("g"), []byte("copied up"), 0o644)) // gets an origin xattr
	for _, n := range []string{"d", "g"} {
		buf := make([]byte, 4096)
		sz, err := unix.Listxattr(p(n), buf)
		must(t, err)
		for _, k := range splitNul(buf[:sz]) {
			if cow.IsPrivateXattr(k) {
				t.Errorf("listxattr %s shows %s", n, k)
			}
		}
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(p("g"), "user.visible", buf); err != nil || string(buf[:n]) != "v" {
		t.Errorf("user.visible after copy-up = %q, %v", buf[:n], err)
	}
	for _, k := range []string{originXattr, "user.layerfs.origin", cow.OverlayOpaqueXattr} {
		if _, err := unix.Getxattr(p("g"), k, buf); !errors.Is(err, unix.ENODATA) {
			t.Errorf("getxattr %s: %v, want ENODATA", k, err)
		}
		if err := unix.Setxattr(p("g"), k, []byte("y"), 0); !errors.Is(err, unix.EPERM) {
			t.Errorf("setxattr %s: %v, want EPERM", k, err)
		}
		if err := unix.Removexattr(p("g"), k); !errors.Is(err, unix.EPERM) {
			t.Errorf("removexattr %s: %v, want EPERM", k, err)
		}
	}
	if err := unix.Setxattr(p("d"), "user.overlay.opaque", []byte("y"), 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("setxattr user.overlay.opaque on a dir: %v, want EPERM", err)
	}
}

// TestUnlinkOpenNoHandle: in no-open mode an existing file is opened without a
// handle, so after its name is unlinked the server must still serve its READs and
// WRITEs from the fd it pinned at the unlink: a lower file, and an upper one.
func TestUnlinkOpenNoHandle(t *testing.T) {
	const size = 8 << 20 // beyond readahead: the later read reaches the server
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i / 4096)
	}
	u := mountUnion(t, cow.FormatOverlay, tree(t, map[string]string{"d/": "", "d/lo": string(data)}))
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("d/up"), data, 0o644))

	lo, err := os.Open(p("d/lo"))
	must(t, err)
	defer lo.Close()
	up, err := os.OpenFile(p("d/up"), os.O_RDWR, 0)
	must(t, err)
	defer up.Close()
	must(t, os.Remove(p("d/lo")))
	must(t, os.Remove(p("d/up")))

	buf := make([]byte, 4096)
	if _, err := lo.ReadAt(buf, size-4096); err != nil || buf[0] != data[size-4096] {
		t.Errorf("read of the unlinked lower file: %v, byte %d", err, buf[0])
	}
	if _, err := up.WriteAt([]byte("tail"), size); err != nil {
		t.Errorf("write to the unlinked upper file: %v", err)
	}
	var st unix.Stat_t
	must(t, unix.Fstat(int(up.Fd()), &st))
	if st.Nlink != 0 || st.Size != size+4 {
		t.Errorf("unlinked upper file: nlink %d size %d, want 0 and %d", st.Nlink, st.Size, size+4)
	}
	if _, err := os.Lstat(p("d/lo")); !os.IsNotExist(err) {
		t.Errorf("d/lo after unlink: %v", err)
	}
}

// TestChangeUnlinkedLowerFile: a layer's file opened, then unlinked, can still be
// written, truncated, chmod'ed and chown'ed through its fd, as on a local
// filesystem, in both data modes; none of it reaches the layer (it changes an
// unnamed copy), and a removed layer dir refuses changes.
func TestChangeUnlinkedLowerFile(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			lower := tree(t, map[string]string{"f": "hello", "h": "chmod", "d/": ""})
			before, err := treecmp.Snapshot(lower, treecmp.Options{})
			must(t, err)
			u := mountUnionMode(t, cow.FormatOverlay, pt, lower)
			p := func(s string) string { return filepath.Join(u.mnt, s) }

			fd, err := unix.Open(p("f"), unix.O_RDWR, 0)
			must(t, err)
			defer unix.Close(fd)
			must(t, unix.Unlink(p("f")))
			var st unix.Stat_t
			must(t, unix.Fstat(fd, &st))
			if st.Nlink != 0 {
				t.Errorf("fstat of an unlinked layer file: nlink %d, want 0", st.Nlink)
			}
			if _, err := unix.Pwrite(fd, []byte("J"), 0); err != nil {
				t.Errorf("pwrite to an unlinked layer file: %v", err)
			}
			buf := make([]byte, 8)
			if n, err := unix.Pread(fd, buf, 0); err != nil || string(buf[:n]) != "Jello" {
				t.Errorf("pread after the write: %q, %v", buf[:max(n, 0)], err)
			}
			if err := unix.Ftruncate(fd, 2); err != nil {
				t.Errorf("ftruncate of an unlinked layer file: %v", err)
			}
			must(t, unix.Fstat(fd, &st))
			if st.Size != 2 || st.Nlink != 0 {
				t.Errorf("after ftruncate: size %d nlink %d, want 2 and 0", st.Size, st.Nlink)
			}

			hfd, err := unix.Open(p("h"), unix.O_RDONLY, 0)
			must(t, err)
			defer unix.Close(hfd)
			must(t, unix.Unlink(p("h")))
			if err := unix.Fchmod(hfd, 0o600); err != nil {
				t.Errorf("fchmod of an unlinked layer file: %v", err)
			}
			if err := unix.Fchown(hfd, 1234, 1234); err != nil {
				t.Errorf("fchown of an unlinked layer file: %v", err)
			}
			must(t, unix.Fstat(hfd, &st))
			if st.Mode&0o7777 != 0o600 || st.Uid != 1234 || st.Nlink != 0 {
				t.Errorf("fstat after fchmod/fchown: mode %o uid %d nlink %d", st.Mode&0o7777, st.Uid, st.Nlink)
			}

			dfd, err := unix.Open(p("d"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
			must(t, err)
			defer unix.Close(dfd)
			must(t, unix.Rmdir(p("d")))
			ts := []unix.Timespec{{Sec: 1000}, {Sec: 1000}}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, procFd(dfd), ts, 0); err == nil {
				t.Errorf("futimens of a removed layer dir succeeded")
			}

			after, err := treecmp.Snapshot(lower, treecmp.Options{})
			must(t, err)
			if d := treecmp.Diff(before, after, treecmp.Options{}); len(d) > 0 {
				t.Errorf("the layer changed:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// TestMkdirInSetgidDir: a directory made in a setgid directory (a layer's or one
// made through the mount) takes the parent's group and is setgid itself, as on a
// local filesystem, also after a remount.
func TestMkdirInSetgidDir(t *testing.T) {
	lower := tree(t, map[string]string{"sg/": ""})
	must(t, unix.Chown(filepath.Join(lower, "sg"), 0, 50))
	must(t, unix.Chmod(filepath.Join(lower, "sg"), 0o2777)) // (os.Chmod drops 0o2000)
	u := mountUnion(t, cow.FormatOverlay, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.Mkdir(p("sg/d"), 0o755))
	must(t, os.Mkdir(p("sg/d/e"), 0o755))
	check := func(when string) {
		for _, d := range []string{"sg/d", "sg/d/e"} {
			st := lstat(t, p(d))
			if st.Mode&unix.S_ISGID == 0 || st.Gid != 50 {
				t.Errorf("%s: %s mode %o gid %d, want setgid and gid 50", when, d, st.Mode&0o7777, st.Gid)
			}
		}
	}
	check("made")
	u.remount(t, cow.FormatOverlay)
	check("after remount")
}

// TestInoKeptForCopiedUpSymlinkAndFifo: a layer's symlink and fifo keep their inode
// numbers, in stat and in readdir, once a metadata change copied them up, across a
// remount (the upper copies record their origin as files and dirs do).
func TestInoKeptForCopiedUpSymlinkAndFifo(t *testing.T) {
	lower := tree(t, map[string]string{"d/": "", "d/target": "x"})
	must(t, os.Symlink("target", filepath.Join(lower, "d/link")))
	must(t, unix.Mkfifo(filepath.Join(lower, "d/fifo"), 0o644))
	u := mountUnion(t, cow.FormatOverlay, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	inos := func() map[string]uint64 {
		m := map[string]uint64{}
		for name, dino := range direntInos(t, p("d")) {
			if name == "." || name == ".." || name == "target" {
				continue
			}
			m[name] = lstat(t, p("d/"+name)).Ino
			if dino != m[name] {
				t.Errorf("%s: readdir ino %d, stat %d", name, dino, m[name])
			}
		}
		return m
	}
	before := inos()
	must(t, unix.Lchown(p("d/link"), 1234, 1234))
	must(t, unix.Chmod(p("d/fifo"), 0o600))
	u.remount(t, cow.FormatOverlay)
	after := inos()
	for name, ino := range before {
		if after[name] != ino {
			t.Errorf("%s: ino %d before the copy-up and remount, %d after", name, ino, after[name])
		}
	}
	if st := lstat(t, p("d/link")); st.Uid != 1234 {
		t.Errorf("d/link uid %d after lchown", st.Uid)
	}
}

// direntInos lists dir with getdents64 and returns each name's d_ino.
func direntInos(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	out := map[string]uint64{}
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		must(t, err)
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(binary.LittleEndian.Uint16(b[16:18]))
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			out[string(name)] = binary.LittleEndian.Uint64(b[0:8])
			b = b[reclen:]
		}
	}
}

// TestLocksAcrossCopyUp: locks are a local filesystem's, in both data modes: a lock
// taken through a read-only open of a layer's file holds against another process
// that opens the file read-write (copying it up), and a process's own fcntl locks
// on two fds of one file do not conflict.
func TestLocksAcrossCopyUp(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			u := mountUnionMode(t, cow.FormatOverlay, pt, tree(t, map[string]string{"f": "locked\n", "g": "own\n"}))
			p := func(s string) string { return filepath.Join(u.mnt, s) }
			child := func() string {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), "LAYERFS_TEST_LOCK="+p("f"))
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("lock child: %v %s", err, out)
				}
				return string(out)
			}
			ro, err := os.Open(p("f"))
			must(t, err)
			defer ro.Close()
			rd := unix.Flock_t{Type: unix.F_RDLCK}
			must(t, unix.FcntlFlock(ro.Fd(), unix.F_SETLK, &rd))
			must(t, unix.Flock(int(ro.Fd()), unix.LOCK_SH))
			out := child()
			if strings.Contains(out, "fcntl: <nil>") || strings.Contains(out, "flock: <nil>") {
				t.Errorf("another process got a write lock on a file this one holds locked:\n%s", out)
			}

			f1, err := os.OpenFile(p("g"), os.O_RDWR, 0)
			must(t, err)
			defer f1.Close()
			f2, err := os.OpenFile(p("g"), os.O_RDWR, 0)
			must(t, err)
			defer f2.Close()
			wr := unix.Flock_t{Type: unix.F_WRLCK}
			must(t, unix.FcntlFlock(f1.Fd(), unix.F_SETLK, &wr))
			if err := unix.FcntlFlock(f2.Fd(), unix.F_SETLK, &wr); err != nil {
				t.Errorf("a process's second fcntl lock on its own file: %v, want it granted", err)
			}
		})
	}
}

// TestRenameLowerDirKeepsAtime: renaming a dir that lives in a lower layer copies
// it up as a whole; that is no read of it, so its atime stays the layer's (kernel
// overlayfs keeps it too).
func TestRenameLowerDirKeepsAtime(t *testing.T) {
	low := tree(t, map[string]string{"d/a": "1", "d/b": "2"})
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(low, "d"), old, old))
	u := mountUnion(t, cow.FormatOverlay, low)
	must(t, os.Rename(filepath.Join(u.mnt, "d"), filepath.Join(u.mnt, "e")))
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(u.upper, "e"), &st))
	if got := time.Unix(st.Atim.Unix()); !got.Equal(old) {
		t.Errorf("atime of the moved dir %v, want the layer's %v", got, old)
	}
}

// TestUtimesPast2262: a time set through the mount outside int64 nanoseconds (after
// 2262) reaches the upper dir as set (within what its filesystem holds), as on
// overlayfs; it went through time.UnixNano, which wraps, and `touch -d @10000000000`
// dated the file 1901.
func TestUtimesPast2262(t *testing.T) {
	u := mountUnion(t, cow.FormatOCI, tree(t, map[string]string{"lower": "l"}))
	probe := filepath.Join(t.TempDir(), "probe")
	must(t, os.WriteFile(probe, nil, 0o644))
	ts := []unix.Timespec{{Sec: 10000000000, Nsec: 7}, {Sec: 10000000000, Nsec: 7}}
	must(t, unix.UtimesNano(probe, ts))
	var want unix.Stat_t
	must(t, unix.Lstat(probe, &want))
	must(t, os.WriteFile(filepath.Join(u.mnt, "new"), nil, 0o644))
	for _, name := range []string{"lower", "new"} {
		must(t, unix.UtimesNano(filepath.Join(u.mnt, name), ts))
		for _, p := range []string{filepath.Join(u.mnt, name), filepath.Join(u.upper, name)} {
			var st unix.Stat_t
			must(t, unix.Lstat(p, &st))
			if st.Mtim != want.Mtim || st.Atim != want.Atim {
				t.Errorf("%s: mtime %d.%09d atime %d.%09d, want %d.%09d", p, st.Mtim.Sec, st.Mtim.Nsec, st.Atim.Sec, st.Atim.Nsec, want.Mtim.Sec, want.Mtim.Nsec)
			}
		}
	}
}

// TestCopyUpKeepsLinkedSymlinksAndFifos: a metadata change of one name of a layer's
// hard-linked symlink or fifo copies up the other names as links too, as it does for
// regular files (and as overlayfs with index=on does). Only the changed name used to
// be copied up: the mount still showed the change through the other name (one
// inode), but the upper dir, and so the commit, kept the old owner there.
func TestCopyUpKeepsLinkedSymlinksAndFifos(t *testing.T) {
	testenv.RequireRoot(t)
	lower := t.TempDir()
	must(t, os.Symlink("target", filepath.Join(lower, "s1")))
	must(t, unix.Mkfifo(filepath.Join(lower, "p1"), 0o644))
	must(t, os.Mkdir(filepath.Join(lower, "d"), 0o755))
	must(t, os.Link(filepath.Join(lower, "s1"), filepath.Join(lower, "d/s2")))
	must(t, os.Link(filepath.Join(lower, "p1"), filepath.Join(lower, "d/p2")))
	u := mountUnion(t, cow.FormatOCI, lower)
	must(t, os.Lchown(filepath.Join(u.mnt, "s1"), 1000, 1000))
	must(t, os.Chmod(filepath.Join(u.mnt, "p1"), 0o600))
	for _, g := range [][2]string{{"s1", "d/s2"}, {"p1", "d/p2"}} {
		var a, b unix.Stat_t
		if err := unix.Lstat(filepath.Join(u.upper, g[0]), &a); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(u.upper, g[1]), &b); err != nil || a.Ino != b.Ino {
			t.Errorf("upper %s: %v, inode %d; want a link to upper %s (inode %d)", g[1], err, b.Ino, g[0], a.Ino)
		}
		for _, n := range g {
			st := lstat(t, filepath.Join(u.mnt, n))
			if st.Nlink != 2 {
				t.Errorf("%s: nlink %d through the mount, want 2", n, st.Nlink)
			}
		}
	}
	u.remount(t, cow.FormatOCI)
	if st := lstat(t, filepath.Join(u.mnt, "d/s2")); st.Uid != 1000 {
		t.Errorf("d/s2 after a remount: uid %d, want 1000 (lchown of its link s1)", st.Uid)
	}
	if st := lstat(t, filepath.Join(u.mnt, "d/p2")); st.Mode&0o777 != 0o600 {
		t.Errorf("d/p2 after a remount: mode %o, want 600 (chmod of its link p1)", st.Mode&0o777)
	}
}

// TestTmpfileMetadata: an O_TMPFILE file's mode, owner, size, times and xattrs
// are set through its fd before linkat, as on ext4 and kernel overlayfs (the
// atomic-create way of systemd, package managers, editors); each failed with
// ENOENT, the changes went to a path the unnamed file does not have (found by
// a review). Both open modes.
func TestTmpfileMetadata(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			u := mountUnionMode(t, cow.FormatOCI, pt, tree(t, map[string]string{"keep": "k"}))
			fd, err := unix.Open(u.mnt, unix.O_TMPFILE|unix.O_RDWR, 0o640)
			must(t, err)
			defer unix.Close(fd)
			_, err = unix.Write(fd, []byte("hello"))
			must(t, err)
			must(t, unix.Fchmod(fd, 0o604))
			must(t, unix.Fchown(fd, 7, 8))
			must(t, unix.Ftruncate(fd, 10))
			proc := fmt.Sprintf("/proc/self/fd/%d", fd)
			must(t, unix.UtimesNanoAt(unix.AT_FDCWD, proc, []unix.Timespec{{Sec: 1}, {Sec: 2}}, 0))
			must(t, unix.Fsetxattr(fd, "user.t", []byte("v"), 0))
			buf := make([]byte, 16)
			if n, err := unix.Fgetxattr(fd, "user.t", buf); err != nil || string(buf[:n]) != "v" {
				t.Errorf("fgetxattr before the link: %q, %v", buf[:max(n, 0)], err)
			}
			must(t, unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, filepath.Join(u.mnt, "linked"), unix.AT_SYMLINK_FOLLOW))
			must(t, unix.Fchmod(fd, 0o600)) // through the fd after the link: the named file
			for _, dir := range []string{u.mnt, u.upper} {
				st := lstat(t, filepath.Join(dir, "linked"))
				n, err := unix.Lgetxattr(filepath.Join(dir, "linked"), "user.t", buf)
				if st.Mode&0o7777 != 0o600 || st.Uid != 7 || st.Gid != 8 || st.Size != 10 || st.Mtim.Sec != 2 || err != nil || string(buf[:n]) != "v" {
					t.Errorf("%s/linked: mode %o owner %d:%d size %d mtime %d xattr %q %v; want 600 7:8 10 2 v",
						dir, st.Mode&0o7777, st.Uid, st.Gid, st.Size, st.Mtim.Sec, buf[:max(n, 0)], err)
				}
			}
		})
	}
}
