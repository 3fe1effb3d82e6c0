package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// runnerTar is a fuller busybox rootfs than busyboxRootfs (every applet linked,
// /proc /dev /sys /root /home and an /etc/passwd and /etc/group), for run and build.
func runnerTar(t testing.TB) string {
	t.Helper()
	runnerOnce.Do(func() {
		bb, err := exec.LookPath("busybox")
		if err != nil {
			bb = "/bin/busybox"
		}
		dir, err := os.MkdirTemp(workDir, "runner-")
		if err != nil {
			runnerErr = err
			return
		}
		rootfs := filepath.Join(dir, "rootfs")
		for _, d := range []string{"bin", "etc", "tmp", "proc", "dev", "sys", "root", "home", "usr/local"} {
			os.MkdirAll(filepath.Join(rootfs, d), 0o755)
		}
		os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777)
		data, err := os.ReadFile(bb)
		if err != nil {
			runnerErr = err
			return
		}
		os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755)
		out, err := exec.Command(bb, "--list").Output()
		if err != nil {
			runnerErr = err
			return
		}
		for _, app := range strings.Fields(string(out)) {
			if app != "busybox" {
				os.Symlink("busybox", filepath.Join(rootfs, "bin", app))
			}
		}
		os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
		os.WriteFile(filepath.Join(rootfs, "etc", "group"), []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
		runnerTarPath = filepath.Join(dir, "rootfs.tar")
		out, err = exec.Command("tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C", rootfs, "-cf", runnerTarPath, ".").CombinedOutput()
		if err != nil {
			runnerErr = fmt.Errorf("tar: %v: %s", err, out)
		}
	})
	if runnerErr != nil {
		t.Fatalf("busybox rootfs: %v", runnerErr)
	}
	return runnerTarPath
}

var (
	runnerOnce    sync.Once
	runnerTarPath string
	runnerErr     error
)

// importRunner imports the full busybox rootfs as ref with the given changes.
func importRunner(t testing.TB, ref string, changes ...string) {
	t.Helper()
	args := []string{"import", "-q"}
	for _, c := range changes {
		args = append(args, "-c", c)
	}
	mustRun(t, append(args, runnerTar(t), ref)...)
}

// requireRunner skips unless FUSE and root are there, and makes sure no mount the
// test's root made outlives it.
func requireRunner(t *testing.T) {
	t.Helper()
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root := rootFor(t)
	t.Cleanup(func() {
		for _, line := range strings.Split(readMounts(t), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && strings.HasPrefix(f[0], "layerfs:") && strings.Contains(line, "layerfs-run-") {
				// a run's mount of this test's root: umount by name
				name := strings.TrimPrefix(f[0], "layerfs:")
				runWith(t, cmdOpts{root: root}, "umount", name)
			}
		}
	})
}

func readMounts(t testing.TB) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// buildMounts returns the build mounts (fs.Options.FsName "layerfs:build") under the
// store root root: not those of other tests' stores, which may build meanwhile (go
// test runs packages in parallel).
func buildMounts(t testing.TB, root string) []string {
	var ms []string
	for _, line := range strings.Split(readMounts(t), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "layerfs:build" && strings.HasPrefix(f[1], root+"/") {
			ms = append(ms, f[1])
		}
	}
	return ms
}

