package fs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestPassthroughBackingHazard: a read-only open of a lower file that stays open
// across the file's copy-up must never become the backing file of a write.
func TestPassthroughBackingHazard(t *testing.T) {
	big := "lower content" + strings.Repeat("x", ptMinSize)
	lower := tree(t, map[string]string{"big": big, "small": "lower content"})
	u := mountUnionMode(t, cow.FormatOCI, true, lower)
	t.Logf("passthrough active: %v", u.m.fs.passthrough.Load())
	for _, name := range []string{"big", "small"} {
		p := filepath.Join(u.mnt, name)
		ro, err := os.Open(p)
		must(t, err)
		b := make([]byte, 5)
		_, err = ro.ReadAt(b, 0)
		must(t, err)
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if errors.Is(err, syscall.ETXTBSY) && name == "big" && u.m.fs.passthrough.Load() {
			// Refused while the lower passthrough open lives; fine once it is closed.
			ro.Close()
			w, err = os.OpenFile(p, os.O_WRONLY, 0)
		} else {
			defer ro.Close()
		}
		if err != nil {
			t.Fatalf("%s: open for write: %v", name, err)
		}
		if _, err := w.WriteAt([]byte("UPPER"), 0); err != nil {
			t.Fatalf("%s: write after copy-up: %v", name, err)
		}
		must(t, w.Close())
		got := readFile(t, p)
		if !strings.HasPrefix(got, "UPPER content") {
			t.Errorf("%s: new open reads %.20q, want the upper copy", name, got)
		}
		if got, _ := os.ReadFile(filepath.Join(lower, name)); !strings.HasPrefix(string(got), "lower content") {
			t.Errorf("%s: lower changed to %.20q", name, got)
		}
		if got, _ := os.ReadFile(filepath.Join(u.upper, name)); !strings.HasPrefix(string(got), "UPPER content") {
			t.Errorf("%s: upper = %.20q", name, got)
		}
	}
	// Copy-up by chmod while a big lower file is open: later opens must not use
	// the lower backing file either.
	must(t, os.WriteFile(filepath.Join(lower, "big2"), []byte(big), 0o644))
	p := filepath.Join(u.mnt, "big2")
	ro, err := os.Open(p)
	must(t, err)
	must(t, os.Chmod(p, 0o666))
	if w, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
		_, err = w.WriteAt([]byte("UPPER"), 0)
		w.Close()
		if err != nil {
			t.Errorf("write to big2: %v", err)
		}
	} else if !errors.Is(err, syscall.ETXTBSY) {
		t.Errorf("open big2 for write: %v, want success or ETXTBSY", err)
	}
	ro.Close()
	if got, _ := os.ReadFile(filepath.Join(lower, "big2")); !strings.HasPrefix(string(got), "lower content") {
		t.Errorf("big2: lower changed to %.20q", got)
	}
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	_, err = w.WriteAt([]byte("UPPER"), 0)
	must(t, err)
	must(t, w.Close())
	if got := readFile(t, p); !strings.HasPrefix(got, "UPPER content") {
		t.Errorf("big2 reads %.20q after the lower open closed", got)
	}
}

// TestPassthroughReopenAfterClose: a file read and then written through two opens
// served by this process, both closed, opens again at once (now passed through)
// without EIO. The RELEASE of the last served handle could race that OPEN and close
// its fresh backing file (noOpendirFS.Release); before the fix about one reopen in a
// hundred failed.
func TestPassthroughReopenAfterClose(t *testing.T) {
	spec := map[string]string{}
	const n = 300
	for i := 0; i < n; i++ {
		spec[fmt.Sprintf("d/g%d", i)] = "old content"
	}
	u := mountUnionMode(t, cow.FormatOverlay, true, tree(t, spec))
	if !u.m.fs.passthrough.Load() {
		t.Skip("no FUSE passthrough here")
	}
	fails := 0
	for i := 0; i < n; i++ {
		name := filepath.Join(u.mnt, fmt.Sprintf("d/g%d", i))
		r, err := os.Open(name)
		must(t, err)
		b := make([]byte, 64)
		r.ReadAt(b, 0)
		w, err := os.OpenFile(name, os.O_RDWR, 0)
		must(t, err)
		_, err = w.WriteAt([]byte("NEW"), 0)
		must(t, err)
		w.Close()
		r.Close()
		r2, err := os.Open(name)
		if err != nil {
			if fails++; fails <= 3 {
				t.Errorf("reopen of d/g%d: %v", i, err)
			}
			continue
		}
		r2.Close()
	}
	if fails > 0 {
		t.Errorf("%d of %d reopens failed", fails, n)
	}
}

