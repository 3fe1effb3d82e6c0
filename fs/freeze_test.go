package fs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// freezeWait bounds every wait in the freeze tests: long, as a bound, not a
// measure (2 s failed 6 runs in 10 at a load of 11 on 2 CPUs: the /proc scan
// and the stops took 2.1-2.9 s).
const freezeWait = 15 * time.Second

// freezeFile creates an empty file in a temp dir and returns its path, device and
// inode number.
func freezeFile(t *testing.T) (p string, dev, ino uint64) {
	t.Helper()
	p = filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return p, uint64(st.Dev), uint64(st.Ino)
}

// startShell runs sh -c script as a child that is killed and waited for in Cleanup,
// and returns its PID.
func startShell(t *testing.T, script string) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", script, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // works on a stopped process too
		_ = cmd.Wait()         // killed: the exit error is expected
	})
	return cmd.Process.Pid
}

// startWriter starts a process appending to p without end and waits until p grows.
func startWriter(t *testing.T, p string) int {
	t.Helper()
	pid := startShell(t, "exec 3>>"+p+"; while :; do echo x >&3; done")
	waitGrow(t, p)
	return pid
}

// startReader starts a process holding p open read-only, and waits until it has.
func startReader(t *testing.T, p string) int {
	t.Helper()
	pid := startShell(t, "exec 3<"+p+"; exec sleep 100")
	waitFor(t, "reader to exec sleep", func() bool {
		comm, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
		return err == nil && string(comm) == "sleep\n"
	})
	return pid
}

// waitFor polls cond every millisecond and fails t if it is not true within freezeWait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(freezeWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fileSize returns the size of p.
func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// waitGrow waits until p grows beyond its current size.
func waitGrow(t *testing.T, p string) {
	t.Helper()
	size := fileSize(t, p)
	waitFor(t, p+" to grow", func() bool { return fileSize(t, p) > size })
}

// requireSameSize fails t if p changes size over 50ms.
func requireSameSize(t *testing.T, p string) {
	t.Helper()
	size := fileSize(t, p)
	time.Sleep(50 * time.Millisecond)
	if got := fileSize(t, p); got != size {
		t.Errorf("size of %s went from %d to %d while its writer was stopped", p, size, got)
	}
}

// mustState returns the state letter of pid.
func mustState(t *testing.T, pid int) byte {
	t.Helper()
	s, err := procState(pid)
	if err != nil {
		t.Fatalf("procState(%d): %v", pid, err)
	}
	return s
}

// stopFor runs stopWriters on ino of dev under a freezeWait timeout; it fails t on
// error and calls cont in Cleanup.
func stopFor(t *testing.T, dev, ino uint64, skip map[int]bool) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), freezeWait)
	defer cancel()
	cont, err := stopWriters(ctx, dev, map[uint64]bool{ino: true}, skip)
	if err != nil {
		t.Fatalf("stopWriters(dev %d, ino %d) = %v", dev, ino, err)
	}
	t.Cleanup(cont)
	return cont
}

func TestFreezeStopsWriter(t *testing.T) {
	p, dev, ino := freezeFile(t)
	pid := startWriter(t, p)
	cont := stopFor(t, dev, ino, nil)
	if got := mustState(t, pid); got != 'T' {
		t.Fatalf("state of writer %d after stopWriters = %c, want T", pid, got)
	}
	requireSameSize(t, p)
	cont()
	waitGrow(t, p)
}

func TestFreezeSparesReadersAndOtherFiles(t *testing.T) {
	p, dev, ino := freezeFile(t)
	other, _, _ := freezeFile(t)
	reader := startReader(t, p)
	otherWriter := startWriter(t, other)
	writer := startWriter(t, p)
	cont := stopFor(t, dev, ino, nil)
	defer cont()
	if got := mustState(t, writer); got != 'T' {
		t.Errorf("state of writer %d after stopWriters = %c, want T", writer, got)
	}
	if got := mustState(t, reader); got != 'S' {
		t.Errorf("state of reader %d after stopWriters = %c, want S", reader, got)
	}
	if got := mustState(t, otherWriter); got == 'T' {
		t.Errorf("writer %d of another file was stopped", otherWriter)
	}
	waitGrow(t, other)
}

func TestFreezeLeavesStoppedProcessStopped(t *testing.T) {
	p, dev, ino := freezeFile(t)
	pid := startWriter(t, p)
	if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
		t.Fatalf("kill(%d, SIGSTOP): %v", pid, err)
	}
	waitFor(t, "writer to stop", func() bool { return mustState(t, pid) == 'T' })
	cont := stopFor(t, dev, ino, nil)
	cont()
	time.Sleep(10 * time.Millisecond) // a SIGCONT would have been delivered by now
	if got := mustState(t, pid); got != 'T' {
		t.Fatalf("state of writer %d stopped before stopWriters, after cont = %c, want T", pid, got)
	}
	requireSameSize(t, p)
}

func TestFreezeSkip(t *testing.T) {
	p, dev, ino := freezeFile(t)
	pid := startWriter(t, p)
	cont := stopFor(t, dev, ino, map[int]bool{pid: true})
	defer cont()
	if got := mustState(t, pid); got == 'T' {
		t.Fatalf("writer %d in skip was stopped", pid)
	}
	waitGrow(t, p)
}

