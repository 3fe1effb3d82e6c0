package integration

// Fixes from the rev16 container review (stop/restart signals, exec's
// HOSTNAME, commit's merge of the container's config, killed runs, cp and
// volumes of stopped containers): docker's behaviour is the target.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitLogs waits until name's logs hold want (the container may not be
// there yet).
func waitLogs(t *testing.T, name, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r := run(t, "logs", name); !strings.Contains(r.Stdout, want); r = run(t, "logs", name) {
		if time.Now().After(deadline) {
			t.Fatalf("logs %s never showed %q: %q", name, want, mustRun(t, "logs", name))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStopSignalFlags: stop and restart take docker's -s/--signal and
// -t/--timeout (--time, the older name, still works); logs --tail -1 is all,
// as docker's daemon takes a negative number.
func TestStopSignalFlags(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "ss", "st") })
	// pid 1 ends with 42 on SIGUSR1 and ignores SIGTERM.
	script := `trap "exit 42" USR1; trap "" TERM; echo ready; while :; do sleep 0.1; done`
	mustRun(t, "run", "-d", "--name", "ss", "busybox", "sh", "-c", script)
	waitLogs(t, "ss", "ready")
	if r := run(t, "stop", "-s", "USR1", "ss"); r.Code != 0 || r.Stdout != "ss\n" {
		t.Fatalf("stop -s USR1: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ss"); got != "exited 42\n" {
		t.Errorf("after stop -s USR1: %q, want exited 42 (the trap ran)", got)
	}
	// restart -s: the same signal for its stop
	mustRun(t, "restart", "ss")
	waitLogs(t, "ss", "ready\nready")
	start := time.Now()
	if r := run(t, "restart", "--signal", "SIGUSR1", "-t", "20", "ss"); r.Code != 0 {
		t.Fatalf("restart --signal SIGUSR1: exit %d, %q", r.Code, r.Stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("restart --signal SIGUSR1 took %v: the signal was not sent", d)
	}
	waitLogs(t, "ss", "ready\nready\nready")
	// --timeout: SIGTERM is ignored, so SIGKILL after 1 s (137)
	start = time.Now()
	if r := run(t, "stop", "--timeout", "1", "ss"); r.Code != 0 {
		t.Fatalf("stop --timeout 1: exit %d, %q", r.Code, r.Stderr)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("stop --timeout 1 took %v", d)
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.ExitCode}}", "ss"); got != "137\n" {
		t.Errorf("exit code after stop --timeout 1 = %q, want 137", got)
	}
	if r := run(t, "stop", "-s", "NOSUCH", "ss"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid signal") {
		t.Errorf("stop -s NOSUCH: exit %d, %q", r.Code, r.Stderr)
	}
	// --time, the older name
	mustRun(t, "start", "ss")
	waitLogs(t, "ss", "ready\nready\nready\nready")
	if r := run(t, "stop", "--time", "0", "ss"); r.Code != 0 {
		t.Errorf("stop --time 0: exit %d, %q", r.Code, r.Stderr)
	}

	mustRun(t, "run", "--name", "st", "busybox", "sh", "-c", "echo 1; echo 2; echo 3")
	for _, n := range []string{"-1", "-5"} {
		if r := run(t, "logs", "--tail", n, "st"); r.Code != 0 || r.Stdout != "1\n2\n3\n" {
			t.Errorf("logs --tail %s: exit %d, %q %q", n, r.Code, r.Stdout, r.Stderr)
		}
	}
	if got := mustRun(t, "logs", "-n", "1", "st"); got != "3\n" {
		t.Errorf("logs -n 1 = %q", got)
	}
}

