package fs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
)

// TestPausePassthroughWriters: in passthrough mode a process writing through a
// file it holds open never reaches the server, so Pause stops it; Resume lets it go
// on. Without the stop, the file keeps growing during the pause.
func TestPausePassthroughWriters(t *testing.T) {
	u := mountUnionMode(t, cow.FormatOCI, true, t.TempDir())
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	log := filepath.Join(u.mnt, "log")
	cmd := exec.Command("sh", "-c", `exec 3>"$1"; while :; do echo record >&3; done`, "sh", log)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	size := upperSize(u, "log")
	waitGrown(t, size, "the writer did not start")
	ctx, cancel := context.WithTimeout(context.Background(), pauseTestTimeout)
	defer cancel()
	must(t, u.m.Pause(ctx))
	before := size()
	time.Sleep(100 * time.Millisecond)
	after := size()
	u.m.Resume()
	if after != before {
		t.Errorf("the file grew from %d to %d bytes during the pause", before, after)
	}
	deadline := time.Now().Add(5 * time.Second)
	for size() == after {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not go on after Resume")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPauseWithRenames: a Pause holds the barrier, and a rename that arrives then
// waits for it holding the rename lock (pathlock.go); requests that only read must
// still go on, among them read-only opens and fsync. In passthrough mode Pause
// also stops the processes that hold files open for writing, and a process cannot
// stop inside a request: one that opened files read-only while another renamed
// made every Pause (and so commit) fail after its timeout, all writes held meanwhile.
func TestPauseWithRenames(t *testing.T) {
	lower := tree(t, map[string]string{"etc/motd": "hi\n", "a/x": "x\n"})
	u := mountUnionMode(t, cow.FormatOCI, true, lower)
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("log"), []byte("0\n"), 0o644))

	// A read-only open and an fsync while a rename waits for the Pause.
	// (Looked up before: a lookup waits for the kernel's lock of the rename's dir.)
	synced, err := os.Open(p("log"))
	must(t, err)
	defer synced.Close()
	lstat(t, p("etc/motd"))
	must(t, u.m.Pause(context.Background()))
	renamed := make(chan error, 1)
	go func() { renamed <- os.Rename(p("a"), p("b")) }()
	time.Sleep(50 * time.Millisecond) // the rename waits for the barrier
	read := make(chan error, 1)
	go func() {
		_, err := os.ReadFile(p("etc/motd"))
		if err == nil {
			err = synced.Sync()
		}
		read <- err
	}()
	select {
	case err := <-read:
		must(t, err)
	case <-time.After(3 * time.Second):
		t.Errorf("a read-only open or fsync waited for the Pause (a rename was waiting)")
	}
	u.m.Resume()
	must(t, <-renamed)
	must(t, os.Rename(p("b"), p("a")))

	// A process holding log open for writing opens a file read-only in a loop
	// (openLoop); another renames a dir back and forth.
	reader := exec.Command(os.Args[0])
	reader.Env = append(os.Environ(), "LAYERFS_TEST_OPEN_LOOP="+p("log"), "LAYERFS_TEST_OPEN_READ="+p("etc/motd"))
	must(t, reader.Start())
	defer func() { reader.Process.Kill(); reader.Wait() }()
	mover := exec.Command("sh", "-c", `while :; do mv "$1/a" "$1/b" && mv "$1/b" "$1/a"; done`, "sh", u.mnt)
	must(t, mover.Start())
	defer func() { mover.Process.Kill(); mover.Wait() }()
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), pauseTestTimeout)
		err := u.m.Pause(ctx)
		cancel()
		if err != nil {
			t.Fatalf("pause %d with a passthrough writer opening files while renames run: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond)
		u.m.Resume()
		time.Sleep(50 * time.Millisecond)
	}
}

// openLoop holds w open for writing and opens r read-only, again and again (a
// child of TestPauseWithRenames; no shell, whose vfork children Pause would stop
// before their parents).
func openLoop(w, r string) int {
	f, err := os.OpenFile(w, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 1
	}
	defer f.Close()
	for {
		if g, err := os.Open(r); err == nil {
			g.Close()
		}
	}
}

