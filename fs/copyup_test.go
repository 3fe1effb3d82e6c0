package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// bigLower is a lower dir with a file of 2*bigCopy bytes of data (big) and small
// files a and b.
func bigLower(t *testing.T) (dir string, big []byte) {
	big = bytes.Repeat([]byte("0123456789abcdef"), 2*bigCopy/16)
	dir = tree(t, map[string]string{"d/big": string(big), "d/a": "a\n", "e/b": "b\n"})
	return dir, big
}

// blockCopyUps makes every copy-up that let go of cuMu wait, before it copies,
// until the returned release is called; reached receives once per such copy-up.
func blockCopyUps(t *testing.T) (reached <-chan struct{}, release func()) {
	r, gate := make(chan struct{}, 8), make(chan struct{})
	hook := func() {
		r <- struct{}{}
		<-gate
	}
	copyUpHook.Store(&hook)
	released := false
	release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(func() {
		release()
		copyUpHook.Store(nil)
	})
	return r, release
}

func waitCopyUp(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
}

// appendAsync appends s to p in a goroutine; the result comes on the channel.
func appendAsync(p, s string) <-chan error {
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.WriteString(s)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		done <- err
	}()
	return done
}

// TestCopyUpsGoOnDuringBigCopy: while a big file's data is copied up, copy-ups of
// other files (chmod, a write, a touch) are not held up: before, every copy-up of
// the mount waited for it (a touch waited 3.3 s for the copy-up of a 1 GiB file).
// The big file ends up whole, with the append.
func TestCopyUpsGoOnDuringBigCopy(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			lower, big := bigLower(t)
			u := mountUnionMode(t, cow.FormatOverlay, pt, lower)
			if pt && !u.m.fs.passthrough.Load() {
				t.Skip("no FUSE passthrough here")
			}
			reached, release := blockCopyUps(t)
			done := appendAsync(filepath.Join(u.mnt, "d/big"), "x")
			waitCopyUp(t, reached, "big copy-up")

			others := make(chan error, 1)
			go func() {
				if err := os.Chmod(filepath.Join(u.mnt, "d/a"), 0o600); err != nil {
					others <- err
					return
				}
				if err := os.WriteFile(filepath.Join(u.mnt, "e/b"), []byte("B\n"), 0o644); err != nil {
					others <- err
					return
				}
				now := time.Now()
				others <- os.Chtimes(filepath.Join(u.mnt, "d/a"), now, now)
			}()
			select {
			case err := <-others:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				release()
				t.Fatal("copy-ups of other files waited for the big file's copy-up")
			}
			select {
			case err := <-done:
				t.Fatalf("the big copy-up ended while held: %v", err)
			default:
			}
			release()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(u.mnt, "d/big")); got != string(big)+"x" {
				t.Errorf("big file after the append: %d bytes, want %d", len(got), len(big)+1)
			}
			if got := readFile(t, filepath.Join(u.upper, "d/big")); got != string(big)+"x" {
				t.Errorf("big file in the upper dir: %d bytes, want %d", len(got), len(big)+1)
			}
			if st, err := os.Stat(filepath.Join(u.mnt, "d/a")); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("d/a: %v, %v; want mode 0600", st.Mode(), err)
			}
			if got := readFile(t, filepath.Join(u.mnt, "e/b")); got != "B\n" {
				t.Errorf("e/b = %q", got)
			}
			if got := readFile(t, filepath.Join(lower, "d/big")); got != string(big) {
				t.Error("the lower file changed")
			}
		})
	}
}

