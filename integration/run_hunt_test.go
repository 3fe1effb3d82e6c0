package integration

// Run behaviours found to differ from docker's in a bug hunt (each test is the
// reproduction of one bug).

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunEntrypointReset: --entrypoint "" clears the image's ENTRYPOINT (and, as
// any --entrypoint, its CMD), as docker run does.
func TestRunEntrypointReset(t *testing.T) {
	requireRunner(t)
	importRunner(t, "ep", `ENTRYPOINT ["echo", "from-entrypoint"]`, `CMD ["from-cmd"]`)
	if got := mustRun(t, "run", "--rm", "ep"); got != "from-entrypoint from-cmd\n" {
		t.Fatalf("run ep = %q", got)
	}
	for _, flag := range [][]string{{"--entrypoint", ""}, {"--entrypoint="}} {
		args := append(append([]string{"run", "--rm"}, flag...), "ep", "echo", "plain")
		if got := mustRun(t, args...); got != "plain\n" {
			t.Errorf("run %q = %q, want %q", flag, got, "plain\n")
		}
	}
	// Nothing left to run: docker's "no command specified".
	if r := run(t, "run", "--rm", "--entrypoint=", "ep"); r.Code != 125 || !strings.Contains(r.Stderr, "no command") {
		t.Errorf("run --entrypoint= with no command: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestRunEnvFile: --env-file reads KEY=VALUE lines (comments and blank lines
// skipped, a bare KEY passes the host's value, values kept verbatim); -e wins.
func TestRunEnvFile(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`, "ENV FROM_IMAGE=image")
	f := filepath.Join(t.TempDir(), "env.list")
	os.WriteFile(f, []byte("# a comment\nA=1\n\n  B=two words \nC=\"quoted\"\nHOSTVAR\nUNSETVAR\nFROM_IMAGE=file\nD=file\n"), 0o644)
	r := runWith(t, cmdOpts{env: []string{"HOSTVAR=from-host"}}, "run", "--rm", "--env-file", f, "-e", "D=flag", "busybox",
		"sh", "-c", `echo "[$A][$B][$C][$HOSTVAR][${UNSETVAR-unset}][$FROM_IMAGE][$D]"`)
	if want := "[1][two words ][\"quoted\"][from-host][unset][file][flag]\n"; r.Code != 0 || r.Stdout != want {
		t.Errorf("run --env-file: exit %d, stdout %q, want %q (stderr %q)", r.Code, r.Stdout, want, r.Stderr)
	}
	os.WriteFile(f, []byte("BAD KEY=1\n"), 0o644)
	if r := run(t, "run", "--rm", "--env-file", f, "busybox", "true"); r.Code == 0 || !strings.Contains(r.Stderr, "whitespace") {
		t.Errorf("a key with a space: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if r := run(t, "run", "--rm", "--env-file", filepath.Join(t.TempDir(), "nosuch"), "busybox", "true"); r.Code == 0 {
		t.Errorf("a missing env file was accepted")
	}
}

// TestEnvEmptyNameRefused: an empty variable name is refused as docker refuses
// it: -e "=x" as a flag error (exit 125) by run, create and exec; an env file
// line "=x" by run (125) and exec (1), naming the file. A missing env file is
// named once.
func TestEnvEmptyNameRefused(t *testing.T) {
	const flagErr = `Error: invalid argument "=x" for "-e, --env" flag: invalid environment variable: =x`
	for _, args := range [][]string{
		{"run", "--rm", "-e", "=x", "busybox", "true"},
		{"create", "-e", "=x", "busybox"},
		{"exec", "-e", "=x", "nosuchc", "true"},
		{"container", "run", "--env==x", "busybox", "true"},
	} {
		if r := run(t, args...); r.Code != 125 || !strings.HasPrefix(r.Stderr, flagErr+"\n") {
			t.Errorf("layerfs %q: exit %d, stderr %q; want 125 and %q", args, r.Code, r.Stderr, flagErr)
		}
	}
	f := filepath.Join(t.TempDir(), "env.list")
	os.WriteFile(f, []byte("A=1\n=x\n"), 0o644)
	want := "Error: invalid env file (" + f + "): no variable name on line '=x'\n"
	if r := run(t, "run", "--rm", "--env-file", f, "busybox", "true"); r.Code != 125 || r.Stderr != want {
		t.Errorf("run --env-file with =x: exit %d, stderr %q; want 125 and %q", r.Code, r.Stderr, want)
	}
	if r := run(t, "exec", "--env-file", f, "nosuchc", "true"); r.Code != 1 || r.Stderr != want {
		t.Errorf("exec --env-file with =x: exit %d, stderr %q; want 1 and %q", r.Code, r.Stderr, want)
	}
	missing := filepath.Join(t.TempDir(), "nosuch")
	want = "Error: open " + missing + ": no such file or directory\n"
	if r := run(t, "run", "--rm", "--env-file", missing, "busybox", "true"); r.Code != 125 || r.Stderr != want {
		t.Errorf("run --env-file %s: exit %d, stderr %q; want 125 and %q", missing, r.Code, r.Stderr, want)
	}
}

// TestRunTTYWithoutTerminal: -it with a stdin that is not a terminal fails at
// once, as docker's "the input device is not a TTY", instead of hanging with a
// pty whose input never ends.
func TestRunTTYWithoutTerminal(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "run", "--rm", "-it", "busybox", "cat")
	cmd.Stdin = strings.NewReader("hi\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	cmd.Wait()
	if !timer.Stop() {
		t.Fatal("run -it with a pipe as stdin hangs")
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "the input device is not a TTY") {
		t.Errorf("run -it without a terminal: exit %d, stderr %q", code, stderr.String())
	}
	// -t alone needs no terminal on stdin.
	if got := mustRun(t, "run", "--rm", "-t", "busybox", "sh", "-c", "test -t 0 && echo tty"); strings.TrimSpace(got) != "tty" {
		t.Errorf("run -t = %q", got)
	}
}

// TestRunBindCreatesHostDir: -v with a host path that does not exist creates
// it (a dir, parents too) and binds it, as docker does for -v.
func TestRunBindCreatesHostDir(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	host := filepath.Join(t.TempDir(), "missing", "data")
	r := run(t, "run", "--rm", "-v", host+":/data", "busybox", "sh", "-c", "echo hi > /data/f")
	if r.Code != 0 {
		t.Fatalf("run -v %s:/data: exit %d, stderr %q", host, r.Code, r.Stderr)
	}
	if b, err := os.ReadFile(filepath.Join(host, "f")); err != nil || string(b) != "hi\n" {
		t.Errorf("host %s/f = %q, %v", host, b, err)
	}
	if fi, err := os.Stat(host); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("host dir: %v, %v; want a 0755 dir", fi, err)
	}
}

// TestStartTTYWithoutTerminal: start -ai (and -i, which attaches as in docker)
// of a container made with -it refuses a stdin that is not a terminal, as run -it
// does, instead of hanging on a pty whose input never ends.
func TestStartTTYWithoutTerminal(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "-d", "-it", "--name", "tty1", "busybox", "cat")
	mustRun(t, "stop", "-t", "0", "tty1")
	deadline := time.Now().Add(10 * time.Second)
	for strings.TrimSpace(mustRun(t, "ps", "-a", "--format", "{{.Mount}}")) != "unmounted" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, flags := range []string{"-ai", "-i"} {
		cmd := exec.Command(layerfsBin, "--root", rootFor(t), "start", flags, "tty1")
		cmd.Stdin = strings.NewReader("hi\n")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(20*time.Second, func() { run(t, "stop", "-t", "0", "tty1") })
		cmd.Wait()
		if !timer.Stop() {
			t.Fatalf("start %s with a pipe as stdin hangs", flags)
		}
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "the input device is not a TTY") {
			t.Errorf("start %s without a terminal: exit %d, stderr %q", flags, code, stderr.String())
		}
	}
}

// TestUsageErrorExit125: a flag error (unknown flag, missing or bad value)
// exits 125, docker's status for its own usage errors; a wrong argument count
// stays 1, as in docker.
func TestUsageErrorExit125(t *testing.T) {
	for _, args := range [][]string{{"run", "--bogus", "busybox"}, {"run", "--name"}, {"run", "--rm=maybe", "busybox"}, {"ps", "-a", "-z"}, {"images", "--bogus"}} {
		if r := run(t, args...); r.Code != 125 || !strings.Contains(r.Stderr, "flag") {
			t.Errorf("layerfs %q: exit %d, stderr %q, want 125", args, r.Code, r.Stderr)
		}
	}
	if r := run(t, "run"); r.Code != 1 || !strings.Contains(r.Stderr, "requires at least 1 argument") {
		t.Errorf("run with no image: exit %d, stderr %q, want 1", r.Code, r.Stderr)
	}
}

// TestGroupUnknownCommand: a mistyped command of a group (image, container,
// system, builder) is docker's "unknown command", exit 1, also with a flag the
// group lacks after it; not "accepts no arguments" nor a flag error.
func TestGroupUnknownCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "bogus"}, "layerfs image bogus"},
		{[]string{"image", "export", "-o", "/dev/null", "busybox"}, "layerfs image export"},
		{[]string{"image", "gc"}, "layerfs image gc"},
		{[]string{"container", "rmi", "x"}, "layerfs container rmi"},
		{[]string{"system", "bogus"}, "layerfs system bogus"},
		{[]string{"builder", "bogus"}, "layerfs builder bogus"},
	} {
		want := "Error: unknown command: " + tc.want + "\nSee '" + strings.Join(strings.Fields(tc.want)[:2], " ") + " --help'.\n"
		if r := run(t, tc.args...); r.Code != 1 || r.Stderr != want {
			t.Errorf("layerfs %q: exit %d, stderr %q; want 1 and %q", tc.args, r.Code, r.Stderr, want)
		}
	}
}

// TestPsAll: as docker ps, ps lists the containers in use (mounted or running),
// and -a / --all every one, the stopped (unmounted) ones too; -n, -l and a
// status= filter list stopped ones too. ps listed every one: docker's habit
// `rm -f $(ps -q)` then removed stopped containers with their changes too
// (found by a review).
func TestPsAll(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "--name", "stopped1", "busybox", "true")
	mustRun(t, "run", "-d", "--name", "up1", "busybox", "sleep", "60")
	t.Cleanup(func() { run(t, "rm", "-f", "up1") })
	if got := mustRun(t, "ps", "-q"); got != psQuietIn(t, "", "up1") {
		t.Errorf("ps -q = %q, want the running container alone", got)
	}
	want := mustRun(t, "ps", "-a")
	if !strings.Contains(want, "stopped1") || !strings.Contains(want, "Exited (0) ") || !strings.Contains(want, "up1") {
		t.Fatalf("ps -a = %q, want the stopped container and the running one", want)
	}
	if got := mustRun(t, "ps", "--all"); got != want {
		t.Errorf("ps --all = %q, want %q", got, want)
	}
	if got := mustRun(t, "ps", "-aq"); got != psQuietIn(t, "", "stopped1", "up1") && got != psQuietIn(t, "", "up1", "stopped1") {
		t.Errorf("ps -aq = %q", got)
	}
	for _, args := range [][]string{{"-f", "status=exited"}, {"-n", "2"}, {"-n", "1", "-f", "name=stopped1"}} {
		if got := mustRun(t, append([]string{"ps", "--format", "{{.Names}}"}, args...)...); !strings.Contains(got, "stopped1") {
			t.Errorf("ps %v = %q, want the stopped container", args, got)
		}
	}
	if got := mustRun(t, "ps", "-f", "exited=0", "-q"); got != "" {
		t.Errorf("ps -f exited=0 (without -a, as docker's) = %q, want nothing", got)
	}
	mustRun(t, "rm", "-f", "up1")
	if got := mustRun(t, "ps", "-aq"); got != psQuietIn(t, "", "stopped1") {
		t.Errorf("ps -aq after rm -f of the running one = %q, want the stopped one", got)
	}
}