// TestPauseShellWriter: a shell holding a passthrough file open for writing runs
// commands that write into the mount (creates, truncating opens) and forks children
// that inherit the writable fd, as a container's shell with its output redirected
// into the mount does. A process inside a FUSE request cannot stop, and a request
// that changes something waits for the barrier: a Pause that took the barrier
// first and then waited for the writers to stop timed out, holding every write
// of the container meanwhile. Pauses must succeed, and hold the writes.
func TestPauseShellWriter(t *testing.T) {
	u := mountUnionMode(t, cow.FormatOCI, true, t.TempDir())
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	script := `exec 3>>"$1/log"; i=0; while :; do i=$((i+1)); echo "$i" >&3; : >"$1/tmp"; echo "$i" >"$1/out"; true | cat >&3; /bin/echo child >&3; done`
	sh := exec.Command("sh", "-c", script, "sh", u.mnt)
	must(t, sh.Start())
	defer func() { _ = sh.Process.Kill(); _ = sh.Wait() }()
	size := upperSize(u, "log")
	waitGrown(t, size, "the shell did not start writing")
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), pauseTestTimeout)
		start := time.Now()
		err := u.m.Pause(ctx, os.Getpid())
		cancel()
		if err != nil {
			t.Fatalf("pause %d with a shell writing into the mount: %v (after %v)", i, err, time.Since(start))
		}
		before := size()
		out := readFile(t, filepath.Join(u.upper, "out"))
		time.Sleep(20 * time.Millisecond)
		after, outAfter := size(), readFile(t, filepath.Join(u.upper, "out"))
		u.m.Resume()
		if after != before || out != outAfter {
			t.Fatalf("pause %d: writes went on: log %d -> %d bytes, out %q -> %q", i, before, after, out, outAfter)
		}
		grown := size()
		deadline := time.Now().Add(5 * time.Second)
		for size() == grown {
			if time.Now().After(deadline) {
				t.Fatalf("the shell did not go on after Resume %d", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestPauseRetry: a writer that opened its file after Pause stopped the writers
// and sits in a request that changes something when the barrier is taken cannot
// stop; Pause must undo, try again and succeed, leaving nothing stopped.
func TestPauseRetry(t *testing.T) {
	u := mountUnionMode(t, cow.FormatOCI, true, t.TempDir())
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	var sh *exec.Cmd
	defer func() {
		if sh != nil && sh.Process != nil {
			_ = sh.Process.Kill()
			_ = sh.Wait()
		}
	}()
	var tries []int
	hook := func(attempt int) {
		tries = append(tries, attempt)
		if attempt > 0 {
			return
		}
		sh = exec.Command("sh", "-c", `exec 3>>"$1/log"; while :; do : >"$1/tmp"; done`, "sh", u.mnt)
		if err := sh.Start(); err != nil {
			t.Error(err)
			return
		}
		fd3 := filepath.Join("/proc", strconv.Itoa(sh.Process.Pid), "fd", "3")
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if l, err := os.Readlink(fd3); err == nil && strings.HasSuffix(l, "/log") {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // truncating tmp again and again
	}
	pauseHook.Store(&hook)
	defer pauseHook.Store(nil)
	ctx, cancel := context.WithTimeout(context.Background(), pauseTestTimeout)
	defer cancel()
	must(t, u.m.Pause(ctx, os.Getpid()))
	if sh == nil || sh.Process == nil {
		u.m.Resume()
		t.Fatal("the writer did not start")
	}
	state, err := procState(sh.Process.Pid)
	u.m.Resume()
	must(t, err)
	if state != 'T' {
		t.Errorf("the writer is in state %c during the pause, want T", state)
	}
	t.Logf("tries: %v", tries)
	pauseHook.Store(nil)
	time.Sleep(20 * time.Millisecond)
	if state := mustState(t, sh.Process.Pid); state == 'T' {
		t.Errorf("the writer was left stopped after Resume")
	}
}

// upperSize returns a function that gives the size of name in u's upper dir (-1:
// not there).
func upperSize(u *union, name string) func() int64 {
	return func() int64 {
		fi, err := os.Stat(filepath.Join(u.upper, name))
		if err != nil {
			return -1
		}
		return fi.Size()
	}
}

// waitGrown waits up to 5 s for size to reach 4 KiB, else fails with msg.
func waitGrown(t *testing.T, size func() int64, msg string) {
	t.Helper()
	// Generous: the writers fork and exec per line, and a loaded CI machine ran
	// them 3x slower than an idle one (4 KiB took over 5 s).
	deadline := time.Now().Add(30 * time.Second)
	for size() < 4096 {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
