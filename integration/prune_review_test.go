package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
)

// TestPruneAndCpReviewFixes: what a review of prune and cp found.
func TestPruneAndCpReviewFixes(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)

	// container prune's label filters see containers' labels. create and
	// prune print IDs, as docker's.
	lab1 := strings.TrimSpace(mustRun(t, "create", "--name", "lab1", "--label", "keep=1", "busybox", "true"))
	lab2 := strings.TrimSpace(mustRun(t, "create", "--name", "lab2", "busybox", "true"))
	out := mustRun(t, "container", "prune", "-f", "--filter", "label!=keep")
	if !strings.Contains(out, "Deleted Containers:\n"+lab2+"\n") || strings.Contains(out, lab1) {
		t.Errorf("container prune --filter label!=keep: %q", out)
	}
	out = mustRun(t, "container", "prune", "-f", "--filter", "label=keep")
	if !strings.Contains(out, lab1) {
		t.Errorf("container prune --filter label=keep: %q", out)
	}

	// An image's label counts after the image is untagged (its blobs stay).
	importRunner(t, "labelled:1", `CMD ["sh"]`, "LABEL keep=1")
	lab3 := strings.TrimSpace(mustRun(t, "create", "--name", "lab3", "labelled:1", "true"))
	mustRun(t, "rmi", "-f", "labelled:1")
	if out := mustRun(t, "container", "prune", "-f", "--filter", "label!=keep"); strings.Contains(out, lab3) {
		t.Errorf("container prune label!=keep removed a container whose untagged image has keep: %q", out)
	}
	mustRun(t, "rm", "lab3")

	// A restart in progress is no stopped container.
	rs := strings.TrimSpace(mustRun(t, "create", "--name", "rs", "busybox", "true"))
	mark := filepath.Join(rootFor(t), "work", "rs", "restarting")
	os.WriteFile(mark, nil, 0o600)
	if out := mustRun(t, "container", "prune", "-f"); strings.Contains(out, rs) {
		t.Errorf("prune removed a container being restarted: %q", out)
	}
	old := time.Now().Add(-time.Hour) // a mark a killed restart left
	os.Chtimes(mark, old, old)
	if out := mustRun(t, "container", "prune", "-f"); !strings.Contains(out, rs) {
		t.Errorf("prune kept a container for a stale restart mark: %q", out)
	}

	// A container whose state cannot be read keeps its image: prunes and gc
	// fail closed.
	mustRun(t, "create", "--name", "broken", "busybox", "true")
	statePath := filepath.Join(rootFor(t), "work", "broken", "state.json")
	good, _ := os.ReadFile(statePath)
	os.WriteFile(statePath, []byte("{trunc"), 0o600)
	run(t, "image", "prune", "-a", "-f")
	if r := run(t, "gc"); r.Code == 0 {
		t.Errorf("gc with an unreadable container state succeeded: %q", r.Stdout)
	}
	if got := mustRun(t, "ps", "-a", "-f", "name=broken", "--format", "{{.Mount}} {{.Status}}"); got != "broken Broken\n" {
		t.Errorf("ps of a container with an unreadable state: %q", got)
	}
	os.WriteFile(statePath, good, 0o600)
	// Its image may have been untagged, but its blobs are kept: it works.
	mustRun(t, "diff", "broken")
	importRunner(t, "busybox", `CMD ["sh"]`) // for what follows: prune took the tag

	// cp - takes a compressed tar; a dest file with a trailing / is no dir.
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "f"), []byte("z\n"), 0o644)
	tgz, err := exec.Command("tar", "-C", src, "-czf", "-", "d").Output()
	if err != nil {
		t.Fatal(err)
	}
	if r := runWith(t, cmdOpts{stdin: strings.NewReader(string(tgz))}, "cp", "-", "broken:/tmp"); r.Code != 0 {
		t.Errorf("cp - of a gzip tar: exit %d, %q", r.Code, r.Stderr)
	}
	mustRun(t, "cp", filepath.Join(src, "d", "f"), "broken:/tmp/file")
	if r := run(t, "cp", filepath.Join(src, "d", "f"), "broken:/tmp/file/"); r.Code == 0 || !strings.Contains(r.Stderr, "no such directory") {
		t.Errorf("cp onto file/: exit %d, %q", r.Code, r.Stderr)
	}
	if got := mustRun(t, "diff", "broken"); !strings.Contains(got, "A /tmp/d/f") {
		t.Errorf("diff after cp - of a gzip tar: %q", got)
	}
	// rm -f removes a container whose state cannot be read.
	mustRun(t, "create", "--name", "broken2", "busybox", "true")
	os.WriteFile(filepath.Join(rootFor(t), "work", "broken2", "state.json"), nil, 0o600)
	if r := run(t, "rm", "broken2"); r.Code == 0 {
		t.Errorf("rm of a broken container without -f succeeded")
	}
	mustRun(t, "rm", "-f", "broken2")
	if _, err := os.Stat(filepath.Join(rootFor(t), "work", "broken2")); err == nil {
		t.Errorf("rm -f left the broken container's dir")
	}

	// A reader that goes away (cp c:/ - | head) is a write error, not a
	// SIGPIPE death, and leaves no mount behind.
	cp := exec.Command(layerfsBin, "--root", rootFor(t), "cp", "broken:/", "-")
	stdout, err := cp.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cp.Stderr = &stderr
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	stdout.Read(buf)
	stdout.Close()
	err = cp.Wait()
	if code := cp.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "broken pipe") {
		t.Errorf("cp to a closed pipe: exit %d (%v), %q; want 1, broken pipe", code, err, stderr.String())
	}
	if got := mustRun(t, "ps", "-a", "-f", "name=broken", "--format", "{{.Mount}}"); got != "unmounted\n" {
		t.Errorf("after cp to a closed pipe: %q", got)
	}
}