// startRun starts `layerfs run` in the background and waits until its container
// runs (work/<name>/run.json names its pid 1).
func startRun(t *testing.T, name string, args ...string) (*exec.Cmd, *bytes.Buffer, int) {
	t.Helper()
	root := rootFor(t)
	cmd := exec.Command(layerfsBin, append([]string{"--root", root, "run", "--name", name}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(root, "work", name, "run.json"))
		if err == nil {
			var rs struct{ Pid int }
			if json.Unmarshal(b, &rs) == nil && rs.Pid > 0 {
				return cmd, &out, rs.Pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("run %s did not start: %s", name, out.String())
	return nil, nil, 0
}

func exitCodeOf(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("run did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

func TestRunContainer(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`, "ENV GREETING=hello", "WORKDIR /srv/app")
	hostname, _ := os.ReadFile("/etc/hostname")
	root := rootFor(t)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"exit code", []string{"busybox", "sh", "-c", "exit 42"}, 42, ""},
		{"env and workdir from config", []string{"busybox", "sh", "-c", "echo $GREETING $PWD"}, 0, "hello /srv/app\n"},
		{"flags override config", []string{"-e", "GREETING=bye", "-e", "EXTRA=1", "-w", "/tmp", "-u", "65534", "busybox", "sh", "-c", "echo $GREETING $EXTRA $PWD $(id -u) $(id -g)"}, 0, "bye 1 /tmp 65534 65534\n"},
		{"pid 1", []string{"busybox", "sh", "-c", "echo $$"}, 0, "1\n"},
		{"own pid namespace", []string{"busybox", "sh", "-c", "cat /proc/1/comm; true"}, 0, "sh\n"},
		{"hostname", []string{"--hostname", "box1", "busybox", "hostname"}, 0, "box1\n"},
		{"etc files", []string{"--hostname", "box2", "busybox", "sh", "-c", "cat /etc/hostname; test -f /etc/hosts -a -f /etc/resolv.conf && echo ok"}, 0, "box2\nok\n"},
		{"dev and sys", []string{"busybox", "sh", "-c", "ls /dev/null /dev/zero /dev/urandom /dev/shm /dev/pts >/dev/null && ! touch /sys/x 2>/dev/null && echo ok"}, 0, "ok\n"},
		{"default cmd", []string{"-i", "busybox"}, 0, ""},
		{"entrypoint", []string{"--entrypoint", "echo", "busybox", "a", "b"}, 0, "a b\n"},
		{"not found", []string{"busybox", "nosuchcommand"}, 127, ""},
		{"signal exit", []string{"busybox", "sh", "-c", "sh -c 'kill -9 $$'; echo $?"}, 0, "137\n"},
		{"killed by a signal it handles", []string{"--init", "busybox", "sh", "-c", "kill -TERM $$; sleep 1"}, 143, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(t, cmdOpts{root: root}, append([]string{"run", "--rm"}, tt.args...)...)
			if r.Code != tt.code {
				t.Errorf("run %q: exit %d, want %d (stderr %q)", tt.args, r.Code, tt.code, r.Stderr)
			}
			if tt.want != "" && r.Stdout != tt.want {
				t.Errorf("run %q: stdout %q, want %q", tt.args, r.Stdout, tt.want)
			}
		})
	}
	// --rm left nothing: no container, no mount.
	if out := mustRun(t, "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("after run --rm, ps -q = %q, want nothing", out)
	}
	// Run mounts of this store's root only: other stores may be running containers.
	h := sha256.Sum256([]byte(root))
	if m := readMounts(t); strings.Contains(m, "layerfs-run-"+hex.EncodeToString(h[:4])) {
		t.Errorf("a run mount is left:\n%s", m)
	}
	if h, _ := os.ReadFile("/etc/hostname"); !bytes.Equal(h, hostname) {
		t.Errorf("host /etc/hostname changed: %q -> %q", hostname, h)
	}
}

func TestRunBindMounts(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	rw, ro := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(rw, "in.txt"), []byte("from host\n"), 0o644)
	os.WriteFile(filepath.Join(ro, "keep.txt"), []byte("keep\n"), 0o644)

	r := run(t, "run", "--rm", "-v", rw+":/data", "-v", ro+":/ro:ro", "busybox", "sh", "-c",
		"cat /data/in.txt; echo out > /data/out.txt; echo x > /ro/keep.txt || echo refused")
	if r.Code != 0 || !strings.Contains(r.Stdout, "from host\n") || !strings.Contains(r.Stdout, "refused\n") {
		t.Fatalf("run with binds: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "out.txt")); err != nil || string(b) != "out\n" {
		t.Errorf("rw bind: out.txt = %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(ro, "keep.txt")); string(b) != "keep\n" {
		t.Errorf("ro bind was written: keep.txt = %q", b)
	}
	if r := run(t, "run", "--rm", "-v", "relative:/x", "busybox", "true"); r.Code == 0 {
		t.Errorf("a named volume was accepted")
	}
}

// TestRunHostUntouched: a container that wrecks its root changes its upper dir
// only; the image, the host and the next container do not see it.
func TestRunHostUntouched(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "--rm", "busybox", "true") // unpacks the layer
	layersBefore := snapshotDir(t, filepath.Join(rootFor(t), "layers"))
	mustRun(t, "run", "--name", "wreck", "--privileged", "busybox", "sh", "-c", "rm -rf /bin/cat /etc/passwd; echo root > /root/mark; mkdir /mnt; mount -t tmpfs none /mnt")
	if got := mustRun(t, "run", "--rm", "busybox", "sh", "-c", "cat /etc/passwd | head -1; ls /root"); got != "root:x:0:0:root:/root:/bin/sh\n" {
		t.Errorf("a new container sees the old one's changes: %q", got)
	}
	if after := snapshotDir(t, filepath.Join(rootFor(t), "layers")); after != layersBefore {
		t.Errorf("the image's layer dirs changed")
	}
	diff := mustRun(t, "diff", "wreck")
	for _, want := range []string{"D /bin/cat", "D /etc/passwd", "A /root/mark"} {
		if !strings.Contains(diff, want+"\n") {
			t.Errorf("diff wreck = %q, want a line %q", diff, want)
		}
	}
	if strings.Contains(readMounts(t), "tmpfs /mnt") {
		t.Errorf("the container's mount reached the host")
	}
	mustRun(t, "rm", "wreck")
}

// snapshotDir lists every path, mode, size and mtime under dir.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if strings.Contains(p, "/.locks") {
			return nil
		}
		fmt.Fprintf(&b, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	return b.String()
}

func TestRunKilledAndExec(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`, "ENV GREETING=hello", "WORKDIR /srv")
	cmd, out, pid := startRun(t, "sleeper", "busybox", "sleep", "60")

	got := mustRun(t, "exec", "sleeper", "sh", "-c", "echo $GREETING $PWD; cat /proc/1/cmdline | tr '\\0' ' '; echo; test $$ -ne 1 && echo notpid1")
	if got != "hello /srv\nsleep 60 \nnotpid1\n" {
		t.Errorf("exec = %q", got)
	}
	if r := run(t, "exec", "sleeper", "sh", "-c", "exit 9"); r.Code != 9 {
		t.Errorf("exec exit code = %d, want 9", r.Code)
	}
	if ps := mustRun(t, "ps", "-a"); !strings.Contains(ps, "sleeper") || !strings.Contains(ps, "   Up ") {
		t.Errorf("ps while running = %q", ps)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := exitCodeOf(t, cmd); code != 137 {
		t.Errorf("killed container: exit %d, want 137 (%s)", code, out)
	}
	if r := run(t, "exec", "sleeper", "true"); r.Code == 0 {
		t.Errorf("exec into a stopped container succeeded")
	}
	if r := run(t, "run", "--name", "sleeper", "busybox", "true"); r.Code == 0 || !strings.Contains(r.Stderr, "already in use") {
		t.Errorf("run with a used name: exit %d, stderr %q", r.Code, r.Stderr)
	}
	mustRun(t, "rm", "sleeper")
}

// TestRunCommit is the seeds' flow: run a container, change it, exit, commit.
func TestRunCommit(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "--name", "busy1", "-i", "busybox", "sh", "-c",
		"mkdir -p /data/html && echo '<h1>Busybox test page</h1>' > /data/html/index.html && rm /bin/vi")
	if got, want := mustRun(t, "diff", "busy1"), "C /bin\nD /bin/vi\nA /data\nA /data/html\nA /data/html/index.html\n"; got != want {
		t.Errorf("diff busy1 = %q, want %q", got, want)
	}
	mustRun(t, "commit", "-a", "Chenwj<cwj@cwj.com>", "-c", `CMD ["/bin/httpd","-f","-h","/data/html"]`, "busy1", "chenwenj/httpd:v2")
	if got := mustRun(t, "run", "--rm", "chenwenj/httpd:v2", "sh", "-c", "cat /data/html/index.html; ls /bin/vi 2>&1 || true"); !strings.HasPrefix(got, "<h1>Busybox test page</h1>\n") || !strings.Contains(got, "No such file") {
		t.Errorf("run of the committed image = %q", got)
	}
	var cfg struct{ Cmd []string }
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "--format", "{{json .Config}}", "chenwenj/httpd:v2")), &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Cmd, " ") != "/bin/httpd -f -h /data/html" {
		t.Errorf("committed Cmd = %q", cfg.Cmd)
	}
}

// TestRunMountpointsNotInDiff: /proc, /dev and /sys that an image lacks are made
// for the run and are not the container's changes.
func TestRunMountpointsNotInDiff(t *testing.T) {
	requireRunner(t)
	importBusybox(t, "small")
	mustRun(t, "run", "--name", "s1", "small", "sh", "-c", "echo x > /tmp/f")
	if got, want := mustRun(t, "diff", "s1"), "C /tmp\nA /tmp/f\n"; got != want {
		t.Errorf("diff s1 = %q, want %q", got, want)
	}
	mustRun(t, "rm", "s1")
}

// TestRunDetached is the seeds' `docker run -itd --name centos ...; docker exec ...`.
func TestRunDetached(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	// run -d prints the container's ID, the one it has (its hostname is its
	// first 12 digits, as docker's).
	id := mustRun(t, "run", "-itd", "--name", "d1", "-p", "8080:8080", "-P", "busybox") // -P: accepted, as -p
	if want := containerIDIn(t, "", "d1"); id != want+"\n" {
		t.Fatalf("run -itd printed %q, want d1's ID %s", id, want)
	}
	if got := mustRun(t, "exec", "d1", "sh", "-c", "cat /proc/1/comm; id -u; hostname"); got != "sh\n0\n"+id[:12]+"\n" {
		t.Errorf("exec in d1 = %q", got)
	}
	mustRun(t, "run", "-d", "--name", "d2", "busybox", "sh", "-c", "echo hello from d2; sleep 60")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(mustRun(t, "logs", "d2"), "hello from d2") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := mustRun(t, "logs", "d2"); got != "hello from d2\n" {
		t.Errorf("logs d2 = %q", got)
	}
	if got := mustRun(t, "stop", "-t", "1", "d1", "d2"); got != "d1\nd2\n" {
		t.Errorf("stop printed %q", got)
	}
	if ps := mustRun(t, "ps", "-a"); strings.Contains(ps, "   Up ") || strings.Count(ps, "   Exited (") != 2 {
		t.Errorf("ps after stop = %q", ps)
	}
	if r := run(t, "exec", "d1", "true"); r.Code == 0 {
		t.Errorf("exec into a stopped container succeeded")
	}
	// Stopping a stopped container is no error, as in docker (stop $(ps -q)
	// failed on every stopped one); a missing one still is.
	if got := mustRun(t, "stop", "d1"); got != "d1\n" {
		t.Errorf("stop of a stopped container printed %q", got)
	}
	if r := run(t, "stop", "nosuchcontainer"); r.Code == 0 {
		t.Errorf("stop of a missing container succeeded")
	}
	// A missing image is pulled first, as docker run does (Docker Hub is a
	// dead loopback port here); with --pull never it is just missing.
	if r := run(t, "run", "-d", "--name", "d3", "nosuch"); r.Code != 125 || !strings.Contains(r.Stderr, "Unable to find image 'nosuch:latest' locally\nError: pull nosuch:latest: registry ") {
		t.Errorf("run -d of a missing image: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if r := run(t, "run", "-d", "--pull", "never", "--name", "d3", "nosuch"); r.Code != 125 || !strings.Contains(r.Stderr, "No such image") {
		t.Errorf("run -d --pull never of a missing image: exit %d, stderr %q", r.Code, r.Stderr)
	}
	mustRun(t, "rm", "d1", "d2")

	// rm -f of a running container kills its process first, as docker rm -f does,
	// rather than finding the mount busy.
	mustRun(t, "run", "-d", "--name", "d4", "busybox", "sleep", "600")
	if r := run(t, "rm", "d4"); r.Code == 0 {
		t.Errorf("rm of a running container succeeded without -f")
	}
	mustRun(t, "rm", "-f", "d4")
	if ps := mustRun(t, "ps", "-a", "--format", "{{.Names}}"); strings.Contains(ps, "d4") {
		t.Errorf("ps after rm -f d4 = %q", ps)
	}
}

// TestRunTTY runs `run -it` under script(1), which gives it a terminal.
func TestRunTTY(t *testing.T) {
	requireRunner(t)
	script := testenv.RequireTool(t, "script")
	importRunner(t, "busybox", `CMD ["sh"]`)
	line := fmt.Sprintf("%s --root %s run --rm -it busybox", layerfsBin, rootFor(t))
	cmd := exec.Command(script, "-qec", line, "/dev/null")
	cmd.Stdin = strings.NewReader("test -t 0 && echo \"tty:$TERM:$(stty size)\"; exit 3\n")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 3 || !strings.Contains(string(out), "tty:xterm:") {
		t.Errorf("run -it under script: exit %d, output %q", code, out)
	}
}

// TestRunTTYContainerPts: run -t's terminal is one of the container's own
// devpts, as runc makes it: tty names /dev/pts/0 (it named /dev/console, the
// host's pty the fds pointed at not being there), /dev/console is that pty,
// and it has the caller's window size from the start.
func TestRunTTYContainerPts(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ptm, pts, err := openPty()
	if err != nil {
		t.Fatal(err)
	}
	defer ptm.Close()
	defer pts.Close()
	if err := unix.IoctlSetWinsize(int(pts.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 77}); err != nil {
		t.Fatal(err)
	}
	script := `echo "tty=$(tty) fd0=$(readlink /proc/self/fd/0) size=$(stty size)"; ls -lL /dev/console /proc/self/fd/0 | sed 's/.* \([0-9]*, *[0-9]*\) .*/\1/'`
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "run", "--rm", "-t", "busybox", "sh", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, ptm); close(copied) }()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	code := exitCodeOf(t, cmd)
	pts.Close()
	ptm.SetReadDeadline(time.Now().Add(5 * time.Second))
	<-copied
	got := strings.ReplaceAll(out.String(), "\r", "")
	if code != 0 || !strings.Contains(got, "tty=/dev/pts/0 fd0=/dev/pts/0 size=33 77\n") {
		t.Errorf("run -t: exit %d, %q; want tty and fd 0 /dev/pts/0, size 33 77", code, got)
	}
	if lines := strings.Split(strings.TrimSpace(got), "\n"); len(lines) < 3 || lines[len(lines)-1] != lines[len(lines)-2] {
		t.Errorf("run -t: /dev/console and fd 0 are not one device: %q", got)
	}
}

