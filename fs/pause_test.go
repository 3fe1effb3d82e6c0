package fs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// bigWriteSize is one write(2) of bigWrites: past max_write, so the kernel
// sends it as several WRITE requests.
const bigWriteSize = 4 << 20

// bigWrites writes p whole again and again, each time one pwrite of a single
// byte value, the next value each time (a child of TestPauseHoldsWholeWrites).
// pauseTestTimeout bounds a Pause that must succeed. Not a speed limit: on a
// loaded CI machine (the integration tests beside these), one pause's look
// for writers through /proc alone took over a second, and 2 s failed.
const pauseTestTimeout = 30 * time.Second

func bigWrites(p string) int {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	buf := make([]byte, bigWriteSize)
	for k := byte(1); ; k = k%250 + 1 {
		for i := range buf {
			buf[i] = k
		}
		if _, err := f.WriteAt(buf, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
}

// mmapHold stores into a shared writable mapping of p, says so on stdout and
// waits, the mapping still there (a child of TestPauseWritesBackMappedPages).
func mmapHold(p string) int {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := f.Truncate(4096); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f.Close() // the mapping alone: no fd for a freezer to find
	copy(mem, "MMAPWRITTEN")
	fmt.Println("written")
	time.Sleep(time.Hour)
	return 0
}

// TestPauseHoldsWholeWrites: a Pause falls between write(2) calls, never inside
// one. The kernel splits a write past max_write into several WRITE requests, and
// the write barrier alone holds requests, not system calls: a commit stored a
// file half of one 4 MiB pwrite, half of the next (found by a review). Pause
// now stops the writers, which stop only at the end of a system call.
func TestPauseHoldsWholeWrites(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "no-open", true: "passthrough"}[pt], func(t *testing.T) {
			u := mountUnionMode(t, cow.FormatOCI, pt, t.TempDir())
			w := exec.Command(os.Args[0])
			w.Env = append(os.Environ(), "LAYERFS_TEST_BIG_WRITES="+filepath.Join(u.mnt, "torn"))
			w.Stderr = os.Stderr
			must(t, w.Start())
			t.Cleanup(func() { w.Process.Kill(); w.Wait() })
			size := upperSize(u, "torn")
			deadline := time.Now().Add(10 * time.Second)
			for size() < bigWriteSize {
				if time.Now().After(deadline) {
					t.Fatal("the writer did not write")
				}
				time.Sleep(5 * time.Millisecond)
			}
			for i := 0; i < 10; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), pauseTestTimeout)
				err := u.m.Pause(ctx, os.Getpid())
				cancel()
				if err != nil {
					t.Fatalf("pause %d: %v", i, err)
				}
				b, err := os.ReadFile(filepath.Join(u.upper, "torn"))
				u.m.Resume()
				must(t, err)
				if len(b) != bigWriteSize || bytes.Count(b, b[:1]) != len(b) {
					t.Fatalf("pause %d: the file holds %d bytes, %d of them %d: a write was cut in two", i, len(b), bytes.Count(b, b[:1]), b[0])
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestPauseWritesBackMappedPages: what a process stored into a shared writable
// mapping is in the upper dir once Pause returns. In the no-open mode such stores
// wait in the kernel's page cache until writeback (about 30 s), and a commit
// left them out (found by a review); Pause now writes the mount's dirty pages
// back first.
func TestPauseWritesBackMappedPages(t *testing.T) {
	u := mountUnion(t, cow.FormatOCI, t.TempDir())
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), "LAYERFS_TEST_MMAP_HOLD="+filepath.Join(u.mnt, "mapped"))
	c.Stderr = os.Stderr
	out, err := c.StdoutPipe()
	must(t, err)
	must(t, c.Start())
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "written\n" {
		t.Fatalf("the mapping child: %q, %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pauseTestTimeout)
	defer cancel()
	must(t, u.m.Pause(ctx, os.Getpid()))
	b, err := os.ReadFile(filepath.Join(u.upper, "mapped"))
	u.m.Resume()
	must(t, err)
	if !bytes.HasPrefix(b, []byte("MMAPWRITTEN")) {
		t.Errorf("the upper file after Pause starts %q, want the mapped store", b[:16])
	}
}