// TestExecHostname: exec's process has HOSTNAME as run's has (docker's exec
// environment: the daemon's PATH and HOSTNAME, the container's env, -e), also
// for a container whose run.json does not record it (an older version's).
func TestExecHostname(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "eh", "eh2") })
	mustRun(t, "run", "-d", "--name", "eh", "-h", "myhost", "busybox", "sleep", "300")
	envOf := func(args ...string) string {
		t.Helper()
		// env, not the shell's $HOSTNAME (busybox sh sets it itself)
		out := mustRun(t, append(append([]string{"exec"}, args...), "env")...)
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "HOSTNAME="); ok {
				return v
			}
		}
		return ""
	}
	if got := envOf("eh"); got != "myhost" {
		t.Errorf("exec: HOSTNAME=%q, want myhost", got)
	}
	if got := envOf("-e", "HOSTNAME=other", "eh"); got != "other" {
		t.Errorf("exec -e HOSTNAME=other: HOSTNAME=%q", got)
	}
	id := mustRun(t, "run", "-d", "--name", "eh2", "busybox", "sleep", "300")
	if got := envOf("eh2"); got != id[:12] {
		t.Errorf("exec without -h: HOSTNAME=%q, want the ID's first 12 digits %q", got, id[:12])
	}
	// run.json of an older version: no hostname in it
	editJSON(t, "eh", "run.json", func(m map[string]any) { delete(m["config"].(map[string]any), "hostname") })
	if got := envOf("eh"); got != "myhost" {
		t.Errorf("exec with an older run.json: HOSTNAME=%q, want myhost", got)
	}
}

// editJSON rewrites the JSON object in name's work/<name>/<file> with edit:
// how a file an older version wrote looks.
func editJSON(t *testing.T, name, file string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(rootFor(t), "work", name, file)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestInspectOldEntrypoint: a run-config.json from before entrypointSet
// (e66fbc5) with an entrypoint shows it as Config.Entrypoint, as commit and
// start already take it.
func TestInspectOldEntrypoint(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "--name", "e", "--entrypoint", "/bin/sh", "busybox", "-c", "true")
	const f = `{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Path}} {{json .Args}}`
	want := mustRun(t, "inspect", "-f", f, "e")
	if want != `["/bin/sh"] ["-c","true"] /bin/sh ["-c","true"]`+"\n" {
		t.Fatalf("inspect e = %q", want)
	}
	editJSON(t, "e", "run-config.json", func(m map[string]any) { delete(m, "entrypointSet") })
	if got := mustRun(t, "inspect", "-f", f, "e"); got != want {
		t.Errorf("inspect of a run-config.json without entrypointSet = %q, want %q", got, want)
	}
}

