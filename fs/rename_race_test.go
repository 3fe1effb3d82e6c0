package fs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// TestRenameRaceNeverShowsLower: while a directory that a lower layer also holds is
// renamed back and forth, a file inside it that was copied up is opened, read,
// stat'ed and appended to. Every moment of each rename must show the entry or its
// whiteout, never the lower layer's file: otherwise a write open goes to the lower
// file (passthrough), or its size lands in the kernel's cache and appends overwrite
// data. Kernel overlayfs shows no such read; neither may layerfs, in both modes, and
// the lower layer must come out unchanged.
func TestRenameRaceNeverShowsLower(t *testing.T) {
	for _, f := range []cow.Format{cow.FormatOverlay, cow.FormatOCI} {
		for _, pt := range []bool{false, true} {
			name := fmt.Sprintf("%s/%s", map[cow.Format]string{cow.FormatOverlay: "overlay", cow.FormatOCI: "oci"}[f],
				map[bool]string{false: "noopen", true: "passthrough"}[pt])
			t.Run(name, func(t *testing.T) { renameRace(t, f, pt) })
		}
	}
}

func renameRace(t *testing.T, f cow.Format, pt bool) {
	top, low := t.TempDir(), tree(t, map[string]string{"shared/sub/y": "y\n"})
	must(t, os.Mkdir(filepath.Join(top, "shared"), 0o755))
	u := mountUnionMode(t, f, pt, top, low)
	sub, sub2, y := filepath.Join(u.mnt, "shared/sub"), filepath.Join(u.mnt, "shared/sub2"), filepath.Join(u.mnt, "shared/sub/y")
	data := bytes.Repeat([]byte("Y"), 100000)
	must(t, os.WriteFile(y, data, 0o644)) // copies it up
	stop := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := map[string]int{}
	note := func(k string) {
		mu.Lock()
		bad[k]++
		mu.Unlock()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			if err := os.Rename(sub, sub2); err != nil {
				note("rename: " + err.Error())
				continue
			}
			if err := os.Rename(sub2, sub); err != nil {
				note("rename back: " + err.Error())
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 8)
		for time.Now().Before(stop) {
			fd, err := unix.Open(y, unix.O_RDONLY, 0)
			if err != nil {
				if !errors.Is(err, unix.ENOENT) { // the name is away between renames
					note("open: " + err.Error())
				}
				continue
			}
			var st unix.Stat_t
			n, err := unix.Read(fd, buf)
			switch {
			case err != nil:
				note("read: " + err.Error())
			case n != 8 || !bytes.Equal(buf, data[:8]):
				note(fmt.Sprintf("read %q", buf[:n]))
			}
			if err := unix.Fstat(fd, &st); err != nil {
				note("fstat: " + err.Error())
			} else if st.Size < int64(len(data)) {
				note("fstat: a lower size")
			}
			unix.Close(fd)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; time.Now().Before(stop); i++ {
			fd, err := unix.Open(y, unix.O_WRONLY|unix.O_APPEND, 0)
			if err != nil {
				if !errors.Is(err, unix.ENOENT) {
					note("open for append: " + err.Error())
				}
				continue
			}
			if _, err := unix.Write(fd, []byte(fmt.Sprintf("%07d\n", i))); err != nil {
				note("append: " + err.Error())
			}
			unix.Close(fd)
		}
	}()
	wg.Wait()
	for k, n := range bad {
		t.Errorf("%d x %s", n, k)
	}
	got, err := os.ReadFile(y)
	must(t, err)
	if len(got) < len(data) || !bytes.Equal(got[:len(data)], data) {
		t.Errorf("the copied-up file's first %d bytes changed", len(data))
	}
	u.unmount(t)
	if b, err := os.ReadFile(filepath.Join(low, "shared/sub/y")); err != nil || string(b) != "y\n" {
		t.Errorf("LOWER LAYER CHANGED: %q, %v", b, err)
	}
}

// TestFirstRenameMergedDirNoGhosts: the first rename of a merged dir whose lower
// files were deleted copies it up whole and clears the whiteouts inside its opaque
// copy. Lookups racing it that went by the dir's old layer list could find a
// deleted lower file; none of those answers may stay in the kernel's cache: after
// the renames, no deleted name stats.
func TestFirstRenameMergedDirNoGhosts(t *testing.T) {
	const dirs, files = 6, 200
	spec := map[string]string{}
	for i := 0; i < dirs; i++ {
		for j := 0; j < files; j++ {
			spec[fmt.Sprintf("d%d/g%d", i, j)] = "lower\n"
		}
	}
	low := tree(t, spec)
	for _, f := range []cow.Format{cow.FormatOverlay, cow.FormatOCI} {
		u := mountUnion(t, f, low)
		for i := 0; i < dirs; i++ {
			for j := 0; j < files; j++ {
				must(t, os.Remove(filepath.Join(u.mnt, fmt.Sprintf("d%d/g%d", i, j))))
			}
		}
		u.remount(t, f) // no cached misses: every lookup asks the server
		for i := 0; i < dirs; i++ {
			d, e := filepath.Join(u.mnt, fmt.Sprintf("d%d", i)), filepath.Join(u.mnt, fmt.Sprintf("e%d", i))
			must(t, unix.Stat(d, new(unix.Stat_t)))
			var wg sync.WaitGroup
			for r := 0; r < 3; r++ {
				wg.Add(1)
				go func(r int) {
					defer wg.Done()
					var st unix.Stat_t
					for j := r; j < files; j += 3 {
						unix.Lstat(filepath.Join(d, fmt.Sprintf("g%d", j)), &st)
					}
				}(r)
			}
			must(t, os.Rename(d, e))
			wg.Wait()
		}
		ghosts := 0
		for i := 0; i < dirs; i++ {
			for j := 0; j < files; j++ {
				if unix.Lstat(filepath.Join(u.mnt, fmt.Sprintf("e%d/g%d", i, j)), new(unix.Stat_t)) == nil {
					ghosts++
				}
			}
		}
		if ghosts > 0 {
			t.Errorf("format %v: %d deleted lower files still stat after the renames", f, ghosts)
		}
		u.unmount(t)
	}
}

// TestRenameRaceFdCreates: a process works in a directory through an fd (a cwd, an
// openat dirfd) while other processes rename that directory, or swap it with
// another one (RENAME_EXCHANGE). On a local filesystem every create and unlink goes
// to the directory the fd refers to, wherever it is now, and never fails for lack
// of its name. A request that resolved the directory's path just before a move must
// not act on the old path: its file would land in the other directory, or fail.
func TestRenameRaceFdCreates(t *testing.T) {
	for _, exchange := range []bool{true, false} {
		for _, pt := range []bool{false, true} {
			name := fmt.Sprintf("%s/%s", map[bool]string{true: "exchange", false: "rename"}[exchange],
				map[bool]string{false: "noopen", true: "passthrough"}[pt])
			t.Run(name, func(t *testing.T) { renameRaceFdCreates(t, exchange, pt) })
		}
	}
}

func renameRaceFdCreates(t *testing.T, exchange, pt bool) {
	low := tree(t, map[string]string{"a/la": "a\n", "b/lb": "b\n"})
	u := mountUnionMode(t, cow.FormatOverlay, pt, low)
	stop := time.Now().Add(1200 * time.Millisecond)
	var mu sync.Mutex
	bad := map[string]int{}
	note := func(k string) {
		mu.Lock()
		bad[k]++
		mu.Unlock()
	}
	dirFd := func(name string) int {
		fd, err := unix.Open(filepath.Join(u.mnt, name), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		must(t, err)
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	fds := map[string]int{"a": dirFd("a"), "b": dirFd("b")}
	want := map[string]map[string]bool{"a": {"la": true}, "b": {"lb": true}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			var err error
			if exchange {
				err = unix.Renameat2(unix.AT_FDCWD, filepath.Join(u.mnt, "a"), unix.AT_FDCWD, filepath.Join(u.mnt, "b"), unix.RENAME_EXCHANGE)
			} else if err = os.Rename(filepath.Join(u.mnt, "a"), filepath.Join(u.mnt, "c")); err == nil {
				err = os.Rename(filepath.Join(u.mnt, "c"), filepath.Join(u.mnt, "a"))
			}
			if err != nil {
				note("rename: " + err.Error())
			}
		}
	}()
	for d, fd := range fds {
		wg.Add(1)
		go func(d string, fd int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				name := fmt.Sprintf("%s%d", d, i)
				f, err := unix.Openat(fd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
				if err != nil {
					note("create: " + err.Error())
					continue
				}
				unix.Close(f)
				want[d][name] = true
				if i%2 == 1 {
					prev := fmt.Sprintf("%s%d", d, i-1)
					if err := unix.Unlinkat(fd, prev, 0); err != nil {
						note("unlink: " + err.Error())
						continue
					}
					delete(want[d], prev)
				}
			}
		}(d, fd)
	}
	wg.Wait()
	for k, n := range bad {
		t.Errorf("%d x %s", n, k)
	}
	for d, fd := range fds {
		dup, err := unix.Dup(fd)
		must(t, err)
		f := os.NewFile(uintptr(dup), d)
		names, err := f.Readdirnames(-1)
		f.Close()
		must(t, err)
		got := map[string]bool{}
		for _, n := range names {
			got[n] = true
			if !want[d][n] {
				t.Errorf("dir %s holds %s, which was not made there or was removed", d, n)
			}
		}
		for n := range want[d] {
			if !got[n] {
				t.Errorf("dir %s lacks %s", d, n)
			}
		}
	}
}

// TestRenameCopyUpLeavesWritesGoing: a rename is exclusive against requests that
// change something (pathlock.go), and the first rename of a directory of a lower
// layer copies it up whole, data and all. Other writes must not wait for that
// copy: an append to an unrelated file of the upper dir used to take as long as
// the mv of a big lower dir (17 s for 1 GiB here; 12 ms before the rename lock).
func TestRenameCopyUpLeavesWritesGoing(t *testing.T) {
	lower := tree(t, map[string]string{"big/": "", "etc/motd": "hi\n"})
	for i := 0; i < 20; i++ {
		d := filepath.Join(lower, fmt.Sprintf("big/d%d", i))
		must(t, os.Mkdir(d, 0o755))
		for j := 0; j < 500; j++ {
			must(t, os.WriteFile(filepath.Join(d, fmt.Sprint(j)), []byte("x\n"), 0o644))
		}
	}
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("log"), []byte("0\n"), 0o644))
	unix.Sync()
	mv := exec.Command("mv", p("big"), p("big2"))
	t0 := time.Now()
	must(t, mv.Start())
	moved := make(chan time.Duration, 1)
	go func() { mv.Wait(); moved <- time.Since(t0) }()
	time.Sleep(50 * time.Millisecond)
	t1 := time.Now()
	out, err := exec.Command("sh", "-c", `echo 1 >> "$1"`, "sh", p("log")).CombinedOutput()
	appended := time.Since(t1)
	if err != nil {
		t.Fatalf("append: %v: %s", err, out)
	}
	took := <-moved
	if _, err := os.Stat(p("big2/d0/0")); err != nil {
		t.Fatalf("after mv: %v", err)
	}
	if took < time.Second {
		t.Skipf("the mv took %v: too fast to tell", took)
	}
	t.Logf("append %v, mv %v", appended, took)
	if appended > took/2 {
		t.Errorf("an append to another file took %v during a mv (copy-up) of %v", appended, took)
	}
}