// TestOlderReadOpenSeesCopyUpWrites: a read-only open of a layer's file, made
// before another open copied the file up and wrote it, reads the new data (as
// through overlayfs), in both data modes, also when the parent dir was renamed
// between the opens.
func TestOlderReadOpenSeesCopyUpWrites(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			u := mountUnionMode(t, cow.FormatOverlay, pt, tree(t, map[string]string{"f": "old content", "d/g": "old content"}))
			p := func(s string) string { return filepath.Join(u.mnt, s) }
			check := func(r *os.File, want string) {
				t.Helper()
				b := make([]byte, 64)
				n, _ := r.ReadAt(b, 0)
				if string(b[:n]) != want {
					t.Errorf("read through the older open: %q, want %q", b[:n], want)
				}
			}
			r, err := os.Open(p("f"))
			must(t, err)
			defer r.Close()
			check(r, "old content")
			w, err := os.OpenFile(p("f"), os.O_RDWR, 0)
			must(t, err)
			_, err = w.WriteAt([]byte("NEW"), 0)
			must(t, err)
			check(r, "NEW content")
			w.Close()

			r2, err := os.Open(p("d/g"))
			must(t, err)
			defer r2.Close()
			check(r2, "old content")
			must(t, os.Rename(p("d"), p("d2")))
			w2, err := os.OpenFile(p("d2/g"), os.O_RDWR, 0)
			must(t, err)
			_, err = w2.WriteAt([]byte("XYZ"), 0)
			must(t, err)
			check(r2, "XYZ content")
			w2.Close()
		})
	}
}

// TestTruncOpenCopiesNoData: an open with O_TRUNC of a layer's file copies it up
// without its data, in both modes, so it works on an upper filesystem without the
// room for the data (as on kernel overlayfs); so does truncate(2) to 0.
func TestTruncOpenCopiesNoData(t *testing.T) {
	testenv.RequireRoot(t)
	lower := t.TempDir()
	for _, name := range []string{"a", "b"} {
		f, err := os.Create(filepath.Join(lower, name))
		must(t, err)
		_, err = f.Write(bytes.Repeat([]byte{'x'}, 6<<20))
		must(t, err)
		must(t, f.Close())
	}
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
			// The upper and work dirs on a filesystem with 4 MiB of room.
			small := t.TempDir()
			must(t, unix.Mount("tmpfs", small, "tmpfs", 0, "size=4m"))
			t.Cleanup(func() { _ = unix.Unmount(small, unix.MNT_DETACH) })
			d := filepath.Join(small, "u")
			u := &union{mnt: filepath.Join(t.TempDir(), "mnt"), upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"), lowers: []string{lower}, passthrough: pt}
			for _, p := range []string{u.mnt, u.upper, u.work} {
				must(t, os.MkdirAll(p, 0o755))
			}
			m, err := Mount(u.mnt, Options{Lowers: u.lowers, Upper: u.upper, Work: u.work, Format: cow.FormatOverlay, FsName: "layerfs-test", Passthrough: pt})
			must(t, err)
			u.m = m
			t.Cleanup(func() { u.unmount(t) })

			f, err := os.OpenFile(filepath.Join(u.mnt, "a"), os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatalf("open O_TRUNC of a 6 MiB layer file, 4 MiB free: %v", err)
			}
			_, err = f.WriteString("new\n")
			must(t, err)
			must(t, f.Close())
			must(t, os.Truncate(filepath.Join(u.mnt, "b"), 0))
			for name, want := range map[string]string{"a": "new\n", "b": ""} {
				if b, err := os.ReadFile(filepath.Join(u.mnt, name)); err != nil || string(b) != want {
					t.Errorf("%s: %q, %v; want %q", name, b, err, want)
				}
				if b, err := os.ReadFile(filepath.Join(u.upper, name)); err != nil || string(b) != want {
					t.Errorf("upper %s: %q, %v; want %q", name, b, err, want)
				}
			}
		})
	}
}

// TestTruncOpenRefusedKeepsData: an open with O_TRUNC that passthrough mode
// refuses (ETXTBSY: a passthrough open of the file's layer copy is alive after
// its copy-up) leaves the data alone: with ATOMIC_O_TRUNC the truncation comes
// with the OPEN, and it emptied the file before the refusal (found by a review).
func TestTruncOpenRefusedKeepsData(t *testing.T) {
	lower := t.TempDir()
	must(t, os.WriteFile(filepath.Join(lower, "big"), bytes.Repeat([]byte{'x'}, 2<<20), 0o644))
	u := mountUnionMode(t, cow.FormatOverlay, true, lower)
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	p := filepath.Join(u.mnt, "big")
	r, err := os.Open(p) // passed through to the layer's file
	must(t, err)
	defer r.Close()
	must(t, os.Chmod(p, 0o600)) // copy-up: r's backing file is no longer the node's
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		f.Close()
		t.Skip("the open was not refused: nothing to check")
	}
	if st, err := os.Stat(filepath.Join(u.upper, "big")); err != nil || st.Size() != 2<<20 {
		t.Errorf("a refused open(O_TRUNC) left the file at %d bytes (%v), want %d", st.Size(), err, 2<<20)
	}
}