// TestCommitMergesContainerConfig: commit's image config has the container's
// run --label (over the image's), anonymous -v volumes (beside the image's
// VOLUMEs) and --stop-signal, as moby's commit merges the container's Config;
// a bind mount is no VOLUME of the image, and -c still wins.
func TestCommitMergesContainerConfig(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`, `LABEL keep=img over=img`, `VOLUME /imgvol`)
	host := t.TempDir()
	mustRun(t, "run", "--name", "cm", "-l", "lab=v", "--label", "over=run", "-v", "/anon", "-v", host+":/bound",
		"--stop-signal", "SIGUSR1", "busybox", "true")
	const f = `{{json .Config.Labels}} {{json .Config.Volumes}} {{json .Config.StopSignal}}`
	want := `{"keep":"img","lab":"v","over":"run"} {"/anon":{},"/imgvol":{}} "SIGUSR1"` + "\n"
	if got := mustRun(t, "container", "inspect", "-f", f, "cm"); got != want {
		t.Errorf("inspect cm = %q, want %q", got, want)
	}
	mustRun(t, "commit", "cm", "img:cm")
	if got := mustRun(t, "image", "inspect", "-f", f, "img:cm"); got != want {
		t.Errorf("inspect of the commit = %q, want %q", got, want)
	}
	mustRun(t, "commit", "-c", "STOPSIGNAL SIGHUP", "-c", "LABEL lab=c", "cm", "img:cm2")
	want2 := `{"keep":"img","lab":"c","over":"run"} {"/anon":{},"/imgvol":{}} "SIGHUP"` + "\n"
	if got := mustRun(t, "image", "inspect", "-f", f, "img:cm2"); got != want2 {
		t.Errorf("inspect of a commit with -c = %q, want %q", got, want2)
	}
	// a container without any of them: the image's config as it was
	mustRun(t, "run", "--name", "plain", "busybox", "true")
	mustRun(t, "commit", "plain", "img:plain")
	if got, want := mustRun(t, "image", "inspect", "-f", f, "img:plain"), `{"keep":"img","over":"img"} {"/imgvol":{}} ""`+"\n"; got != want {
		t.Errorf("inspect of a plain commit = %q, want %q", got, want)
	}
}

// TestKilledRunState: a run killed with SIGKILL (its command dies with it)
// is exited with 137 and State.Error saying so, not a clean exited 0: ps
// --filter exited=0 leaves it out, wait prints 137; the same when run -d's
// monitor is killed, also with a run.json of a version that did not name the
// monitor; run --rm's container goes at the next ps. A container that ran
// before exits were kept (no exit.json) has no code (-1), which no exited=N
// filter takes.
func TestKilledRunState(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "fg", "bg", "bgold", "bgrm", "old", "ok") })
	mustRun(t, "run", "--name", "ok", "busybox", "true")
	psNames := func(filter string) string {
		t.Helper()
		return mustRun(t, "ps", "-a", "--filter", filter, "--format", "{{.Names}}")
	}
	const state = `{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}`
	check := func(name string) {
		t.Helper()
		if got, want := mustRun(t, "inspect", "-f", state, name), "exited 137 the run was killed before it recorded its exit status: its command was killed with it (SIGKILL)\n"; got != want {
			t.Errorf("inspect %s = %q, want %q", name, got, want)
		}
		if got := mustRun(t, "inspect", "-f", "{{.State.StartedAt}}", name); strings.HasPrefix(got, "0001-") {
			t.Errorf("inspect %s: StartedAt %q, want run.json's", name, got)
		}
		started := mustRun(t, "inspect", "-f", "{{.State.StartedAt}}", name)
		if got := mustRun(t, "inspect", "-f", "{{.State.FinishedAt}}", name); strings.HasPrefix(got, "0001-") || got < started {
			t.Errorf("inspect %s: FinishedAt %q, want when the kill was seen (after %q)", name, got, started)
		}
	}

	// A foreground run, killed.
	fg := exec.Command(layerfsBin, "--root", rootFor(t), "run", "--name", "fg", "busybox", "sh", "-c", "echo start; sleep 60")
	if err := fg.Start(); err != nil {
		t.Fatal(err)
	}
	waitLogs(t, "fg", "start")
	fg.Process.Kill()
	fg.Wait()
	// The command went with it; the mount goes once its server sees that.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(mustRun(t, "ps", "--format", "{{.Names}}"), "fg") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := psNames("exited=0"); got != "ok\n" {
		t.Errorf("ps --filter exited=0 = %q, want ok alone", got)
	}
	if got := psNames("exited=137"); got != "fg\n" {
		t.Errorf("ps --filter exited=137 = %q, want fg", got)
	}
	check("fg")
	if r := run(t, "wait", "fg"); r.Code != 0 || r.Stdout != "137\n" {
		t.Errorf("wait fg: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}

	// run -d's monitor, killed (by its pid, which run.json names).
	killMonitor := func(name string, oldRunJSON bool) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(rootFor(t), "work", name, "run.json"))
		if err != nil {
			t.Fatal(err)
		}
		var rs struct{ Monitor int }
		if err := json.Unmarshal(b, &rs); err != nil || rs.Monitor <= 0 {
			t.Fatalf("run.json of %s names no monitor: %s", name, b)
		}
		if oldRunJSON {
			editJSON(t, name, "run.json", func(m map[string]any) { delete(m, "monitor"); delete(m, "monitorStart") })
		}
		if err := syscall.Kill(rs.Monitor, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Contains(mustRun(t, "ps", "--format", "{{.Names}}"), name) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, c := range []struct {
		name string
		old  bool
	}{{"bg", false}, {"bgold", true}} {
		mustRun(t, "run", "-d", "--name", c.name, "busybox", "sleep", "60")
		killMonitor(c.name, c.old)
		check(c.name)
		if got := psNames("exited=0"); got != "ok\n" {
			t.Errorf("ps --filter exited=0 after %s = %q", c.name, got)
		}
	}

	// run --rm: removed by the next command that sees it.
	mustRun(t, "run", "-d", "--rm", "--name", "bgrm", "busybox", "sleep", "60")
	killMonitor("bgrm", false)
	if got := mustRun(t, "ps", "-a", "--format", "{{.Names}}"); strings.Contains(got, "bgrm") {
		t.Errorf("ps -a after run --rm's monitor was killed = %q, want bgrm removed", got)
	}
	if r := run(t, "inspect", "bgrm"); r.Code == 0 {
		t.Errorf("inspect bgrm found it")
	}

	// Ran before exits were kept (e66fbc5, 339c05e): no exit.json.
	run(t, "run", "--name", "old", "busybox", "sh", "-c", "exit 3")
	if err := os.Remove(filepath.Join(rootFor(t), "work", "old", "exit.json")); err != nil {
		t.Fatal(err)
	}
	if got, want := mustRun(t, "inspect", "-f", state, "old"), "exited -1 no exit status recorded: the container ran before layerfs kept them\n"; got != want {
		t.Errorf("inspect old = %q, want %q", got, want)
	}
	for _, f := range []string{"exited=0", "exited=3"} {
		if got := psNames(f); strings.Contains(got, "old") {
			t.Errorf("ps --filter %s = %q, want old left out", f, got)
		}
	}
	if got := psNames("status=exited"); !strings.Contains(got, "old") {
		t.Errorf("ps --filter status=exited = %q, want old in it", got)
	}
}

// TestCpStoppedContainerVolumes: cp to and from a container that does not
// run sees its volumes, as docker's (moby mounts a stopped container's
// volumes for every archive call): a copy into a -v bind, an anonymous -v or
// an image VOLUME lands there, not in the container's changes (diff, commit);
// a :ro volume refuses it with docker's words, running or not; what is only
// in a volume copies out, also inside a copy of a dir above it. No mount is
// left on the host.
func TestCpStoppedContainerVolumes(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`, `VOLUME /imgvol`)
	t.Cleanup(func() { run(t, "rm", "-f", "cv", "cro") })
	dir := t.TempDir()
	vol, rovol := filepath.Join(dir, "vol"), filepath.Join(dir, "rovol")
	for _, d := range []string{vol, rovol} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(vol, "fromhost"), []byte("hostside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file1 := filepath.Join(dir, "file1")
	if err := os.WriteFile(file1, []byte("file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mountsBefore := strings.Count(readMounts(t), rootFor(t))
	mustRun(t, "run", "--name", "cv", "-v", vol+":/vol", "-v", "/anon", "-v", rovol+":/ro:ro", "busybox",
		"sh", "-c", "echo inanon > /anon/a; echo inimg > /imgvol/i")
	diff0 := mustRun(t, "diff", "cv")

	for _, dst := range []string{"cv:/vol/", "cv:/anon/", "cv:/imgvol/"} {
		if r := run(t, "cp", file1, dst); r.Code != 0 {
			t.Errorf("cp file1 %s: exit %d, %q", dst, r.Code, r.Stderr)
		}
	}
	if b, err := os.ReadFile(filepath.Join(vol, "file1")); err != nil || string(b) != "file\n" {
		t.Errorf("file1 in the -v bind's host dir: %q, %v", b, err)
	}
	if got := mustRun(t, "diff", "cv"); got != diff0 {
		t.Errorf("diff after cp into volumes = %q, want it unchanged: %q", got, diff0)
	}
	// what is only in a volume copies out, file by file and inside a dir above
	for src, want := range map[string]string{"/vol/fromhost": "hostside\n", "/anon/a": "inanon\n", "/anon/file1": "file\n", "/imgvol/i": "inimg\n"} {
		r := run(t, "cp", "cv:"+src, filepath.Join(dir, "out"))
		b, err := os.ReadFile(filepath.Join(dir, "out"))
		if r.Code != 0 || err != nil || string(b) != want {
			t.Errorf("cp cv:%s out: exit %d, %q; got %q, %v", src, r.Code, r.Stderr, b, err)
		}
		os.Remove(filepath.Join(dir, "out"))
	}
	if r := run(t, "cp", "cv:/", filepath.Join(dir, "all")); r.Code != 0 {
		t.Errorf("cp cv:/: exit %d, %q", r.Code, r.Stderr)
	} else if b, err := os.ReadFile(filepath.Join(dir, "all", "vol", "fromhost")); err != nil || string(b) != "hostside\n" {
		t.Errorf("cp cv:/: vol/fromhost %q, %v", b, err)
	}
	// :ro refuses, stopped and running
	if r := run(t, "cp", file1, "cv:/ro/"); r.Code == 0 || r.Stderr != "Error: mounted volume is marked read-only\n" {
		t.Errorf("cp into a :ro volume of a stopped container: exit %d, %q", r.Code, r.Stderr)
	}
	if ents, _ := os.ReadDir(rovol); len(ents) != 0 {
		t.Errorf("the :ro volume's dir has %v", ents)
	}
	mustRun(t, "run", "-d", "--name", "cro", "-v", rovol+":/ro:ro", "busybox", "sleep", "60")
	if r := run(t, "cp", file1, "cro:/ro/x"); r.Code == 0 || r.Stderr != "Error: mounted volume is marked read-only\n" {
		t.Errorf("cp into a :ro volume of a running container: exit %d, %q", r.Code, r.Stderr)
	}
	mustRun(t, "rm", "-f", "cro")
	// commit leaves the volumes out (the image's VOLUME and -v /anon stay
	// volumes of the new image)
	mustRun(t, "commit", "cv", "img:cv")
	if got := mustRun(t, "run", "--rm", "img:cv", "sh", "-c", "ls /vol /anon /imgvol 2>&1; true"); strings.Contains(got, "file1") {
		t.Errorf("the commit has the copied files: %q", got)
	}
	if n := strings.Count(readMounts(t), rootFor(t)); n != mountsBefore {
		t.Errorf("%d mounts of the test's root left on the host, want %d:\n%s", n, mountsBefore, readMounts(t))
	}
}

// runMonitor is the pid of name's run (run -d's monitor, or the foreground
// run) that its run.json names.
func runMonitor(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rootFor(t), "work", name, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rs struct{ Monitor int }
	if err := json.Unmarshal(b, &rs); err != nil || rs.Monitor <= 0 {
		t.Fatalf("run.json of %s names no monitor: %s", name, b)
	}
	return rs.Monitor
}

// waitServerGone waits until no mount server of name holds its server.lock
// (without a layerfs command, which would settle a lost run itself).
func waitServerGone(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.OpenFile(filepath.Join(rootFor(t), "work", name, "server.lock"), os.O_RDWR, 0)
		if err != nil {
			return
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		f.Close()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mount server of %s is still up 10 s after its run was killed", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKilledRmRun: a run --rm killed with its monitor (SIGKILL) is what a
// --rm run that ended is in docker: wait prints 137 (two waits at once too),
// and its name is free for the next run --rm --name, create --name and
// rename, with no ps in between; rename of it finds no such container.
func TestKilledRmRun(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "kw", "rr", "other") })

	// wait, twice at once, on run -d --rm whose monitor is killed.
	mustRun(t, "run", "-d", "--rm", "--name", "kw", "busybox", "sleep", "60")
	type out struct {
		stdout string
		err    error
	}
	outs := make(chan out, 2)
	for i := 0; i < 2; i++ {
		go func() {
			cmd := exec.Command(layerfsBin, "--root", rootFor(t), "wait", "kw")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			b, err := cmd.Output()
			if err != nil {
				err = fmt.Errorf("%w: %s", err, stderr.String())
			}
			outs <- out{string(b), err}
		}()
	}
	time.Sleep(500 * time.Millisecond) // both waits are in their loops
	if err := syscall.Kill(runMonitor(t, "kw"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case o := <-outs:
			if o.err != nil || o.stdout != "137\n" {
				t.Errorf("wait kw: %q, %v; want 137, exit 0", o.stdout, o.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("wait kw did not return")
		}
	}
	if r := run(t, "inspect", "kw"); r.Code == 0 {
		t.Errorf("inspect kw found it after wait: --rm did not remove it")
	}

	// A foreground run --rm, killed: the next command that wants its name
	// gets it (each kill leaves a lost run --rm named rr).
	killRr := func() {
		t.Helper()
		fg := exec.Command(layerfsBin, "--root", rootFor(t), "run", "--rm", "--name", "rr", "busybox", "sh", "-c", "echo start; sleep 60")
		if err := fg.Start(); err != nil {
			t.Fatal(err)
		}
		waitLogs(t, "rr", "start")
		fg.Process.Kill()
		fg.Wait()
		waitServerGone(t, "rr")
	}
	killRr()
	if r := run(t, "run", "--rm", "--name", "rr", "busybox", "echo", "second"); r.Code != 0 || r.Stdout != "second\n" {
		t.Errorf("run --rm --name rr after a killed one: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	killRr()
	if r := run(t, "create", "--name", "rr", "busybox", "true"); r.Code != 0 {
		t.Errorf("create --name rr after a killed run --rm: exit %d, %q", r.Code, r.Stderr)
	}
	mustRun(t, "rm", "rr")
	killRr()
	mustRun(t, "create", "--name", "other", "busybox", "true")
	if r := run(t, "rename", "other", "rr"); r.Code != 0 {
		t.Errorf("rename other rr after a killed run --rm: exit %d, %q", r.Code, r.Stderr)
	}
	// ... and is no container to rename.
	mustRun(t, "rm", "rr")
	killRr()
	if r := run(t, "rename", "rr", "other"); r.Code == 0 || !strings.Contains(r.Stderr, "No such container") {
		t.Errorf("rename of a killed run --rm: exit %d, %q; want No such container", r.Code, r.Stderr)
	}
	// A wait settling the killed run --rm at the very moment the retried run
	// wants its name: the run waits for it instead of a Conflict (a code
	// review saw one in 4 of 6 tries).
	for i := 0; i < 3; i++ {
		killRr()
		w := exec.Command(layerfsBin, "--root", rootFor(t), "wait", "rr")
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		r := run(t, "run", "--rm", "--name", "rr", "busybox", "echo", "retried")
		w.Wait()
		if r.Code != 0 || r.Stdout != "retried\n" {
			t.Errorf("try %d: run --rm --name rr while a wait settles the killed one: exit %d, %q %q", i, r.Code, r.Stdout, r.Stderr)
		}
	}
}

// TestStopNoTimeout: stop -t -1 and restart -t -1 wait for the container to
// exit with no limit, as docker's docs say (no SIGKILL after the container's
// --stop-timeout or 10 s); a negative -t is not "the container's own".
func TestStopNoTimeout(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "nt") })
	// pid 1 ignores SIGTERM and ends with 42 on SIGUSR1; its own stop
	// timeout is 1 s, so a stop that took that would kill it at once.
	script := `trap "exit 42" USR1; trap "" TERM; echo ready; while :; do sleep 0.1; done`
	mustRun(t, "run", "-d", "--stop-timeout", "1", "--name", "nt", "busybox", "sh", "-c", script)
	waitLogs(t, "nt", "ready")
	for i, verb := range []string{"stop", "restart"} {
		stopWaitsForExit(t, "nt", 4*time.Second, verb, "-t", "-1", "nt")
		if verb == "stop" {
			if got := mustRun(t, "inspect", "-f", "{{.State.ExitCode}}", "nt"); got != "42\n" {
				t.Errorf("exit code after stop -t -1 = %q, want 42 (no SIGKILL)", got)
			}
			mustRun(t, "start", "nt")
		}
		waitLogs(t, "nt", strings.Repeat("ready\n", i+2))
	}
}

// TestCpReadOnlyRootfs: cp into a run --read-only container outside its
// volumes is refused with docker's words, stopped or running, and nothing
// lands in its changes; into its volume it still copies.
func TestCpReadOnlyRootfs(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "rs", "rr") })
	dir := t.TempDir()
	vol, file1 := filepath.Join(dir, "vol"), filepath.Join(dir, "file1")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file1, []byte("file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "run", "--name", "rs", "--read-only", "-v", vol+":/v", "busybox", "true")
	mustRun(t, "run", "-d", "--name", "rr", "--read-only", "-v", vol+":/v", "busybox", "sleep", "60")
	for _, name := range []string{"rs", "rr"} {
		for _, dst := range []string{":/", ":/tmp/x"} {
			if r := run(t, "cp", file1, name+dst); r.Code == 0 || r.Stderr != "Error: container rootfs is marked read-only\n" {
				t.Errorf("cp file1 %s%s: exit %d, %q; want docker's refusal", name, dst, r.Code, r.Stderr)
			}
		}
	}
	if got := mustRun(t, "diff", "rs"); strings.Contains(got, "file1") || strings.Contains(got, "/tmp/x") {
		t.Errorf("diff rs after the refused copies = %q", got)
	}
	if r := run(t, "cp", file1, "rs:/v/"); r.Code != 0 {
		t.Errorf("cp file1 rs:/v/ (its volume): exit %d, %q", r.Code, r.Stderr)
	} else if b, err := os.ReadFile(filepath.Join(vol, "file1")); err != nil || string(b) != "file\n" {
		t.Errorf("file1 in the volume: %q, %v", b, err)
	}
}