// TestBigCopyUpsOfOneFile: two appends to one big lower file copy it up once, and
// both land.
func TestBigCopyUpsOfOneFile(t *testing.T) {
	lower, big := bigLower(t)
	u := mountUnion(t, cow.FormatOverlay, lower)
	reached, release := blockCopyUps(t)
	p := filepath.Join(u.mnt, "d/big")
	done1 := appendAsync(p, "x")
	waitCopyUp(t, reached, "first copy-up")
	done2 := appendAsync(p, "y")
	select {
	case <-reached:
		t.Error("a second copy-up of the file being copied up")
	case <-time.After(200 * time.Millisecond):
	}
	release()
	for _, d := range []<-chan error{done1, done2} {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	got := readFile(t, p)
	if got != string(big)+"xy" && got != string(big)+"yx" {
		t.Errorf("after two appends: %d bytes ending %q, want %d ending xy", len(got), got[len(got)-2:], len(big)+2)
	}
}

// TestBigCopyUpRacesUnlink: the name of a file whose data is being copied up is
// deleted meanwhile (in passthrough mode, where the copy-up happens in the OPEN;
// in no-open mode it happens in a WRITE, and the kernel holds the file's lock,
// which the unlink waits for): the delete does not wait, the copy is not placed
// under the deleted name (no resurrected file, in either whiteout format), and
// the open either loses the race (ENOENT) or gets the file, whose changes stay
// off the layer.
func TestBigCopyUpRacesUnlink(t *testing.T) {
	for _, f := range []cow.Format{cow.FormatOverlay, cow.FormatOCI} {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			lower, big := bigLower(t)
			u := mountUnionMode(t, f, true, lower)
			if !u.m.fs.passthrough.Load() {
				t.Skip("no FUSE passthrough here")
			}
			reached, release := blockCopyUps(t)
			p := filepath.Join(u.mnt, "d/big")
			type opened struct {
				f   *os.File
				err error
			}
			done := make(chan opened, 1)
			go func() {
				f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
				done <- opened{f, err}
			}()
			waitCopyUp(t, reached, "big copy-up")
			removed := make(chan error, 1)
			go func() { removed <- os.Remove(p) }()
			select {
			case err := <-removed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				release()
				t.Fatal("the unlink waited for the copy-up")
			}
			release()
			o := <-done
			if o.err == nil {
				defer o.f.Close()
				if _, err := o.f.WriteString("x"); err != nil {
					t.Errorf("append through the open that won: %v", err)
				}
			} else if !os.IsNotExist(o.err) {
				t.Errorf("open racing the unlink: %v, want success or ENOENT", o.err)
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("deleted file is back: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(u.upper, "d/big")); err == nil {
				if st, _ := os.Lstat(filepath.Join(u.upper, "d/big")); st.Mode().IsRegular() {
					t.Error("the copy was placed under the deleted name in the upper dir")
				}
			}
			ents, err := os.ReadDir(filepath.Join(u.mnt, "d"))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if e.Name() == "big" {
					t.Error("deleted file listed again")
				}
			}
			if got := readFile(t, filepath.Join(lower, "d/big")); got != string(big) {
				t.Error("the lower file changed")
			}
		})
	}
}

// TestRemoveRacesCopyUp: a copy-up places a lower file's copy after an unlink of it
// looked the name up (in passthrough mode an OPEN for writing copies up without
// the file's lock, which the unlink holds): the unlink must remove the copy too,
// not only whiteout the lower file (which left the file visible with OCI
// whiteouts and failed with EEXIST with overlay ones).
func TestRemoveRacesCopyUp(t *testing.T) {
	for _, f := range []cow.Format{cow.FormatOverlay, cow.FormatOCI} {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			lower := tree(t, map[string]string{"d/f": "lower\n", "d/g": "g\n"})
			u := mountUnionMode(t, f, true, lower)
			if !u.m.fs.passthrough.Load() {
				t.Skip("no FUSE passthrough here")
			}
			if err := os.WriteFile(filepath.Join(u.mnt, "d/g"), []byte("G\n"), 0o644); err != nil {
				t.Fatal(err) // d in the upper dir: an unlink in it takes no copy-up lock
			}
			p := filepath.Join(u.mnt, "d/f")
			if _, err := os.Lstat(p); err != nil {
				t.Fatal(err)
			}
			reached, gate := make(chan struct{}, 1), make(chan struct{})
			hook := func() {
				removeHook.Store(nil)
				reached <- struct{}{}
				<-gate
			}
			removeHook.Store(&hook)
			t.Cleanup(func() { removeHook.Store(nil) })
			removed := make(chan error, 1)
			go func() { removed <- os.Remove(p) }()
			waitCopyUp(t, reached, "unlink's lookup")
			opened := make(chan error, 1)
			var fh *os.File
			go func() {
				var err error
				fh, err = os.OpenFile(p, os.O_WRONLY, 0)
				opened <- err
			}()
			select {
			case err := <-opened:
				if err != nil {
					close(gate)
					t.Fatal(err)
				}
				defer fh.Close()
			case <-time.After(10 * time.Second):
				close(gate)
				t.Fatal("the open for writing waited for the unlink")
			}
			close(gate)
			if err := <-removed; err != nil {
				t.Fatalf("unlink racing a copy-up: %v", err)
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("removed file still there: %v", err)
			}
			if st, err := os.Lstat(filepath.Join(u.upper, "d/f")); err == nil && st.Mode().IsRegular() {
				t.Error("the copy is still in the upper dir")
			}
			if _, err := fh.WriteString("x"); err != nil {
				t.Errorf("write through the fd opened before the unlink: %v", err)
			}
		})
	}
}

