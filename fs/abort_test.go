package fs

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
)

// TestAbortDyingServer: a server killed while one of its own threads waits on
// a request to its own mount cannot end (the kernel waits for the answer; the
// dying process keeps /dev/fuse open), and its mount hangs every access: a
// review found it after kills of servers that list their own directories
// (refresh.go) and in go-fuse's start. AbortConnection (what umount does for
// such a server) fails the request, and the process ends.
func TestAbortDyingServer(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t) // fusectl
	d := t.TempDir()
	cmd, dev, exited := killSelfWaiting(t, d, "")
	select {
	case <-exited:
		t.Skip("the killed server ended by itself: nothing waited on its own mount")
	case <-time.After(time.Second):
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if strings.Contains(string(b), "State:\tZ") || strings.Contains(string(b), "State:\tD") {
			break // its main thread gone, or the one waiting
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed server is not hung: %s", b)
		}
	}
	must(t, AbortConnection(dev))
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the killed server did not end after its connection was aborted")
	}
}

// TestKilledServerRefilling: a server killed while its refresher (refresh.go)
// waits on a request to the server's own mount ends by itself, and its mount
// then fails accesses (ENOTCONN) rather than hang them: the refresher's thread
// has a file table without /dev/fuse (ownFiles), so the other threads' exit
// ends the connection. (Before, it hung as in TestAbortDyingServer until a
// umount aborted the connection.)
func TestKilledServerRefilling(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t) // open_tree for the refresher, fusectl for the cleanup
	d := t.TempDir()
	_, dev, exited := killSelfWaiting(t, d, "refill")
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		AbortConnection(dev)
		<-exited
		t.Fatal("the killed server did not end by itself: its refresher's request kept it")
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(d, "mnt", "sub"), &st); err != unix.ENOTCONN {
		t.Errorf("stat in the dead mount: %v, want ENOTCONN", err)
	}
}

// killSelfWaiting starts a selfWait child serving a mount under d (how: "", or
// "refill" for a request from its refresher's thread), kills it (SIGKILL) once
// the request waits, and returns it, its mount's st_dev and a channel closed
// when it has ended.
func killSelfWaiting(t *testing.T, d, how string) (*exec.Cmd, uint64, chan struct{}) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LAYERFS_TEST_SELF_WAIT="+d, "LAYERFS_TEST_SELF_WAIT_HOW="+how)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	mnt := filepath.Join(d, "mnt")
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	var dev uint64
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, serr := fmt.Sscanf(line, "waiting %d", &dev); err != nil || serr != nil {
		cmd.Process.Kill()
		t.Fatalf("the serving child: %q, %v", line, err)
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	return cmd, dev, exited
}

// selfWait mounts a union under d, holds its write barrier, creates a file
// through it from one of its own goroutines (which waits on the barrier, in a
// request the server has read), reports the mount's st_dev, and waits to be
// killed. With how "refill", the refresher's thread creates the file, from a
// refill of the mount's root.
func selfWait(d, how string) int {
	for _, s := range []string{"lower", "lower/sub", "upper", "work", "mnt"} {
		if err := os.Mkdir(filepath.Join(d, s), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	m, err := Mount(filepath.Join(d, "mnt"), Options{Lowers: []string{filepath.Join(d, "lower")},
		Upper: filepath.Join(d, "upper"), Work: filepath.Join(d, "work"), Format: cow.FormatOCI})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	m.fs.barrier.Lock()
	f := filepath.Join(d, "mnt", "f")
	if how == "refill" {
		m.fs.relist.mu.Lock()
		refill := m.fs.relist.refill
		m.fs.relist.mu.Unlock()
		if refill == nil {
			fmt.Fprintln(os.Stderr, "no refresher on the mount")
			return 1
		}
		hook := func() {
			refillHook.Store(nil)
			unix.Open(f, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		}
		refillHook.Store(&hook)
		refill([]*node{m.fs.root})
	} else {
		go os.WriteFile(f, []byte("x"), 0o644)
	}
	time.Sleep(300 * time.Millisecond) // the CREATE is read and waits on the barrier
	fmt.Printf("waiting %d\n", m.dev)
	select {}
}