// TestCpVolumeSymlinks: cp's read-only-volume check is of the destination
// with its symlinks followed in the container, as docker's: a link in a :ro
// volume to a dir outside it is written through, and one in a rw volume to
// the :ro volume is refused with docker's words (not the kernel's).
func TestCpVolumeSymlinks(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "cs") })
	dir := t.TempDir()
	vol, rovol, file1 := filepath.Join(dir, "vol"), filepath.Join(dir, "rovol"), filepath.Join(dir, "file1")
	for _, d := range []string{vol, rovol} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(file1, []byte("file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/tmp", filepath.Join(rovol, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/ro", filepath.Join(vol, "esc")); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "run", "--name", "cs", "-v", rovol+":/ro:ro", "-v", vol+":/v", "busybox", "true")
	for dst, at := range map[string]string{"/ro/out/": "/tmp/file1", "/ro/out/new": "/tmp/new"} {
		if r := run(t, "cp", file1, "cs:"+dst); r.Code != 0 {
			t.Errorf("cp file1 cs:%s (a link out of the :ro volume): exit %d, %q", dst, r.Code, r.Stderr)
		} else if got := mustRun(t, "cp", "cs:"+at, "-"); !strings.Contains(got, "file\n") {
			t.Errorf("cp file1 cs:%s: %s is not the file", dst, at)
		}
	}
	for _, dst := range []string{"/v/esc/", "/v/esc/new"} {
		if r := run(t, "cp", file1, "cs:"+dst); r.Code == 0 || r.Stderr != "Error: mounted volume is marked read-only\n" {
			t.Errorf("cp file1 cs:%s (a link into the :ro volume): exit %d, %q", dst, r.Code, r.Stderr)
		}
	}
	if ents, _ := os.ReadDir(rovol); len(ents) != 1 {
		t.Errorf("the :ro volume's dir has %v", ents)
	}
}

// TestCpCreatedContainerVolumes: cp into a container created and never
// started finds its anonymous -v and image VOLUMEs, as docker's (it makes
// them at create): the copy lands in the volume, next to what the image has
// there, and the first run sees both; not in the container's changes.
func TestCpCreatedContainerVolumes(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`, `VOLUME /etc`)
	t.Cleanup(func() { run(t, "rm", "-f", "cc") })
	file1 := filepath.Join(t.TempDir(), "file1")
	if err := os.WriteFile(file1, []byte("file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "create", "--name", "cc", "-v", "/anon", "busybox", "sh", "-c", "cat /anon/file1 /etc/file1; ls /etc")
	for _, dst := range []string{"cc:/anon/", "cc:/etc/file1"} {
		if r := run(t, "cp", file1, dst); r.Code != 0 {
			t.Errorf("cp file1 %s: exit %d, %q", dst, r.Code, r.Stderr)
		}
	}
	if got := mustRun(t, "diff", "cc"); strings.Contains(got, "file1") {
		t.Errorf("diff cc = %q: the copies are in the container's changes", got)
	}
	mustRun(t, "start", "-a", "cc")
	got := mustRun(t, "logs", "cc")
	if !strings.HasPrefix(got, "file\nfile\n") || !strings.Contains(got, "passwd") {
		t.Errorf("the first run saw %q, want both copies and the image's /etc", got)
	}
}

// TestRunStopTimeoutNoLimit: run --stop-timeout -1 means no limit, as docker's
// (a negative stop timeout waits for the container); it was taken as not given,
// so stop killed after 10 s.
func TestRunStopTimeoutNoLimit(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "nl") })
	script := `trap "exit 42" USR1; trap "" TERM; echo ready; while :; do sleep 0.1; done`
	mustRun(t, "run", "-d", "--stop-timeout", "-1", "--name", "nl", "busybox", "sh", "-c", script)
	waitLogs(t, "nl", "ready")
	if got := mustRun(t, "inspect", "-f", "{{.Config.StopTimeout}}", "nl"); got != "-1\n" {
		t.Errorf("Config.StopTimeout = %q, want -1", got)
	}
	stopWaitsForExit(t, "nl", 11*time.Second, "stop", "nl") // past the 10 s default
	if got := mustRun(t, "inspect", "-f", "{{.State.ExitCode}}", "nl"); got != "42\n" {
		t.Errorf("exit code = %q, want 42 (no SIGKILL)", got)
	}
}

// stopWaitsForExit runs layerfs args (a stop or restart of name, whose pid 1
// ignores SIGTERM and exits on SIGUSR1) and checks that it still waits after
// d with name running, then that it returns, without error, once SIGUSR1 has
// ended the container.
func stopWaitsForExit(t *testing.T, name string, d time.Duration, args ...string) {
	t.Helper()
	cmd := exec.Command(layerfsBin, append([]string{"--root", rootFor(t)}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	what := strings.Join(args, " ")
	select {
	case err := <-done:
		t.Fatalf("%s returned within %v (%v, %q): it did not wait", what, d, err, stderr.String())
	case <-time.After(d):
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}}", name); got != "running\n" {
		t.Errorf("after %v of %s: %q, want running", d, what, got)
	}
	mustRun(t, "kill", "-s", "USR1", name)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v, %q", what, err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s did not return once the container exited", what)
	}
}