// TestBigCopyRacesDirCopyUp: a big file deleted while its copy-up copies, and
// its directory then made opaque by a rename's whole-tree copy-up (which clears
// the whiteouts in it), must stay deleted: the copy-up's last look before it
// places the copy went through the directory's layers as they were when it
// started, found the lower file again through the no longer merged directory,
// and brought the deleted file back.
func TestBigCopyRacesDirCopyUp(t *testing.T) {
	for _, f := range []cow.Format{cow.FormatOverlay, cow.FormatOCI} {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			lower, _ := bigLower(t)
			u := mountUnionMode(t, f, true, lower)
			if !u.m.fs.passthrough.Load() {
				t.Skip("no FUSE passthrough here") // the unlink must not wait for the copy-up's WRITE
			}
			if err := os.Chmod(filepath.Join(u.mnt, "d/a"), 0o600); err != nil {
				t.Fatal(err) // d merged: in the upper dir and a lower one
			}
			reached, release := blockCopyUps(t)
			done := appendAsync(filepath.Join(u.mnt, "d/big"), "x")
			waitCopyUp(t, reached, "big copy-up")
			if err := os.Remove(filepath.Join(u.mnt, "d/big")); err != nil {
				t.Fatal(err)
			}
			moved := make(chan error, 1)
			go func() { moved <- os.Rename(filepath.Join(u.mnt, "d"), filepath.Join(u.mnt, "d2")) }()
			// Wait for the rename's copy-up of d: opaque, the whiteout of big gone.
			deadline := time.Now().Add(10 * time.Second)
			for {
				fd, err := unix.Open(filepath.Join(u.upper, "d"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
				if err != nil {
					release()
					t.Fatal(err)
				}
				opaque, _ := cow.IsOpaqueDir(fd)
				unix.Close(fd)
				_, err1 := os.Lstat(filepath.Join(u.upper, "d/big"))
				_, err2 := os.Lstat(filepath.Join(u.upper, "d", cow.WhiteoutName("big")))
				if opaque && os.IsNotExist(err1) && os.IsNotExist(err2) {
					break
				}
				if time.Now().After(deadline) {
					release()
					t.Fatal("the rename did not copy d up within 10s")
				}
				time.Sleep(5 * time.Millisecond)
			}
			release()
			err := <-done
			t.Logf("append racing the unlink: %v", err)
			if err := <-moved; err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"d/big", "d2/big"} {
				if _, err := os.Lstat(filepath.Join(u.mnt, p)); !os.IsNotExist(err) {
					t.Errorf("Lstat(%s) after its unlink = %v, want ENOENT", p, err)
				}
			}
		})
	}
}

// TestCopyUpLinksRacesUnlink: a copy-up of one name of a hard-linked lower file
// links the file's other names to the copy; an unlink of such a name between the
// copy-up's look at it and the link (in passthrough mode the copy-up runs in the
// OPEN, without the file's lock) must win: the name stays deleted (it came back
// with OCI whiteouts, and the open failed with EEXIST with overlay ones).
func TestCopyUpLinksRacesUnlink(t *testing.T) {
	for _, f := range []cow.Format{cow.FormatOverlay, cow.FormatOCI} {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			lower := tree(t, map[string]string{"d/f": "linked\n", "d/other": "o\n"})
			if err := os.Link(filepath.Join(lower, "d/f"), filepath.Join(lower, "d/g")); err != nil {
				t.Fatal(err)
			}
			u := mountUnionMode(t, f, true, lower)
			if !u.m.fs.passthrough.Load() {
				t.Skip("no FUSE passthrough here")
			}
			if err := os.WriteFile(filepath.Join(u.mnt, "d/other"), []byte("O\n"), 0o644); err != nil {
				t.Fatal(err) // d in the upper dir: an unlink in it takes no copy-up lock
			}
			// Only d/f is looked up before: the node's path is d/f, so the
			// copy-up is of d/f and links d/g.
			if _, err := os.Lstat(filepath.Join(u.mnt, "d/f")); err != nil {
				t.Fatal(err)
			}
			reached, gate := make(chan struct{}, 1), make(chan struct{})
			hook := func() {
				linkUpHook.Store(nil)
				reached <- struct{}{}
				<-gate
			}
			linkUpHook.Store(&hook)
			t.Cleanup(func() { linkUpHook.Store(nil) })
			opened := make(chan error, 1)
			var fh *os.File
			go func() {
				var err error
				fh, err = os.OpenFile(filepath.Join(u.mnt, "d/f"), os.O_WRONLY|os.O_APPEND, 0)
				opened <- err
			}()
			waitCopyUp(t, reached, "the link of d/g")
			if err := os.Remove(filepath.Join(u.mnt, "d/g")); err != nil {
				close(gate)
				t.Fatal(err)
			}
			close(gate)
			if err := <-opened; err != nil {
				t.Fatalf("open of d/f racing the unlink of its link d/g: %v", err)
			}
			defer fh.Close()
			if _, err := os.Lstat(filepath.Join(u.mnt, "d/g")); !os.IsNotExist(err) {
				t.Errorf("d/g, deleted, is back: %v", err)
			}
			if st, err := os.Lstat(filepath.Join(u.upper, "d/g")); err == nil && st.Mode().IsRegular() {
				t.Error("the copy was linked as d/g in the upper dir")
			}
			if got := readFile(t, filepath.Join(u.mnt, "d/f")); got != "linked\n" {
				t.Errorf("d/f = %q", got)
			}
		})
	}
}