func TestFreezeCancelled(t *testing.T) {
	p, dev, ino := freezeFile(t)
	pid := startWriter(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cont, err := stopWriters(ctx, dev, map[uint64]bool{ino: true}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopWriters(cancelled ctx) = %v, want context.Canceled", err)
	}
	cont() // never nil
	if got := mustState(t, pid); got == 'T' {
		t.Fatalf("writer %d stopped by a cancelled stopWriters", pid)
	}
	waitGrow(t, p)
}

// TestFreezeTimeoutContinues: a writer blocked in a FUSE WRITE held at the barrier of
// a paused mount cannot stop (it waits in 'D' until the write is answered), so
// stopWriters ends with ctx and must leave it running once the mount resumes.
func TestFreezeTimeoutContinues(t *testing.T) {
	u := mountUnion(t, cow.FormatOCI, tree(t, map[string]string{}))
	p := filepath.Join(u.mnt, "f")
	must(t, os.WriteFile(p, nil, 0o644))
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	backing := filepath.Join(u.upper, "f")
	pid := startShell(t, "exec 3>>"+p+"; while :; do echo x >&3; done")
	waitGrow(t, backing)

	// Pause itself stops writers: this one is left to block at its barrier.
	must(t, u.m.Pause(context.Background(), pid))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			u.m.Resume()
		}
	}
	defer resume()
	write := strconv.Itoa(unix.SYS_WRITE) + " "
	waitFor(t, "writer to block in write", func() bool {
		sc, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "syscall"))
		return err == nil && strings.HasPrefix(string(sc), write) && mustState(t, pid) == 'S'
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := stopWriters(ctx, uint64(st.Dev), map[uint64]bool{st.Ino: true}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stopWriters(writer blocked at the barrier) = %v, want context.DeadlineExceeded", err)
	}
	resume()
	waitGrow(t, backing) // the write that was held; a pending SIGSTOP would follow it
	time.Sleep(10 * time.Millisecond)
	waitGrow(t, backing)
	if got := mustState(t, pid); got == 'T' {
		t.Fatalf("writer %d left stopped after stopWriters timed out", pid)
	}
}

func TestFreezeNoInodes(t *testing.T) {
	p, dev, _ := freezeFile(t)
	pid := startWriter(t, p)
	cont, err := stopWriters(context.Background(), dev, nil, nil)
	if err != nil {
		t.Fatalf("stopWriters(no inodes) = %v, want nil", err)
	}
	cont()
	if got := mustState(t, pid); got == 'T' {
		t.Fatalf("writer %d stopped by stopWriters with no inodes", pid)
	}
}

func TestFreezeReadState(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, stat string
		want       byte
		wantErr    bool
	}{
		{"plain", "42 (sh) S 1 42 42 0", 'S', false},
		{"comm with spaces and parens", "42 (a) b) (c ) T 1 42", 'T', false},
		{"no paren", "42 sh S 1", 0, true},
		{"truncated", "42 (sh)", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "stat")
			if err := os.WriteFile(p, []byte(tc.stat), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readState(p)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("readState(%q) = %q, %v, want %q (error %v)", tc.stat, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// vforkStop is a C program: it opens argv[1] for appending and vforks a child
// that prints its PID and stops itself before it would exec; the parent, which
// the kernel holds in vfork(2) until the child goes on, then appends forever.
const vforkStop = `#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
	int fd = open(argv[1], O_WRONLY | O_APPEND);
	if (fd < 0)
		return 1;
	if (vfork() == 0) {
		char buf[32];
		int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
		write(1, buf, n);
		kill(getpid(), SIGSTOP);
		_exit(0);
	}
	for (;;)
		write(fd, "x\n", 2);
}
`

// TestFreezeVforkParent: a shell runs commands in vfork(2) children, which hold
// its writable fds; the kernel holds the parent until the child execs or exits,
// and SIGSTOP does not stop it there. With the child stopped, the parent cannot
// stop, nor write: stopWriters must count it as stopped rather than time out.
func TestFreezeVforkParent(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "vfork-stop")
	must(t, os.WriteFile(bin+".c", []byte(vforkStop), 0o644))
	if out, err := exec.Command(cc, "-o", bin, bin+".c").CombinedOutput(); err != nil {
		t.Skipf("cc: %v: %s", err, out)
	}
	p, dev, ino := freezeFile(t)
	cmd := exec.Command(bin, p)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	var child int
	t.Cleanup(func() {
		if child > 0 {
			_ = unix.Kill(child, unix.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var line [32]byte
	n, _ := stdout.Read(line[:])
	child, err = strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("child PID %q: %v", line[:n], err)
	}
	waitFor(t, "vfork child to stop", func() bool { return mustState(t, child) == 'T' })
	cont := stopFor(t, dev, ino, nil)
	if got := mustState(t, child); got != 'T' {
		t.Errorf("vfork child %d in state %c, want T", child, got)
	}
	cont()
	// The child stopped itself: it is not the freezer's to continue.
	if got := mustState(t, child); got != 'T' {
		t.Errorf("vfork child %d continued by the freezer that did not stop it", child)
	}
	// Let the child exit: the parent goes on, not left stopped.
	must(t, unix.Kill(child, unix.SIGCONT))
	waitGrow(t, p)
}
