package integration

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestContainerInspect: docker inspect of a container shows what scripts read
// (.State, .Path/.Args, .Config, .Mounts, .GraphDriver's dirs), and names,
// "/names" and ID prefixes all find it; images are found after containers.
func TestContainerInspect(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`, "ENV A=1", "WORKDIR /srv")
	vol := filepath.Join(t.TempDir(), "vol")
	if r := run(t, "run", "--name", "i1", "-e", "B=2", "-v", vol+":/data:ro", "busybox", "sh", "-c", "echo x > /tmp/f; exit 3"); r.Code != 3 {
		t.Fatalf("run exit %d: %s", r.Code, r.Stderr)
	}
	var got []struct {
		Id    string
		Name  string
		Path  string
		Args  []string
		Image string
		State struct {
			Status   string
			Running  bool
			ExitCode int
			Mount    string
		}
		Config struct {
			Hostname   string
			Env        []string
			Cmd        []string
			WorkingDir string
			Image      string
		}
		Mounts []struct {
			Type, Source, Destination string
			RW                        bool
		}
		GraphDriver struct {
			Name string
			Data map[string]string
		}
		SizeRw *int64
	}
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "-s", "i1")), &got); err != nil || len(got) != 1 {
		t.Fatalf("inspect i1: %v (%d objects)", err, len(got))
	}
	c := got[0]
	if c.Name != "/i1" || len(c.Id) != 64 || c.Path != "sh" || strings.Join(c.Args, " ") != "-c echo x > /tmp/f; exit 3" {
		t.Errorf("inspect i1: name %q id %q path %q args %q", c.Name, c.Id, c.Path, c.Args)
	}
	if c.State.Status != "exited" || c.State.Running || c.State.ExitCode != 3 || c.State.Mount != "unmounted" {
		t.Errorf("inspect i1 state = %+v", c.State)
	}
	if c.Config.Hostname != c.Id[:12] || c.Config.WorkingDir != "/srv" || c.Config.Image != "busybox:latest" ||
		!strings.Contains(strings.Join(c.Config.Env, " "), "A=1") || !strings.Contains(strings.Join(c.Config.Env, " "), "B=2") {
		t.Errorf("inspect i1 config = %+v", c.Config)
	}
	if len(c.Mounts) != 1 || c.Mounts[0].Source != vol || c.Mounts[0].Destination != "/data" || c.Mounts[0].RW {
		t.Errorf("inspect i1 mounts = %+v", c.Mounts)
	}
	upper := c.GraphDriver.Data["UpperDir"]
	if c.GraphDriver.Name != "layerfs" || c.GraphDriver.Data["LowerDir"] == "" || c.GraphDriver.Data["MergedDir"] != "" {
		t.Errorf("inspect i1 graph driver = %+v", c.GraphDriver)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "tmp", "f")); err != nil || string(b) != "x\n" {
		t.Errorf("UpperDir %s does not hold the run's change: %q %v", upper, b, err)
	}
	if c.SizeRw == nil || *c.SizeRw != 2 {
		t.Errorf("inspect -s SizeRw = %v, want 2 (one file of 2 bytes)", c.SizeRw)
	}
	for _, arg := range []string{"/i1", c.Id[:7], c.Id} {
		if got := mustRun(t, "container", "inspect", "-f", "{{.Name}}", arg); got != "/i1\n" {
			t.Errorf("container inspect %s = %q", arg, got)
		}
	}
	// The network and restart fields docker's scripts read are there (the
	// tutorials' {{.NetworkSettings.IPAddress}} failed), and a template error
	// says "template:" once.
	if got := mustRun(t, "inspect", "-f", "[{{.NetworkSettings.IPAddress}}] {{.HostConfig.RestartPolicy.Name}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", "i1"); got != "[] no host\n" {
		t.Errorf("inspect network and restart fields = %q", got)
	}
	if r := run(t, "inspect", "-f", "{{.Nope.X}}", "i1"); r.Code == 0 || strings.Contains(r.Stderr, "template: template:") {
		t.Errorf("inspect with a bad field: exit %d, %q", r.Code, r.Stderr)
	}
	// An image after the containers; --type picks one kind; both in one call.
	if got := mustRun(t, "inspect", "-f", "{{.Os}}", "busybox"); got != "linux\n" {
		t.Errorf("inspect busybox = %q", got)
	}
	if r := run(t, "inspect", "--type", "container", "busybox"); r.Code != 1 || !strings.Contains(r.Stderr, "No such container: busybox") {
		t.Errorf("inspect --type container busybox: exit %d, %q", r.Code, r.Stderr)
	}
	if r := run(t, "inspect", "--type", "image", "i1"); r.Code != 1 || !strings.Contains(r.Stderr, "No such image: i1") {
		t.Errorf("inspect --type image i1: exit %d, %q", r.Code, r.Stderr)
	}
	if got := mustRun(t, "inspect", "-f", "{{.Id}}", "i1", "busybox"); len(strings.Fields(got)) != 2 || !strings.HasPrefix(strings.Fields(got)[1], "sha256:") {
		t.Errorf("inspect i1 busybox = %q", got)
	}

	// A mounted container made by mount: its MergedDir, status mounted, never run.
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustRun(t, "mount", "--name", "m1", "busybox", mnt)
	t.Cleanup(func() { run(t, "umount", mnt) })
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}} {{.State.Mount}} {{.GraphDriver.Data.MergedDir}} {{.Path}}", "m1"); got != "mounted mounted "+mnt+" \n" {
		t.Errorf("inspect m1 = %q", got)
	}
	// The mountpoint names the container too, as umount takes it.
	if got := mustRun(t, "inspect", "-f", "{{.Name}}", mnt); got != "/m1\n" {
		t.Errorf("inspect %s = %q", mnt, got)
	}
	mustRun(t, "umount", "m1")
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}}", "m1"); got != "created\n" {
		t.Errorf("inspect m1 after umount = %q", got)
	}
}

// TestContainerKillWait: kill signals a running container's pid 1, wait prints
// the exit status (at once for one that ended), restart runs it again, and the
// container group reaches the same verbs.
func TestContainerKillWait(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	// run -d prints the container's full ID, as docker's.
	if got, want := strings.TrimSpace(mustRun(t, "run", "-d", "--name", "k1", "busybox", "sleep", "600")), containerIDIn(t, "", "k1"); got != want {
		t.Errorf("run -d printed %q, want its ID %s", got, want)
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}} {{.State.Running}}", "k1"); got != "running true\n" {
		t.Errorf("inspect k1 while it runs = %q", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "status=running", "-q"); got != psQuietIn(t, "", "k1") {
		t.Errorf("ps -f status=running = %q", got)
	}
	waited := make(chan result, 1)
	go func() { waited <- run(t, "wait", "k1") }()
	time.Sleep(100 * time.Millisecond)
	if got := mustRun(t, "kill", "-s", "TERM", "k1"); got != "k1\n" {
		t.Errorf("kill printed %q", got)
	}
	// SIGTERM is ignored by a pid 1 without a handler, as in docker: still running.
	time.Sleep(200 * time.Millisecond)
	if got := mustRun(t, "inspect", "-f", "{{.State.Running}}", "k1"); got != "true\n" {
		t.Errorf("k1 after SIGTERM: running %q", got)
	}
	mustRun(t, "container", "kill", "k1")
	select {
	case r := <-waited:
		if r.Code != 0 || r.Stdout != "137\n" {
			t.Errorf("wait k1: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wait k1 did not return after kill")
	}
	if got := mustRun(t, "wait", "k1"); got != "137\n" {
		t.Errorf("wait of an exited container = %q", got)
	}
	if r := run(t, "kill", "k1"); r.Code != 1 || !strings.Contains(r.Stderr, "is not running") {
		t.Errorf("kill of a stopped container: exit %d, %q", r.Code, r.Stderr)
	}
	if r := run(t, "kill", "-s", "NOPE", "k1"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid signal: NOPE") {
		t.Errorf("kill -s NOPE: exit %d, %q", r.Code, r.Stderr)
	}
	if r := run(t, "wait", "nope"); r.Code != 1 || !strings.Contains(r.Stderr, "No such container: nope") {
		t.Errorf("wait nope: exit %d, %q", r.Code, r.Stderr)
	}

	// restart runs the command again; wait then sees that run's status.
	if r := run(t, "run", "--name", "k2", "busybox", "sh", "-c", "echo run >> /root/log; sleep 0.3; exit $(wc -l < /root/log)"); r.Code != 1 {
		t.Fatalf("run k2: exit %d, %q", r.Code, r.Stderr)
	}
	if got := mustRun(t, "wait", "k2"); got != "1\n" {
		t.Errorf("wait k2 = %q", got)
	}
	if got := mustRun(t, "container", "restart", "k2"); got != "k2\n" {
		t.Errorf("restart printed %q", got)
	}
	if got := mustRun(t, "wait", "k2"); got != "2\n" {
		t.Errorf("wait k2 after restart = %q", got)
	}
	if got := mustRun(t, "container", "ls", "-a", "-q"); got != psQuietIn(t, "", "k2", "k1") { // newest first
		t.Errorf("container ls -q = %q", got)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustRun(t, "container", "mount", "--name", "m", "busybox", mnt)
	t.Cleanup(func() { run(t, "umount", mnt) })
	if r := run(t, "wait", "m"); r.Code != 1 || !strings.Contains(r.Stderr, "not made by run") {
		t.Errorf("wait of a mount's container: exit %d, %q", r.Code, r.Stderr)
	}
	mustRun(t, "container", "umount", "m")
}

// TestContainerRename: a renamed container keeps its changes and its ID, and
// mounts, commits and removes under the new name; names in use, bad names and
// mounted containers are refused, leaving both as they were.
func TestContainerRename(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "--name", "old", "busybox", "sh", "-c", "echo kept > /root/f")
	id := mustRun(t, "inspect", "-f", "{{.Id}}", "old")
	mustRun(t, "run", "--name", "other", "busybox", "true")
	if r := run(t, "rename", "old", "other"); r.Code == 0 || !strings.Contains(r.Stderr, `The container name "/other" is already in use`) {
		t.Errorf("rename onto a used name: exit %d, %q", r.Code, r.Stderr)
	}
	if r := run(t, "rename", "old", "bad/name"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid container name") {
		t.Errorf("rename to a bad name: exit %d, %q", r.Code, r.Stderr)
	}
	mustRun(t, "container", "rename", "old", "new")
	if got := mustRun(t, "container", "ls", "-a", "-q"); got != psQuietIn(t, "", "other", "new") { // newest first
		t.Errorf("ls after rename = %q", got)
	}
	if got := mustRun(t, "inspect", "-f", "{{.Id}}", "new"); got != id {
		t.Errorf("ID after rename = %q, want %q", got, id)
	}
	if got := mustRun(t, "diff", "new"); !strings.Contains(got, "A /root/f") {
		t.Errorf("diff new = %q", got)
	}
	if got := mustRun(t, "start", "-a", "new"); got != "" {
		t.Errorf("start -a new printed %q", got)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustRun(t, "mount", "--name", "new", "busybox", mnt)
	t.Cleanup(func() { run(t, "umount", mnt) })
	if b, err := os.ReadFile(filepath.Join(mnt, "root", "f")); err != nil || string(b) != "kept\n" {
		t.Errorf("renamed container's file: %q %v", b, err)
	}
	if r := run(t, "rename", "new", "newer"); r.Code == 0 || !strings.Contains(r.Stderr, "umount (or stop) it first") {
		t.Errorf("rename of a mounted container: exit %d, %q", r.Code, r.Stderr)
	}
	mustRun(t, "umount", "new")
	mustRun(t, "commit", "new", "renamed:1")
	mustRun(t, "rm", "new", "other")
}

// TestContainerCreate: create records what run would run and stops there (not
// mounted, status created); start runs it on whatever the container holds
// meanwhile; create --rm containers go after their run; a taken name is refused.
func TestContainerCreate(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	if got := mustRun(t, "create", "--name", "c1", "-e", "X=1", "busybox", "sh", "-c", "echo $X; cat /root/f; exit 5"); got != containerIDIn(t, "", "c1")+"\n" {
		t.Errorf("create printed %q, want c1's ID", got)
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}} {{.State.Mount}} {{.Path}}", "c1"); got != "created unmounted sh\n" {
		t.Errorf("inspect c1 after create = %q", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "status=created", "-q"); got != psQuietIn(t, "", "c1") {
		t.Errorf("ps -f status=created = %q", got)
	}
	if r := run(t, "create", "--name", "c1", "busybox"); r.Code != 125 || !strings.Contains(r.Stderr, `The container name "/c1" is already in use`) {
		t.Errorf("create of a taken name: exit %d, %q", r.Code, r.Stderr)
	}
	// A change made before the first start (by a mount here) is there when it runs.
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustRun(t, "mount", "--name", "c1", "busybox", mnt)
	if err := os.WriteFile(filepath.Join(mnt, "root", "f"), []byte("put\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "umount", mnt)
	if r := run(t, "start", "-a", "c1"); r.Code != 5 || r.Stdout != "1\nput\n" {
		t.Errorf("start -a c1: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "wait", "c1"); got != "5\n" {
		t.Errorf("wait c1 = %q", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "status=exited", "--format", "{{.Names}} {{.Command}}"); got != "c1 \"sh -c echo $X; cat …\"\n" {
		t.Errorf("ps -f status=exited = %q", got)
	}
	mustRun(t, "create", "--rm", "--name", "c2", "busybox", "true")
	if r := run(t, "start", "-a", "c2"); r.Code != 0 {
		t.Errorf("start -a c2: exit %d, %q", r.Code, r.Stderr)
	}
	if got := mustRun(t, "ps", "-a", "-q"); got != psQuietIn(t, "", "c1") {
		t.Errorf("ps after c2's run = %q, want c2 removed (create --rm)", got)
	}
	if r := run(t, "create", "--pull", "never", "nosuch"); r.Code != 125 || !strings.Contains(r.Stderr, "No such image") {
		t.Errorf("create of a missing image: exit %d, %q", r.Code, r.Stderr)
	}
	if got := mustRun(t, "ps", "-a", "-q"); got != psQuietIn(t, "", "c1") {
		t.Errorf("ps after a failed create = %q", got)
	}
}

// TestContainerLogsFollow: logs -f prints what a detached container writes as
// it writes it and returns once it stops; --tail starts at the last lines.
func TestContainerLogsFollow(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "-d", "--name", "l1", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done")
	done := make(chan result, 1)
	go func() { done <- run(t, "logs", "-f", "l1") }()
	select {
	case r := <-done:
		if r.Code != 0 || r.Stdout != "line 1\nline 2\nline 3\nline 4\nline 5\n" {
			t.Errorf("logs -f: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f did not return after the container stopped")
	}
	if got := mustRun(t, "logs", "--tail", "2", "l1"); got != "line 4\nline 5\n" {
		t.Errorf("logs --tail 2 = %q", got)
	}
	if got := mustRun(t, "container", "logs", "-n", "0", "l1"); got != "" {
		t.Errorf("logs -n 0 = %q", got)
	}
	if r := run(t, "logs", "--tail", "x", "l1"); r.Code == 0 {
		t.Errorf("logs --tail x accepted")
	}
	if r := run(t, "logs", "nope"); r.Code == 0 || !strings.Contains(r.Stderr, "No such container: nope") {
		t.Errorf("logs nope: exit %d, %q", r.Code, r.Stderr)
	}
}

// TestForegroundRunLogs: a foreground run's output reaches the user (stdout and
// stderr apart) and is kept for logs, as docker keeps every container's; the
// container's stdout is a pipe, not the user's terminal, without -t (docker's);
// a reader of run's output that goes away ends the container, not run before
// it unmounts.
func TestForegroundRunLogs(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "fg1", "fg2", "fg3") })
	r := run(t, "run", "--name", "fg1", "busybox", "sh", "-c", "echo out; echo err >&2")
	if r.Code != 0 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Fatalf("run: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	mustRun(t, "start", "-a", "fg1") // a second run of it adds to its logs
	// docker's logs: the container's stdout on stdout, its stderr on stderr
	if r := run(t, "logs", "fg1"); r.Code != 0 || r.Stdout != "out\nout\n" || r.Stderr != "err\nerr\n" {
		t.Errorf("logs of a foreground run run twice: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// -t: docker's RFC 3339 time with nanoseconds before each line
	ts := regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z out\n){2}$`)
	if got := mustRun(t, "logs", "-t", "fg1"); !ts.MatchString(got) {
		t.Errorf("logs -t = %q", got)
	}
	if r := run(t, "logs", "-n", "1", "fg1"); r.Code != 0 || len(r.Stdout+r.Stderr) != 4 {
		t.Errorf("logs -n 1: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "logs", "--since", "1h", "fg1"); got != "out\nout\n" {
		t.Errorf("logs --since 1h = %q", got)
	}
	if got := mustRun(t, "logs", "--until", "1h", "fg1"); got != "" {
		t.Errorf("logs --until 1h = %q", got)
	}
	if got := mustRun(t, "logs", "--since", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), "fg1"); got != "" {
		t.Errorf("logs --since (an hour ahead, unix seconds) = %q", got)
	}
	if r := run(t, "logs", "--since", "yesterday", "fg1"); r.Code == 0 || !strings.Contains(r.Stderr, "--since") {
		t.Errorf("logs --since yesterday: exit %d, %q", r.Code, r.Stderr)
	}

	// A terminal as run's stdout is not the container's without -t.
	ptm, pts, err := openPty()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptm.Close()
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "run", "--name", "fg2", "busybox", "sh", "-c", "if [ -t 1 ]; then echo tty; else echo pipe; fi; echo err >&2")
	cmd.Stdout, cmd.Stderr = pts, pts
	err = cmd.Run()
	pts.Close()
	if err != nil {
		t.Fatalf("run with a terminal as stdout: %v", err)
	}
	// ... and its stdout and stderr, one terminal, are two streams in the log
	if r := run(t, "logs", "fg2"); r.Stdout != "pipe\n" || r.Stderr != "err\n" {
		t.Errorf("logs of a run on a terminal: stdout %q, stderr %q; want a pipe as in docker, and err on stderr", r.Stdout, r.Stderr)
	}

	// run ... | head -1
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(layerfsBin, "--root", rootFor(t), "run", "--name", "fg3", "busybox", "yes")
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	line, err := bufio.NewReader(pr).ReadString('\n')
	pr.Close()
	if line != "y\n" {
		t.Errorf("run yes: first line %q, %v", line, err)
	}
	exitCodeOf(t, cmd) // fails t if run goes on after its reader is gone
	if st := cmd.ProcessState.Sys().(syscall.WaitStatus); st.Signaled() {
		t.Errorf("run was killed by %v when its reader went away: it must end the container and unmount", st.Signal())
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}}", "fg3"); got != "exited\n" {
		t.Errorf("fg3 after its reader went away: %q", got)
	}
}