// TestCopyUpLinksThroughSymlinkedLower: containers/storage names its lower layers
// by symlinks (lowerdir=l/ID:...). A link(2) to one name of a hard-linked lower
// file must copy up the other names as links as well, as with a lower named by
// its real path; the walk that finds them did not descend through the symlink, so
// the other name stayed in the layer under the same inode number as the copy:
// the kernel took two files for one, and getxattr/listxattr of each name failed
// with ENOENT (buildah's commit of `RUN ln /hl /hl2` failed there).
func TestCopyUpLinksThroughSymlinkedLower(t *testing.T) {
	layer := tree(t, map[string]string{"hl": "link\n", "d/": ""})
	must(t, os.Link(filepath.Join(layer, "hl"), filepath.Join(layer, "d/hl-lower")))
	link := filepath.Join(t.TempDir(), "l")
	must(t, os.Symlink(layer, link))
	u := mountUnion(t, cow.FormatOverlay, link)
	must(t, os.Link(filepath.Join(u.mnt, "hl"), filepath.Join(u.mnt, "hl2")))
	var a, b unix.Stat_t
	must(t, unix.Lstat(filepath.Join(u.upper, "hl"), &a))
	if err := unix.Lstat(filepath.Join(u.upper, "d/hl-lower"), &b); err != nil || a.Ino != b.Ino {
		t.Errorf("upper d/hl-lower: %v, inode %d; want a link to upper hl (inode %d)", err, b.Ino, a.Ino)
	}
	for _, n := range []string{"hl", "hl2", "d/hl-lower"} {
		p := filepath.Join(u.mnt, n)
		if st := lstat(t, p); st.Nlink != 3 {
			t.Errorf("%s: nlink %d, want 3", n, st.Nlink)
		}
		if _, err := unix.Listxattr(p, nil); err != nil {
			t.Errorf("listxattr %s: %v", n, err)
		}
	}
}

// TestCopyUpLinksAcrossDirs: a write to one name of a lower file linked in
// several dirs links the copy under every name that still shows that file,
// dir by dir: not one deleted through the mount, nor one a higher layer
// shadows; the dirs copied up for the links keep their times.
func TestCopyUpLinksAcrossDirs(t *testing.T) {
	for _, f := range []cow.Format{cow.FormatOverlay, cow.FormatOCI} {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			lower := tree(t, map[string]string{"a/f": "linked\n", "b/": "", "c/": ""})
			for _, n := range []string{"a/g", "b/h", "c/i", "c/j", "c/k"} {
				must(t, os.Link(filepath.Join(lower, "a/f"), filepath.Join(lower, n)))
			}
			old := time.Unix(1_000_000_000, 0)
			for _, d := range []string{"a", "b", "c"} {
				must(t, os.Chtimes(filepath.Join(lower, d), old, old))
			}
			top := tree(t, map[string]string{"c/j": "shadow\n"})
			must(t, os.Chtimes(filepath.Join(top, "c"), old, old))
			u := mountUnion(t, f, top, lower)
			must(t, os.Remove(filepath.Join(u.mnt, "a/g")))
			fh, err := os.OpenFile(filepath.Join(u.mnt, "a/f"), os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = fh.WriteString("more\n")
			must(t, err)
			must(t, fh.Close())
			for _, n := range []string{"a/f", "b/h", "c/i", "c/k"} {
				if got := readFile(t, filepath.Join(u.mnt, n)); got != "linked\nmore\n" {
					t.Errorf("%s = %q, want the write", n, got)
				}
				if st := lstat(t, filepath.Join(u.mnt, n)); st.Nlink != 4 {
					t.Errorf("%s: nlink %d, want 4", n, st.Nlink)
				}
			}
			if got := readFile(t, filepath.Join(u.mnt, "c/j")); got != "shadow\n" {
				t.Errorf("c/j = %q, want the higher layer's", got)
			}
			if _, err := os.Lstat(filepath.Join(u.mnt, "a/g")); !os.IsNotExist(err) {
				t.Errorf("a/g, deleted, is back: %v", err)
			}
			for _, d := range []string{"b", "c"} {
				if st := lstat(t, filepath.Join(u.mnt, d)); st.Mtim.Sec != old.Unix() {
					t.Errorf("%s: mtime %d after the copy-up's links, want %d", d, st.Mtim.Sec, old.Unix())
				}
			}
		})
	}
}