// TestCpKilledTakesItsMountDown: the temporary mount of a cp killed with
// SIGKILL goes away with it (its server watches the cp).
func TestCpKilledTakesItsMountDown(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "create", "--name", "kc", "busybox", "true")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "cp", "-", "kc:/tmp")
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	status := func() string { return psStatus(t, "kc") }
	waitFor(t, "cp's temporary mount", func() bool { return status() == "mounted" })
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, "the temporary mount to go with the killed cp", func() bool { return status() == "unmounted" })
	mustRun(t, "rm", "kc")
}

// TestRunKilledTakesItsMountDown: a foreground run killed with SIGKILL takes
// its container's command (the parent-death signal) and its mount (the server
// watches the run) with it; the container stays, unmounted.
func TestRunKilledTakesItsMountDown(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	cmd, _, _ := startRun(t, "kr", "busybox", "sleep", "600")
	status := func() string { return psStatus(t, "kr") }
	if got := status(); got != "mounted" {
		t.Fatalf("kr while it runs: %q", got)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, "the killed run's mount to go", func() bool { return status() == "unmounted" })
	mustRun(t, "rm", "kr")
}

// TestSystemPruneFilter: system prune --filter selects containers and images
// as their own prunes do (CI scripts pass until= and label=).
func TestSystemPruneFilter(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	keep := strings.TrimSpace(mustRun(t, "create", "--name", "keepme", "--label", "keep=1", "busybox", "true"))
	drop := strings.TrimSpace(mustRun(t, "create", "--name", "dropme", "busybox", "true"))
	out := mustRun(t, "system", "prune", "-f", "--filter", "label!=keep")
	if !strings.Contains(out, "Deleted Containers:\n"+drop+"\n") || strings.Contains(out, keep) {
		t.Errorf("system prune --filter label!=keep: %q", out)
	}
	if out := mustRun(t, "system", "prune", "-f", "--filter", "until=24h"); strings.Contains(out, keep) {
		t.Errorf("system prune --filter until=24h removed a container made just now: %q", out)
	}
	if got := mustRun(t, "ps", "-a", "-q"); got != keep[:12]+"\n" {
		t.Errorf("ps after the filtered prunes = %q", got)
	}
	if r := run(t, "system", "prune", "-f", "--filter", "bogus=1"); r.Code == 0 {
		t.Errorf("system prune --filter bogus=1 succeeded")
	}
}

// TestRunKilledWaitsForContainerLock: the mount of a killed run goes only once
// whoever holds the container (a commit pausing its server) lets go.
func TestRunKilledWaitsForContainerLock(t *testing.T) {
	requireRunner(t)
	flock := testenv.RequireTool(t, "flock")
	importRunner(t, "busybox", `CMD ["sh"]`)
	cmd, _, _ := startRun(t, "kl", "busybox", "sleep", "600")
	holder := exec.Command(flock, filepath.Join(rootFor(t), "locks", "work-kl.lock"), "sleep", "3")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	time.Sleep(300 * time.Millisecond) // the lock is held
	cmd.Process.Kill()
	cmd.Wait()
	time.Sleep(1500 * time.Millisecond)
	status := func() string { return psStatus(t, "kl") }
	if got := status(); got != "mounted" {
		t.Errorf("while the container is held, the killed run's mount is %q, want still mounted", got)
	}
	waitFor(t, "the mount to go once the lock is free", func() bool { return status() == "unmounted" })
	if got := mustRun(t, "inspect", "-f", "{{.State.Mount}} {{.GraphDriver.Data.MergedDir}}", "kl"); got != "unmounted <no value>\n" {
		t.Errorf("state after the owner-gone unmount still names a mountpoint: %q", got)
	}
	mustRun(t, "rm", "kl")
}

// psStatus is ps's .Mount of container name (mounted, unmounted ...).
func psStatus(t *testing.T, name string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, "ps", "-a", "-f", "name=^"+name+"$", "--format", "{{.Mount}}"))
}