// TestTtyOutputReaderGone: run -t ... | head and exec -t ... | head end: the
// terminal is hung up once nobody reads its output (run -t hung for good, the
// container blocked in a write; exec -t died of SIGPIPE), found by a review.
func TestTtyOutputReaderGone(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "tt1", "tt2") })
	mustRun(t, "run", "-d", "--name", "tt2", "busybox", "sleep", "300")
	for _, args := range [][]string{
		{"run", "-t", "--name", "tt1", "busybox", "yes"},
		{"exec", "-t", "tt2", "yes"},
	} {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(layerfsBin, append([]string{"--root", rootFor(t)}, args...)...)
		cmd.Stdout = pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		line, err := bufio.NewReader(pr).ReadString('\n')
		pr.Close()
		if !strings.HasPrefix(line, "y") {
			t.Errorf("%s: first line %q, %v", args[0], line, err)
		}
		exitCodeOf(t, cmd) // fails t if it goes on
		if st := cmd.ProcessState.Sys().(syscall.WaitStatus); st.Signaled() {
			t.Errorf("%s -t was killed by %v when its reader went away", args[0], st.Signal())
		}
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}}", "tt1"); got != "exited\n" {
		t.Errorf("tt1 after its reader went away: %q", got)
	}
}

// TestRunOptions: docker run's --read-only, --tmpfs, --mount, --network none,
// --add-host, --label, --stop-signal and --stop-timeout, in the foreground and
// through run -d's monitor and start (which get them handed over, not on a
// command line every user's ps shows).
func TestRunOptions(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `cat /in/f; echo no > /in/g || echo in-ro; echo no > /root/x || echo root-ro; ` +
		`echo yes > /scratch/ok && stat -c %a /scratch; grep -c . /etc/hosts >/dev/null; grep foo /etc/hosts; ls /sys/class/net`
	r := run(t, "run", "--name", "o1", "--read-only", "--tmpfs", "/scratch:size=1m,mode=700",
		"--mount", "type=bind,source="+src+",target=/in,readonly", "--network", "none", "--add-host", "foo:1.2.3.4",
		"-l", "team=x", "busybox", "sh", "-c", script)
	if want := "data\nin-ro\nroot-ro\n700\n1.2.3.4\tfoo\nlo\n"; r.Code != 0 || r.Stdout != want {
		t.Errorf("run with options: exit %d, stdout %q (want %q), stderr %q", r.Code, r.Stdout, want, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(src, "g")); err == nil {
		t.Errorf("a write through a readonly --mount reached the host")
	}
	if got := mustRun(t, "inspect", "-f", "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NetworkMode}} {{index .Config.Labels \"team\"}} {{len .Mounts}}", "o1"); got != "true none x 2\n" {
		t.Errorf("inspect o1 = %q", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "label=team=x", "-q"); got != psQuietIn(t, "", "o1") {
		t.Errorf("ps -f label=team=x = %q", got)
	}
	// The mountpoints the run made stay, as docker's do; nothing else.
	if got := mustRun(t, "diff", "o1"); got != "A /in\nA /scratch\n" {
		t.Errorf("diff of a --read-only container = %q, want its two mountpoints only", got)
	}
	for _, bad := range [][]string{
		{"--mount", "type=volume,target=/v"},
		{"--tmpfs", "relative"},
		{"--network", "mynet"},
		{"--stop-signal", "NOPE"},
		{"--mount", "type=bind,source=" + filepath.Join(src, "missing") + ",target=/x"},
	} {
		if r := run(t, append(append([]string{"run", "--rm"}, bad...), "busybox", "true")...); r.Code != 125 || !strings.Contains(r.Stderr, bad[1]) {
			t.Errorf("run %v: exit %d, %q", bad, r.Code, r.Stderr)
		}
	}
	if got := mustRun(t, "ps", "-a", "-q"); got != psQuietIn(t, "", "o1") {
		t.Errorf("ps after refused runs = %q", got)
	}

	// run -d: the options reach the monitor; stop honours --stop-signal (a
	// trapped USR1 ends the command at once) and --stop-timeout.
	mustRun(t, "run", "-d", "--name", "o2", "-e", "SECRET=s3", "--tmpfs", "/t", "--stop-signal", "USR1", "--stop-timeout", "30",
		"busybox", "sh", "-c", `trap "echo got-usr1; exit 7" USR1; echo $SECRET; grep -c " /t " /proc/mounts; while :; do sleep 0.1; done`)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(mustRun(t, "logs", "o2"), "\n1\n") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	mustRun(t, "stop", "o2")
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("stop took %v: USR1 was not sent first", took)
	}
	if got := mustRun(t, "wait", "o2"); got != "7\n" {
		t.Errorf("wait o2 = %q, want 7 (the USR1 trap's)", got)
	}
	if got := mustRun(t, "logs", "o2"); got != "s3\n1\ngot-usr1\n" {
		t.Errorf("logs o2 = %q", got)
	}
	mustRun(t, "start", "o2")
	deadline = time.Now().Add(10 * time.Second)
	for strings.Count(mustRun(t, "logs", "o2"), "s3") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	mustRun(t, "kill", "-s", "USR1", "o2")
	if got := mustRun(t, "wait", "o2"); got != "7\n" {
		t.Errorf("wait o2 after start = %q", got)
	}
	if got := mustRun(t, "logs", "o2"); got != "s3\n1\ngot-usr1\ns3\n1\ngot-usr1\n" {
		t.Errorf("logs o2 after start = %q", got)
	}
}

// capBnd is the CapBnd line of /proc/self/status in output.
func capBnd(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no CapBnd in %q", out)
	return ""
}

// TestRunCapabilities: a container gets docker's default capabilities, so it
// cannot mount; it can make device nodes, which open nothing (no device cgroup
// here: every mount it can write to is nodev) but /dev's own;
// --privileged, --cap-add and --cap-drop change that; exec's processes get the
// container's; RUN gets the same set, and every capability only with
// --security=insecure under build --allow security.insecure.
func TestRunCapabilities(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	host, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	all := capBnd(t, string(host))
	status := "grep CapBnd /proc/self/status"
	const runDefault = "00000000a80425fb" // docker's 14 capabilities
	if got := capBnd(t, mustRun(t, "run", "--rm", "busybox", "sh", "-c", status)); got != runDefault {
		t.Errorf("default CapBnd = %s, want %s", got, runDefault)
	}
	if r := run(t, "run", "--rm", "busybox", "sh", "-c", "mount -t tmpfs none /mnt || exit 3; mknod /tmp/sda b 8 0 || exit 4"); r.Code != 3 {
		t.Errorf("mount in a default container: exit %d (want 3: refused), %q", r.Code, r.Stderr)
	}
	// A node made anywhere it can write (the root, /dev, a --tmpfs even with
	// its dev option, a bound host dir, /dev/shm) does not open; /dev's own do.
	made := t.TempDir()
	opens := `for d in /tmp /dev /t /h /dev/shm; do mknod $d/nul c 1 3 || echo "no mknod in $d"; echo x > $d/nul 2>/dev/null && echo "opened in $d"; done; echo x > /dev/null && echo x > /dev/zero && echo devs`
	if got := mustRun(t, "run", "--rm", "--tmpfs", "/t:dev", "-v", made+":/h", "busybox", "sh", "-c", opens); got != "devs\n" {
		t.Errorf("device nodes a container made: %q, want them made and not opening, /dev's own opening", got)
	}
	// --device gives one host node, which opens (a block device's too).
	if got := mustRun(t, "run", "--rm", "--device", "/dev/null:/dev/mynull", "--device", "/dev/zero", "busybox", "sh", "-c", "echo x > /dev/mynull && head -c1 /dev/zero | wc -c"); got != "1\n" {
		t.Errorf("--device: %q", got)
	}
	if blk, _ := filepath.Glob("/dev/loop[0-9]*"); len(blk) > 0 {
		if got := mustRun(t, "run", "--rm", "--device", blk[0]+":/dev/blk", "busybox", "sh", "-c", "test -b /dev/blk && cat /dev/blk >/dev/null && echo opened"); got != "opened\n" {
			t.Errorf("--device of a block device: %q", got)
		}
	}
	if r := run(t, "run", "--rm", "--device", "/etc/passwd", "busybox", "true"); r.Code != 125 || !strings.Contains(r.Stderr, "not a device node") {
		t.Errorf("--device of a file: exit %d, %q", r.Code, r.Stderr)
	}
	mustRun(t, "create", "--name", "devc", "--device", "/dev/null:/dev/n2", "busybox", "sh", "-c", "echo x > /dev/n2 && echo started")
	t.Cleanup(func() { run(t, "rm", "-f", "devc") })
	if got := mustRun(t, "start", "-a", "devc"); got != "started\n" {
		t.Errorf("start of a container created with --device: %q", got)
	}
	if got := mustRun(t, "run", "--rm", "--privileged", "--tmpfs", "/t:dev", "-v", made+":/h", "busybox", "sh", "-c", "rm -f /h/nul; "+opens); got != "opened in /tmp\nopened in /dev\nopened in /t\nopened in /h\ndevs\n" {
		t.Errorf("device nodes a --privileged container made: %q, want all opening but on /dev/shm", got)
	}
	if got := capBnd(t, mustRun(t, "run", "--rm", "--privileged", "busybox", "sh", "-c", status)); got != all {
		t.Errorf("--privileged CapBnd = %s, want the host's %s", got, all)
	}
	if got := capBnd(t, mustRun(t, "run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "busybox", "sh", "-c", status)); got != "0000000000000400" {
		t.Errorf("--cap-drop ALL --cap-add NET_BIND_SERVICE CapBnd = %s", got)
	}
	if got := capBnd(t, mustRun(t, "run", "--rm", "--cap-drop", "ALL", "busybox", "sh", "-c", status)); got != "0000000000000000" {
		t.Errorf("--cap-drop ALL CapBnd = %s", got)
	}
	if r := run(t, "run", "--rm", "--cap-add", "NOPE", "busybox", "true"); r.Code != 125 || !strings.Contains(r.Stderr, `unknown capability: "NOPE"`) {
		t.Errorf("--cap-add NOPE: exit %d, %q", r.Code, r.Stderr)
	}
	// A non-root user gets none, as in docker.
	if got := capBnd(t, mustRun(t, "run", "--rm", "-u", "nobody", "busybox", "sh", "-c", "grep CapEff /proc/self/status; "+status)); got != runDefault {
		t.Errorf("CapBnd as nobody = %s", got)
	}

	mustRun(t, "run", "-d", "--name", "ex", "--cap-drop", "ALL", "busybox", "sleep", "600")
	if got := capBnd(t, mustRun(t, "exec", "ex", "sh", "-c", status)); got != "0000000000000000" {
		t.Errorf("exec CapBnd in a --cap-drop ALL container = %s", got)
	}
	if got := capBnd(t, mustRun(t, "exec", "--privileged", "ex", "sh", "-c", status)); got != all {
		t.Errorf("exec --privileged CapBnd = %s, want %s", got, all)
	}
	mustRun(t, "rm", "-f", "ex")

	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nRUN "+status+"\nRUN --security=insecure "+status+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "build", "--no-cache", ctx); r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "--allow security.insecure") {
		t.Errorf("RUN --security=insecure without --allow: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	out := mustRun(t, "build", "--no-cache", "--allow", "security.insecure", ctx)
	if i := strings.Index(out, "--security=insecure"); i < 0 || capBnd(t, out[:i]) != runDefault || capBnd(t, out[i:]) != all {
		t.Errorf("build output: %q, want RUN with %s and RUN --security=insecure with %s", out, runDefault, all)
	}
}

// TestRunSetuid: an image's setuid-root program works in its container, as in
// docker's (the mount is nosuid for the host only), still within the
// container's capabilities; the host's view of the mount stays nosuid.
func TestRunSetuid(t *testing.T) {
	requireRunner(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755)
	buildGoProgram(t, filepath.Join(rootfs, "bin", "whoami"), `package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sleep" {
		time.Sleep(time.Hour)
	}
	b, _ := os.ReadFile("/proc/self/status")
	capEff := ""
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			capEff = strings.TrimSpace(v)
		}
	}
	fmt.Println(os.Getuid(), os.Geteuid(), capEff)
}
`)
	os.Chmod(filepath.Join(rootfs, "bin", "whoami"), 0o755|os.ModeSetuid)
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"), 0o644)
	tarPath := filepath.Join(t.TempDir(), "suid.tar")
	if out, err := exec.Command("tar", "--numeric-owner", "--owner=0", "--group=0", "-C", rootfs, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	mustRun(t, "import", "-q", tarPath, "suid:1")
	if got := mustRun(t, "run", "--rm", "-u", "nobody", "suid:1", "/bin/whoami"); got != "65534 0 00000000a80425fb\n" {
		t.Errorf("a setuid-root program run as nobody: uid euid CapEff = %q, want 65534 0 and the default set", got)
	}
	if got := mustRun(t, "run", "--rm", "-u", "nobody", "--cap-drop", "ALL", "suid:1", "/bin/whoami"); got != "65534 0 0000000000000000\n" {
		t.Errorf("the same under --cap-drop ALL = %q", got)
	}
	// exec too: it joins the container's mount namespace (chrooted from the
	// host's into /proc/<pid>/root, the mount was not the process's own, and
	// the kernel ignored the set-id bit).
	mustRun(t, "run", "-d", "--name", "suidx", "suid:1", "/bin/whoami", "sleep")
	t.Cleanup(func() { run(t, "rm", "-f", "suidx") })
	if got := mustRun(t, "exec", "-u", "nobody", "suidx", "/bin/whoami"); got != "65534 0 00000000a80425fb\n" {
		t.Errorf("a setuid-root program exec'd as nobody: uid euid CapEff = %q, want 65534 0 and the default set", got)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustRun(t, "mount", "--name", "suidm", "suid:1", mnt)
	t.Cleanup(func() { run(t, "umount", mnt) })
	for _, line := range strings.Split(readMounts(t), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == mnt && !strings.Contains(f[3], "nosuid") {
			t.Errorf("the host's mount lost nosuid: %s", line)
		}
	}
}

// TestContainerReviewFixes: what a review of the container verbs found.
func TestContainerReviewFixes(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)

	// A relative --mount source is the caller's, at create as at start from
	// elsewhere (it was resolved again in start's dir, binding another one).
	a := t.TempDir()
	os.MkdirAll(filepath.Join(a, "data"), 0o755)
	os.WriteFile(filepath.Join(a, "data", "f"), []byte("mine\n"), 0o644)
	if r := runWith(t, cmdOpts{dir: a}, "create", "--name", "rel", "--mount", "type=bind,source=./data,target=/d", "busybox", "cat", "/d/f"); r.Code != 0 {
		t.Fatalf("create: %d %s", r.Code, r.Stderr)
	}
	if r := runWith(t, cmdOpts{dir: "/"}, "start", "-a", "rel"); r.Code != 0 || r.Stdout != "mine\n" {
		t.Errorf("start from / of a relative --mount: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := runWith(t, cmdOpts{dir: a}, "run", "-d", "--name", "reld", "--mount", "type=bind,src=data,dst=/d", "busybox", "cat", "/d/f"); r.Code != 0 {
		t.Errorf("run -d with a relative --mount: %d %s", r.Code, r.Stderr)
	}
	if got := mustRun(t, "wait", "reld"); got != "0\n" {
		t.Errorf("wait reld = %q", got)
	}

	// restart of a --rm container keeps it, as docker's does.
	mustRun(t, "run", "-d", "--rm", "--name", "rr", "busybox", "sleep", "600")
	if got := mustRun(t, "restart", "-t", "0", "rr"); got != "rr\n" {
		t.Errorf("restart rr printed %q", got)
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}}", "rr"); got != "running\n" {
		t.Errorf("rr after restart: %q", got)
	}
	// kill returns once the container is stopped and unmounted: rm right after.
	mustRun(t, "kill", "rr")
	if r := run(t, "inspect", "rr"); r.Code == 0 {
		t.Errorf("a --rm container is still there after kill returned")
	}

	// IDs work for every verb, which print them as typed; ps shows them (short,
	// or full with --no-trunc); ps's .State and name= are docker's.
	full := strings.TrimSpace(mustRun(t, "run", "-d", "--name", "byid", "busybox", "sleep", "600"))
	id := full[:12]
	if got := mustRun(t, "exec", id, "echo", "in"); got != "in\n" {
		t.Errorf("exec by ID = %q", got)
	}
	if got := mustRun(t, "ps", "-a", "--no-trunc", "-q", "-f", "name=byid"); got != full+"\n" {
		t.Errorf("ps --no-trunc -q = %q, want %s", got, full)
	}
	if got := mustRun(t, "ps", "-a", "--format", "{{.ID}}", "-f", "name=byid"); got != id+"\n" {
		t.Errorf("ps --format {{.ID}} = %q, want %s", got, id)
	}
	if got := strings.Split(mustRun(t, "ps", "-a", "-f", "name=byid"), "\n"); len(got) < 2 || !strings.HasPrefix(got[0], "CONTAINER ID ") || !strings.HasPrefix(got[1], id+" ") {
		t.Errorf("ps = %q, want docker's CONTAINER ID column first", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "name=^/byid$", "--format", "{{.Names}} {{.State}}"); got != "byid running\n" {
		t.Errorf("ps -f name=^/byid$ = %q", got)
	}
	if got := mustRun(t, "stop", "-t", "0", id); got != id+"\n" {
		t.Errorf("stop by ID printed %q", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "name=byid", "--format", "{{.State}}"); got != "exited\n" {
		t.Errorf("ps .State after stop = %q", got)
	}
	if got := mustRun(t, "start", id); got != id+"\n" {
		t.Errorf("start by ID printed %q, want the ID as typed", got)
	}
	if got := mustRun(t, "restart", "-t", "0", full[:8]); got != full[:8]+"\n" {
		t.Errorf("restart by ID prefix printed %q, want the prefix as typed", got)
	}
	if got := mustRun(t, "rm", "-f", id); got != id+"\n" {
		t.Errorf("rm -f by ID printed %q", got)
	}
	if r := run(t, "inspect", "byid"); r.Code == 0 {
		t.Errorf("rm -f by ID left the container")
	}

	// --tmpfs is nosuid,nodev,noexec unless told; mounts go parents first;
	// a doubled mount point is refused.
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "f"), []byte("sub\n"), 0o644)
	out := mustRun(t, "run", "--rm", "-v", host+":/mnt/x/sub", "--tmpfs", "/mnt/x", "--tmpfs", "/e:exec", "busybox", "sh", "-c",
		"cat /mnt/x/sub/f; grep ' /mnt/x ' /proc/mounts; grep ' /e ' /proc/mounts")
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || lines[0] != "sub" || !strings.Contains(lines[1], "nosuid,nodev,noexec") || strings.Contains(lines[2], "noexec") {
		t.Errorf("tmpfs and mount order: %q", out)
	}
	if r := run(t, "run", "--rm", "-v", host+":/m", "--tmpfs", "/m", "busybox", "true"); r.Code != 125 || !strings.Contains(r.Stderr, "duplicate mount point: /m") {
		t.Errorf("a doubled mount point: exit %d, %q", r.Code, r.Stderr)
	}

	// create checks its options as run does.
	if r := run(t, "create", "--network", "bogus", "busybox"); r.Code != 125 || !strings.Contains(r.Stderr, `"bogus" for "--network"`) {
		t.Errorf("create --network bogus: exit %d, %q", r.Code, r.Stderr)
	}

	// wait on a created container waits for its start.
	mustRun(t, "create", "--name", "later", "busybox", "sh", "-c", "exit 4")
	waited := make(chan result, 1)
	go func() { waited <- run(t, "wait", "later") }()
	time.Sleep(300 * time.Millisecond)
	mustRun(t, "start", "later")
	select {
	case r := <-waited:
		if r.Stdout != "4\n" {
			t.Errorf("wait of a created container: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wait of a created container did not return after its start")
	}

	// A container from before IDs (none in state.json) keeps its derived ID
	// through a rename.
	mustRun(t, "create", "--name", "old", "busybox", "true")
	statePath := filepath.Join(rootFor(t), "work", "old", "state.json")
	var st map[string]any
	b, _ := os.ReadFile(statePath)
	json.Unmarshal(b, &st)
	delete(st, "id")
	b, _ = json.Marshal(st)
	os.WriteFile(statePath, b, 0o600)
	before := mustRun(t, "inspect", "-f", "{{.Id}}", "old")
	mustRun(t, "rename", "old", "older")
	if after := mustRun(t, "inspect", "-f", "{{.Id}}", "older"); after != before {
		t.Errorf("a derived ID changed with a rename: %q, then %q", before, after)
	}
}

// TestExecDetachedAndEnvFile: exec -d returns at once and leaves the command
// running (its -e values not on any command line); exec --env-file reads
// docker's env file format, -e wins.
func TestExecDetachedAndEnvFile(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "-d", "--name", "ex", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "ex") })
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("A=file\nB=file\n"), 0o644)
	start := time.Now()
	if got := mustRun(t, "exec", "-d", "--env-file", envFile, "-e", "B=s3cret-flag", "ex", "sh", "-c", "echo $A $B > /tmp/out; sleep 600"); got != "" {
		t.Errorf("exec -d printed %q", got)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("exec -d took %v: it waited for the command", took)
	}
	waitFor(t, "exec -d's command to write", func() bool { return run(t, "exec", "ex", "cat", "/tmp/out").Code == 0 })
	if got := mustRun(t, "exec", "ex", "cat", "/tmp/out"); got != "file s3cret-flag\n" {
		t.Errorf("exec -d's output = %q", got)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(b), "s3cret-flag") {
			t.Errorf("an -e value is on a command line: pid %s: %q", e.Name(), b)
		}
	}
	// An fd the caller leaves open does not stay open in the detached child:
	// a reader of it sees its end now, not when the command ends.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(layerfsBin, "--root", rootFor(t), "exec", "-d", "ex", "sleep", "600")
	c.ExtraFiles = []*os.File{pw}
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	eof := make(chan struct{})
	go func() { io.ReadAll(pr); close(eof) }()
	select {
	case <-eof:
	case <-time.After(10 * time.Second):
		t.Errorf("an fd the caller left open stays open in exec -d's child")
	}
	pr.Close()

	// A command that cannot start is exec's error and exit code, as in the
	// foreground.
	if r := run(t, "exec", "-d", "ex", "nosuchcmd"); r.Code != 127 || !strings.Contains(r.Stderr, "nosuchcmd") {
		t.Errorf("exec -d nosuchcmd: exit %d, %q", r.Code, r.Stderr)
	}
}