// TestCopyUpLinksPastPathMax: a layer that holds a path longer than PATH_MAX
// (a layer may: CheckLayer takes 16 KiB) failed every copy-up of a hard-linked
// file of it with ENAMETOOLONG, wherever the file was: the index of links
// walked the layer by path names (review rev23-names). A write and a dir
// rename then keep the links, as kernel overlayfs does.
func TestCopyUpLinksPastPathMax(t *testing.T) {
	lower := tree(t, map[string]string{"dir/sub/a": "data\n"})
	must(t, os.Link(filepath.Join(lower, "dir/sub/a"), filepath.Join(lower, "dir/sub/b")))
	must(t, os.Link(filepath.Join(lower, "dir/sub/a"), filepath.Join(lower, "outside")))
	fd, err := unix.Open(lower, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	for i := range 20 { // 20 names of 250 bytes: 5,020 bytes deep
		name := strings.Repeat(string(rune('a'+i)), 250)
		must(t, unix.Mkdirat(fd, name, 0o755))
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		unix.Close(fd)
		fd = nfd
	}
	must(t, unix.Close(fd))
	u := mountUnion(t, cow.FormatOverlay, lower)
	fh, err := os.OpenFile(filepath.Join(u.mnt, "dir/sub/a"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = fh.WriteString("more\n")
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("append to a hard-linked file: %v", err)
	}
	must(t, os.Rename(filepath.Join(u.mnt, "dir"), filepath.Join(u.mnt, "DIR")))
	for _, n := range []string{"DIR/sub/a", "DIR/sub/b", "outside"} {
		if got := readFile(t, filepath.Join(u.mnt, n)); got != "data\nmore\n" {
			t.Errorf("%s = %q, want the write", n, got)
		}
		if st := lstat(t, filepath.Join(u.mnt, n)); st.Nlink != 3 {
			t.Errorf("%s: nlink %d, want 3", n, st.Nlink)
		}
	}
}

// BenchmarkCopyUpManyLinks: the first write to one name of a lower file with
// 2,000 links, half in its own dir and half spread over 10 others (a fresh
// mount each time: the copy-up happens once).
func BenchmarkCopyUpManyLinks(b *testing.B) {
	lower := tree(b, map[string]string{"d/f": "linked\n"})
	for i := 0; i < 2000; i++ {
		dir := "d"
		if i%2 == 1 {
			dir = fmt.Sprintf("e%d", i%10)
		}
		must(b, os.MkdirAll(filepath.Join(lower, dir), 0o755))
		must(b, os.Link(filepath.Join(lower, "d/f"), filepath.Join(lower, dir, fmt.Sprintf("l%04d", i))))
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		u := mountUnion(b, cow.FormatOverlay, lower)
		b.StartTimer()
		fh, err := os.OpenFile(filepath.Join(u.mnt, "d/f"), os.O_WRONLY|os.O_APPEND, 0)
		must(b, err)
		_, err = fh.WriteString("more\n")
		must(b, err)
		must(b, fh.Close())
		b.StopTimer()
		if st, err := os.Lstat(filepath.Join(u.upper, "e1/l0001")); err != nil || st.Sys().(*syscall.Stat_t).Nlink != 2001 {
			b.Fatalf("upper e1/l0001: %v; want a link of the copy", err)
		}
		u.unmount(b)
		b.StartTimer()
	}
}