// TestDirectIOAfterSetfl: O_DIRECT opens in both modes. dd clears O_DIRECT with
// F_SETFL for its short last block, which never reaches this process's fd (the
// passthrough backing file): it must not be O_DIRECT itself, or that write and
// an O_DIRECT read of a small lower file (a READ clamped at EOF) fail EINVAL.
func TestDirectIOAfterSetfl(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			small := "small lower file\n"
			big := strings.Repeat("b", ptMinSize+4096)
			u := mountUnionMode(t, cow.FormatOverlay, pt, tree(t, map[string]string{"small": small, "big": big}))
			// O_DIRECT wants aligned memory: an anonymous mapping is page aligned.
			buf, err := unix.Mmap(-1, 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
			must(t, err)
			defer unix.Munmap(buf)
			for _, name := range []string{"small", "big"} {
				fd, err := unix.Open(filepath.Join(u.mnt, name), unix.O_RDONLY|unix.O_DIRECT, 0)
				must(t, err)
				var got []byte
				for {
					n, err := unix.Read(fd, buf[:4096])
					if err != nil {
						t.Fatalf("O_DIRECT read of lower %s after %d bytes: %v", name, len(got), err)
					}
					if n == 0 {
						break
					}
					got = append(got, buf[:n]...)
				}
				unix.Close(fd)
				if want := map[string]string{"small": small, "big": big}[name]; string(got) != want {
					t.Errorf("O_DIRECT read of lower %s: %d bytes, want %d", name, len(got), len(want))
				}
			}
			for _, name := range []string{"new", "small", "big"} {
				p := filepath.Join(u.mnt, name)
				fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_DIRECT, 0o644)
				must(t, err)
				for i := range buf[:4096] {
					buf[i] = 'a'
				}
				_, err = unix.Write(fd, buf[:4096])
				must(t, err)
				flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
				must(t, err)
				_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_DIRECT)
				must(t, err)
				if _, err := unix.Write(fd, buf[:1000]); err != nil {
					t.Errorf("write of 1000 bytes to %s after F_SETFL cleared O_DIRECT: %v", name, err)
				}
				unix.Close(fd)
				if st, err := os.Stat(p); err != nil || st.Size() != 5096 {
					t.Errorf("%s after the writes: %v, %v; want 5096 bytes", name, st.Size(), err)
				}
			}
			// An O_DIRECT open beside other opens of the file: one made before
			// it (which the kernel passes through, and then wants every open of
			// the file passed through) and one made after it; both see its write.
			p := filepath.Join(u.mnt, "new")
			before, err := os.Open(p)
			must(t, err)
			defer before.Close()
			fd, err := unix.Open(p, unix.O_WRONLY|unix.O_DIRECT, 0)
			must(t, err)
			after, err := os.Open(p)
			must(t, err)
			defer after.Close()
			for i := range buf[:4096] {
				buf[i] = 'z'
			}
			_, err = unix.Pwrite(fd, buf[:4096], 0)
			must(t, err)
			unix.Close(fd)
			for _, r := range []*os.File{before, after} {
				got := make([]byte, 3)
				_, err = r.ReadAt(got, 4093)
				must(t, err)
				if string(got) != "zzz" {
					t.Errorf("a live open of new read %q after an O_DIRECT write of zzz", got)
				}
			}
			// And the other order: an O_DIRECT open first (served), then one
			// the kernel may pass through.
			fd, err = unix.Open(filepath.Join(u.mnt, "small"), unix.O_RDWR|unix.O_DIRECT, 0)
			must(t, err)
			defer unix.Close(fd)
			r, err := os.OpenFile(filepath.Join(u.mnt, "small"), os.O_RDWR, 0)
			must(t, err)
			defer r.Close()
			_, err = unix.Pwrite(fd, buf[:4096], 4096)
			must(t, err)
			got := make([]byte, 3)
			_, err = r.ReadAt(got, 4096)
			must(t, err)
			if string(got) != "zzz" {
				t.Errorf("an open made after an O_DIRECT one read %q after its write of zzz", got)
			}
		})
	}
}
