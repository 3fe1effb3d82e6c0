package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWaitFollowsTheContainer: wait waits for the container it found, as
// docker's follows an ID. Once that one is removed and its name given to
// another, wait does not report the other's exit.
func TestWaitFollowsTheContainer(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "wf") })

	mustRun(t, "create", "--name", "wf", "busybox", "sh", "-c", "exit 3")
	var stdout, stderr bytes.Buffer
	w := exec.Command(layerfsBin, "--root", rootFor(t), "wait", "wf")
	w.Stdout, w.Stderr = &stdout, &stderr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // waiting for a start, now
	// Stopped while the name changes hands, so it cannot see the gap.
	if err := w.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "rm", "wf")
	mustRun(t, "create", "--name", "wf", "busybox", "sh", "-c", "exit 5")
	if got := run(t, "start", "-a", "wf"); got.Code != 5 {
		t.Fatalf("start -a wf: exit %d, %q; want 5", got.Code, got.Stderr)
	}
	w.Process.Signal(syscall.SIGCONT)
	err := w.Wait()
	if err == nil || strings.Contains(stdout.String(), "5") {
		t.Errorf("wait on a container removed and made again under its name: %v, %q %q; want an error, not the other's exit", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "removed") && !strings.Contains(stderr.String(), "No such container") {
		t.Errorf("wait's error = %q, want the container gone", stderr.String())
	}
}

// TestWaitDuringRun: a wait that finds a container run is still making (its
// state is there, its run config not yet) waits for its exit instead of
// refusing it as a mount's.
func TestWaitDuringRun(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "wd") })

	r := exec.Command(layerfsBin, "--root", rootFor(t), "run", "--name", "wd", "busybox", "sh", "-c", "sleep 0.5; exit 4")
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Wait()
	state := filepath.Join(rootFor(t), "work", "wd", "state.json")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(state); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("run made no container in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	if got := run(t, "wait", "wd"); got.Code != 0 || got.Stdout != "4\n" {
		t.Errorf("wait on a container run is making: exit %d, %q %q; want 4", got.Code, got.Stdout, got.Stderr)
	}
}

// TestStartUnfinishedContainer: start of a container a killed create left
// unfinished says so, and leaves it for rm or a new create; it said "no such
// container" (after ps had listed it) and removed it, or "not made by run".
func TestStartUnfinishedContainer(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "unf") })
	mustRun(t, "create", "--name", "unf", "busybox", "true")
	// As a create killed before its first mount leaves it.
	state := filepath.Join(rootFor(t), "work", "unf", "state.json")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	st["incomplete"] = true
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "start", "-a", "unf")
	if r.Code == 0 || !strings.Contains(r.Stderr, "container unf is unfinished") {
		t.Errorf("start of an unfinished container: exit %d, %q", r.Code, r.Stderr)
	}
	if got := mustRun(t, "ps", "-a", "--format", "{{.Names}}", "-f", "name=^unf$"); got != "unf\n" {
		t.Errorf("after start: ps = %q, want unf still there", got)
	}
	mustRun(t, "create", "--name", "unf", "busybox", "true") // taken over
	if r := run(t, "start", "-a", "unf"); r.Code != 0 {
		t.Errorf("start after a new create: exit %d, %q", r.Code, r.Stderr)
	}
}