// TestRmRunningAndJustEnded: rm of a container whose command runs says so, as
// docker's (it said "mounted at ...: umount it first"); rm right after a
// detached short command ended waits for its unmount instead of refusing.
func TestRmRunningAndJustEnded(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "-d", "--name", "rr1", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "rr1") })
	if r := run(t, "rm", "rr1"); r.Code == 0 || !strings.Contains(r.Stderr, "container is running: stop the container before removing or force remove") {
		t.Errorf("rm of a running container: exit %d, %q", r.Code, r.Stderr)
	}
	// A command that just ended: run.json still names it (dead) while its run
	// unmounts; rm waits for that instead of refusing a mounted container.
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustRun(t, "mount", "--name", "rr-ending", "busybox", mnt)
	t.Cleanup(func() { run(t, "rm", "-f", "rr-ending") })
	runJSON := filepath.Join(rootFor(t), "work", "rr-ending", "run.json")
	if err := os.WriteFile(runJSON, []byte(`{"id":"x","pid":999999999,"startTime":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	unmounted := make(chan result, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // the run's unmount, a moment later
		r := run(t, "umount", mnt)
		os.Remove(runJSON)
		unmounted <- r
	}()
	if r := run(t, "rm", "rr-ending"); r.Code != 0 {
		t.Errorf("rm while a just-ended run unmounts: exit %d, %q", r.Code, r.Stderr)
	}
	if r := <-unmounted; r.Code != 0 {
		t.Errorf("umount: exit %d, %q", r.Code, r.Stderr)
	}
}

// TestDetachedStartFailure: run -d and start of a command that cannot start
// fail as docker's do (127 no such command, 125 no such user; start exits 1),
// with the error on stderr, not only in the log; the container stays created
// with docker's State.Error (found by a review: exit 0 and the name printed).
func TestDetachedStartFailure(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "df1", "df2", "df3") })
	// As docker's, run -d prints the ID of the container it made, then the error.
	r := run(t, "run", "-d", "--name", "df1", "busybox", "/nope")
	if r.Code != 127 || r.Stdout != containerIDIn(t, "", "df1")+"\n" || !strings.Contains(r.Stderr, `"/nope"`) || strings.Count(r.Stderr, "\n") != 1 {
		t.Errorf("run -d /nope: exit %d, stdout %q, stderr %q; want 127, the ID and the error", r.Code, r.Stdout, r.Stderr)
	}
	// With --rm too, though the container is gone by the time the error comes.
	if r := run(t, "run", "-d", "--rm", "busybox", "/nope"); r.Code != 127 || !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(r.Stdout) || !strings.Contains(r.Stderr, `"/nope"`) {
		t.Errorf("run -d --rm /nope: exit %d, stdout %q, stderr %q; want 127, an ID and the error", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}", "df1"); !strings.HasPrefix(got, "created 127 ") || !strings.Contains(got, "/nope") {
		t.Errorf("the container of a failed run -d: %q, want created 127 and the error", got)
	}
	if r := run(t, "run", "-d", "--name", "df2", "-u", "nosuch", "busybox", "true"); r.Code != 125 || !strings.Contains(r.Stderr, "nosuch") {
		t.Errorf("run -d -u nosuch: exit %d, stderr %q; want 125", r.Code, r.Stderr)
	}
	mustRun(t, "create", "--name", "df3", "busybox", "/nope")
	if r := run(t, "start", "df3"); r.Code != 1 || r.Stdout != "" || !strings.Contains(r.Stderr, `"/nope"`) || strings.Contains(r.Stderr, "exit status") {
		t.Errorf("start of /nope: exit %d, stdout %q, stderr %q; want 1 and the error", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "ps", "-a", "--filter", "status=created", "--format", "{{.Names}}"); !strings.Contains(got, "df3") || !strings.Contains(got, "df1") {
		t.Errorf("ps --filter status=created = %q", got)
	}
}