// TestTTYOwnedByUser: run -t's and exec -t's terminal belongs to the
// container's user, group tty, as runc makes it, so a user can open it again
// by name (it was root's: "can't create /dev/pts/0: Permission denied").
func TestTTYOwnedByUser(t *testing.T) {
	requireRunner(t)
	script := testenv.RequireTool(t, "script")
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "-d", "--name", "ttyu", "busybox", "sleep", "60")
	t.Cleanup(func() { run(t, "rm", "-f", "ttyu") })
	check := `T=$(tty); stat -c "%u:%g" $T; echo hi > $T && echo reopen-ok`
	for _, verb := range []string{"run --rm -t -u 1000 busybox", "exec -t -u 1000 ttyu"} {
		line := fmt.Sprintf("%s --root %s %s sh -c '%s'", layerfsBin, rootFor(t), verb, check)
		out, err := exec.Command(script, "-qec", line, "/dev/null").CombinedOutput()
		got := strings.ReplaceAll(string(out), "\r", "")
		if err != nil || !strings.Contains(got, "1000:5\n") || !strings.Contains(got, "reopen-ok") {
			t.Errorf("%s: %v, %q; want the terminal 1000:5 and opened again", verb, err, got)
		}
	}
}

// TestRunTTYSetupError: a container setup error that comes before its
// terminal is made (an image whose /proc is a file) still reaches run -t's
// user and the log, as it did when the terminal was the host's.
func TestRunTTYSetupError(t *testing.T) {
	requireRunner(t)
	script := testenv.RequireTool(t, "script")
	rootfs := t.TempDir()
	bb := filepath.Join(rootfs, "bin", "busybox")
	if err := os.MkdirAll(filepath.Dir(bb), 0o755); err != nil {
		t.Fatal(err)
	}
	bbHost, err := exec.LookPath("busybox")
	if err != nil {
		bbHost = "/bin/busybox"
	}
	b, err := os.ReadFile(bbHost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bb, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "proc"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "badproc.tar")
	if out, err := exec.Command("tar", "--numeric-owner", "--owner=0", "--group=0", "-C", rootfs, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	mustRun(t, "import", tarPath, "badproc:1")
	t.Cleanup(func() { run(t, "rm", "-f", "bp"); run(t, "rmi", "badproc:1") })
	line := fmt.Sprintf("%s --root %s run --name bp -t badproc:1 /bin/busybox true", layerfsBin, rootFor(t))
	out, err := exec.Command(script, "-qec", line, "/dev/null").CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 125 || !strings.Contains(string(out), "/proc") {
		t.Errorf("run -t of an image whose /proc is a file: exit %d, %q; want 125 and the error", code, out)
	}
	if got := mustRun(t, "logs", "bp"); !strings.Contains(got, "/proc") {
		t.Errorf("logs after the failed run -t = %q, want the error", got)
	}
}

// TestRunStart: a kept container runs its command again, on its own changes.
func TestRunStart(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	first := mustRun(t, "run", "--name", "again", "-e", "WHO=me", "busybox", "sh", "-c", "echo $WHO >> /root/log; hostname; wc -l < /root/log")
	second := mustRun(t, "start", "-a", "again")
	host := strings.SplitN(first, "\n", 2)[0]
	if second != host+"\n2\n" {
		t.Errorf("start -a = %q, want the same hostname %q and 2 log lines", second, host)
	}
	if got := mustRun(t, "start", "again"); got != "again\n" {
		t.Errorf("start printed %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(mustRun(t, "logs", "again"), "\n3\n") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := mustRun(t, "logs", "again"); !strings.HasSuffix(got, "\n3\n") {
		t.Errorf("logs after a detached start = %q", got)
	}
	// Right after stop, start runs the command again on the container's changes.
	mustRun(t, "run", "-d", "--name", "sleepy", "busybox", "sh", "-c", "test -f /root/ran && exit 5; touch /root/ran; sleep 60")
	if r := run(t, "start", "-a", "sleepy"); r.Code == 0 || !strings.Contains(r.Stderr, "already running") {
		t.Errorf("start -a of a running container: exit %d, stderr %q", r.Code, r.Stderr)
	}
	deadline = time.Now().Add(10 * time.Second)
	for run(t, "exec", "sleepy", "test", "-f", "/root/ran").Code != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	mustRun(t, "stop", "-t", "0", "sleepy")
	if r := run(t, "start", "-a", "sleepy"); r.Code != 5 {
		t.Errorf("start -a after stop: exit %d, want 5 (stderr %q)", r.Code, r.Stderr)
	}
	if r := run(t, "start", "-a", "nosuch"); r.Code == 0 {
		t.Errorf("start of a missing container succeeded")
	}
}

// TestRunForeignPlatformWarns: run of an image of another platform than the
// host's warns as docker run does (its programs will most likely fail with
// "exec format error"), and runs it all the same; an image of the host's, or
// a run with --platform given, says nothing (review rev23-oci: an index
// without the host's platform ran another's without a word).
func TestRunForeignPlatformWarns(t *testing.T) {
	requireRunner(t)
	other := "linux/arm64"
	if runtime.GOARCH == "arm64" {
		other = "linux/amd64"
	}
	// The host's busybox, recorded as the other platform's: it still runs.
	mustRun(t, "import", "-q", "--platform", other, busyboxRootfs(t), "foreign:1")
	importBusybox(t, "native:1")
	const warning = "WARNING: The requested image's platform ("
	r := run(t, "run", "--rm", "foreign:1", "sh", "-c", "exit 0")
	if r.Code != 0 || !strings.Contains(r.Stderr, warning+other+") does not match the detected host platform (linux/"+runtime.GOARCH+")") {
		t.Errorf("run of a %s image: exit %d, stderr %q; want docker's platform warning", other, r.Code, r.Stderr)
	}
	if r := run(t, "run", "--rm", "native:1", "sh", "-c", "exit 0"); r.Code != 0 || strings.Contains(r.Stderr, "WARNING") {
		t.Errorf("run of a host-platform image: exit %d, stderr %q; want no warning", r.Code, r.Stderr)
	}
}
