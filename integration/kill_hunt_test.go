package integration

// Killed-process hunt: what a SIGKILLed command left behind. Each test is the
// reproduction of one bug found by killing commands part-way (strace's syscall
// fault injection, or a signal at a chosen moment).

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestKillBuildDuringRun: a build killed (SIGKILL) during a RUN takes the RUN's
// command with it, its step mount goes, and the step dir it leaves is cleared by
// gc and by the next build. Before, the command ran on (reparented to init) and
// the dead FUSE mount stayed at <root>/tmp/step-*/rootfs for good.
func TestKillBuildDuringRun(t *testing.T) {
	// As root and as another user: changing credentials clears the parent-death
	// signal, so the init sets it again after (a RUN as USER 1000 outlived the
	// killed build; found by a review).
	for _, user := range []string{"", "USER 1000\n"} {
		t.Run(map[string]string{"": "root", "USER 1000\n": "user"}[user], func(t *testing.T) {
			requireRunner(t)
			importRunner(t, "busybox", `CMD ["sh"]`)
			root := rootFor(t)
			ctx := t.TempDir()
			writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\n" + user + "RUN sleep 30\n"})
			cmd := startBuildToRun(t, root, ctx)
			var child int
			// The command itself, not the container's init before its exec (which
			// still holds the build's fds until then) nor the build's forked child
			// before it execs the init: both run the layerfs binary (the second
			// with the build's own comm, which the comm check passed: a CI flake).
			self, err := filepath.EvalSymlinks(layerfsBin)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the RUN's process", func() bool {
				child = childOf(cmd.Process.Pid)
				if child <= 0 {
					return false
				}
				exe, err := os.Readlink("/proc/" + strconv.Itoa(child) + "/exe")
				return err == nil && exe != self && !strings.HasPrefix(exe, self+" ")
			})
			for _, fd := range openFiles(child) {
				if fd == "/dev/fuse" {
					t.Errorf("the RUN's command holds %s open", fd)
				}
			}
			cmd.Process.Kill()
			cmd.Wait()
			t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })

			deadline := time.Now().Add(5 * time.Second)
			for processAlive(child) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if processAlive(child) {
				t.Errorf("the RUN's command (pid %d) outlived the killed build", child)
			}
			// The step mount's server (a process of its own) sees the build
			// gone and takes the mount down; the step dir is gc's.
			waitFor(t, "the killed build's mounts to go", func() bool { return len(buildMounts(t, root)) == 0 })
			if got := mustRun(t, "gc"); !strings.Contains(got, "leftover temporary file") {
				t.Errorf("gc after a killed build = %q, want it to clear the step", got)
			}
			if ms := buildMounts(t, root); len(ms) > 0 {
				t.Errorf("after gc the killed build's mounts are still there: %v", ms)
			}
			if ents, _ := filepath.Glob(filepath.Join(root, "tmp", "step-*")); len(ents) > 0 {
				t.Errorf("after gc the killed build's step dirs are still there: %v", ents)
			}
		})
	}
}

// TestKillBuildDuringCopy: a build killed while its COPY writes through the step
// mount ends, and leaves nothing in the way: the mount's server, a process of
// its own, sees the build gone and takes the mount down, and gc runs. Served by
// the build itself, a kill that came while one of its threads waited on its own
// mount left a process that could never end (the kernel waits for the answer,
// and the /dev/fuse fd that would abort it was that process's): it kept its
// store lease, so gc waited for good, and its mount hung every access (found by
// the crash review: 1 kill in 3).
func TestKillBuildDuringCopy(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	importRunner(t, "busybox")
	root := rootFor(t)
	t.Cleanup(func() {
		for _, m := range buildMounts(t, root) {
			exec.Command("umount", "-f", m).Run() // aborts a hung connection
			exec.Command("umount", "-l", m).Run()
		}
	})
	ctx := t.TempDir()
	files := map[string]string{"Dockerfile": "FROM busybox\nCOPY many /many\n"}
	for i := range 3000 {
		files[fmt.Sprintf("many/%d", i)] = strconv.Itoa(i)
	}
	writeFiles(t, ctx, files)
	for try := range 4 {
		cmd := exec.Command(layerfsBin, "--root", root, "build", "-q", "--no-cache", ctx)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it once the COPY is well under way (and at a different point
		// in each try).
		waitFor(t, "the COPY", func() bool {
			ents, _ := filepath.Glob(filepath.Join(root, "tmp", "step-*", "upper", "many", "*"))
			return len(ents) > 200+400*try
		})
		cmd.Process.Kill()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("try %d: the killed build (pid %d) did not end in 20s", try, cmd.Process.Pid)
		}
		waitFor(t, "the killed build's mounts to go", func() bool { return len(buildMounts(t, root)) == 0 })
	}
	gc := exec.Command(layerfsBin, "--root", root, "gc")
	gc.WaitDelay = time.Second
	done := make(chan error, 1)
	if err := gc.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- gc.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("gc after killed builds: %v", err)
		}
	case <-time.After(30 * time.Second):
		gc.Process.Kill()
		t.Errorf("gc after killed builds waited 30s")
	}
	if ents, _ := filepath.Glob(filepath.Join(root, "tmp", "step-*")); len(ents) > 0 {
		t.Errorf("after gc the killed builds' step dirs are still there: %v", ents)
	}
}

// TestKillBuildNextBuildClears: the next build clears what a killed build left.
func TestKillBuildNextBuildClears(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	root := rootFor(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nRUN sleep 30\n", "Dockerfile.ok": "FROM busybox\nRUN echo ok > /ok\n"})
	cmd := startBuildToRun(t, root, ctx)
	waitFor(t, "the RUN's process", func() bool { return childOf(cmd.Process.Pid) > 0 })
	cmd.Process.Kill()
	cmd.Wait()
	if ents, _ := filepath.Glob(filepath.Join(root, "tmp", "step-*")); len(ents) == 0 {
		t.Fatalf("the killed build left no step dir: nothing to check")
	}
	mustRun(t, "build", "-q", "-f", filepath.Join(ctx, "Dockerfile.ok"), ctx)
	if ms := buildMounts(t, root); len(ms) > 0 {
		t.Errorf("after the next build the killed build's mounts are still there: %v", ms)
	}
	if ents, _ := filepath.Glob(filepath.Join(root, "tmp", "step-*")); len(ents) > 0 {
		t.Errorf("after the next build the killed build's step dirs are still there: %v", ents)
	}
}

// TestKillContainerLeftovers: what killed container commands leave in work/ goes
// with gc. An rm killed after it removed state.json (its first step) leaves a dir
// no command sees (ps skips it, rm says "No such container") holding the whole
// upper dir; a commit --rebase killed after the swap leaves the old upper dir,
// one killed before it the new one; a state.json write killed before its rename
// leaves the temp file. Before, gc kept them all, for good.
func TestKillContainerLeftovers(t *testing.T) {
	e := newMountEnv(t)
	root := rootFor(t)
	dir := e.dir()
	for _, name := range []string{"gone", "kept"} {
		e.ok("mount", "--name", name, e.image, dir)
		if err := os.WriteFile(filepath.Join(dir, "blob"), make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		e.ok("umount", dir)
	}
	// The rm of "gone" killed after its first step.
	if err := os.Remove(filepath.Join(root, "work", "gone", "state.json")); err != nil {
		t.Fatal(err)
	}
	e.fails("No such container", "rm", "gone")
	// "kept", mounted again, with a rebase's and a state write's leftovers.
	e.ok("mount", "--name", "kept", dir)
	kept := filepath.Join(root, "work", "kept")
	for _, d := range []string{"upper-123", "upper-456/etc"} {
		if err := os.MkdirAll(filepath.Join(kept, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(kept, ".state.json.tmp789"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}

	names := func() string {
		ents, _ := os.ReadDir(kept)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return strings.Join(names, " ")
	}

	// While kept's server runs, its uppers and state files are left alone: a
	// Rebase it serves switches to a new upper before it saves state.json, for a
	// commit that may have died meanwhile (found by a review: gc deleted the
	// upper a live mount had just switched to).
	if got := mustRun(t, "gc"); !strings.Contains(got, "Deleted: 1 leftover temporary file(s)") {
		t.Errorf("gc = %q, want 1 leftover deleted (gone's dir)", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "work", "gone")); !os.IsNotExist(err) {
		t.Errorf("after gc the half-removed container's dir: %v, want it gone", err)
	}
	if got := names(); !strings.Contains(got, "upper-123") || !strings.Contains(got, ".state.json.tmp789") {
		t.Errorf("gc with kept mounted left its dir holding %q, want the extra uppers and state file kept", got)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "blob")); err != nil || len(b) != 1<<20 {
		t.Errorf("after gc the mounted container's file: %d bytes, %v", len(b), err)
	}
	if got := e.psField("kept", "Mount"); got != "mounted" {
		t.Errorf("after gc kept is %q, want mounted", got)
	}

	e.ok("umount", dir)
	if got := mustRun(t, "gc"); !strings.Contains(got, "Deleted: 3 leftover temporary file(s)") {
		t.Errorf("gc = %q, want 3 leftovers deleted", got)
	}
	if got := names(); strings.Contains(got, "upper-") || strings.Contains(got, ".tmp") || !strings.Contains(got, "upper") {
		t.Errorf("after gc the container dir holds %q, want its upper dir and no leftovers", got)
	}
	e.ok("mount", "--name", "kept", dir)
	if b, err := os.ReadFile(filepath.Join(dir, "blob")); err != nil || len(b) != 1<<20 {
		t.Errorf("after gc and a mount the container's file: %d bytes, %v", len(b), err)
	}
	e.ok("umount", dir)
}

// TestKillMountBeforeMounted: a mount without --name killed while it unpacks
// layers (held here at the layer's fill lock) leaves a container that never
// mounted and holds no change. The next mount takes its name over, and gc removes
// one that is left. Before, every later mount of the image was named ...-1, and
// the empty container stayed in ps for good.
func TestKillMountBeforeMounted(t *testing.T) {
	e := newMountEnv(t)
	root := rootFor(t)
	var cfg struct{ RootFS struct{ Layers []string } }
	if err := json.Unmarshal([]byte(e.ok("inspect", "--format", "{{json .}}", e.image)), &cfg); err != nil || len(cfg.RootFS.Layers) != 1 {
		t.Fatalf("inspect: %v (%+v)", err, cfg)
	}
	hex := strings.TrimPrefix(cfg.RootFS.Layers[0], "sha256:")
	const name = "busybox-working-container"

	killedMount := func() {
		t.Helper()
		locks := filepath.Join(root, "layers", ".locks")
		if err := os.MkdirAll(locks, 0o700); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(filepath.Join(locks, hex+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(layerfsBin, "--root", root, "mount", e.image, e.dir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the mount to create its container", func() bool {
			_, err := os.Stat(filepath.Join(root, "work", name, "state.json"))
			return err == nil
		})
		time.Sleep(50 * time.Millisecond) // let it reach the lock
		cmd.Process.Kill()
		cmd.Wait()
	}

	killedMount()
	if got := e.psField(name, "Mount"); got == "" {
		t.Fatalf("the killed mount left no container %s: nothing to check", name)
	}
	dir := e.dir()
	if got := strings.TrimSpace(e.ok("mount", e.image, dir)); got != name {
		t.Errorf("the mount after a killed one made %q, want %q taken over", got, name)
	}
	e.ok("umount", dir)
	if got := e.psField(name, "Mount"); got != "unmounted" {
		t.Errorf("after mount and umount %s is %q, want unmounted", name, got)
	}
	e.ok("rm", name)
	if err := os.RemoveAll(filepath.Join(root, "layers", hex)); err != nil { // unpacked again
		t.Fatal(err)
	}
	killedMount()
	if got := mustRun(t, "gc", "--dry-run"); !strings.Contains(got, "Would delete: 1 abandoned working container(s)\n") ||
		strings.Contains(got, "temporary file") {
		t.Errorf("gc --dry-run after a killed mount = %q, want 1 abandoned working container and no temporary files", got)
	}
	if got := mustRun(t, "gc"); !strings.Contains(got, "Deleted: 1 abandoned working container(s)\n") ||
		strings.Contains(got, "temporary file") {
		t.Errorf("gc after a killed mount = %q, want 1 abandoned working container removed and no temporary files", got)
	}
	if got := e.psField(name, "Mount"); got != "" {
		t.Errorf("after gc the killed mount's container is %q, want it gone", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "work", name)); !os.IsNotExist(err) {
		t.Errorf("after gc the killed mount's container dir: %v, want it gone", err)
	}

	// run --name takes the name over too, where a container in use is a conflict
	// (found by a review: run's conflict check came first).
	requireRunner(t)
	killedMount()
	if res := run(t, "run", "--rm", "--name", name, e.image, "sh", "-c", ":"); res.Code != 0 {
		t.Errorf("run --name %s after a killed mount: exit %d: %s", name, res.Code, res.Stderr)
	}
}

// childOf is the first child of pid, forked by any of its threads, other than
// a build's step mount server (0 if none).
func childOf(pid int) int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(f)
			// Not the server of the build's step mount (build.StepMountCommand).
			if cmdline, _ := os.ReadFile("/proc/" + f + "/cmdline"); n > 0 && !strings.Contains(string(cmdline), "\x00__build-mount") {
				return n
			}
		}
	}
	return 0
}

// openFiles lists what pid's fds point at.
func openFiles(pid int) []string {
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	var out []string
	for _, e := range ents {
		if p, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + e.Name()); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// processAlive reports whether pid runs (a zombie is dead).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// outputFile is a file for a child's output: unlike a pipe, one its orphans keep
// open does not hold up Wait.
func outputFile(t *testing.T) *os.File {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func fileText(f *os.File) string {
	b, _ := os.ReadFile(f.Name())
	return string(b)
}

// TestCommitRebaseSaveFails: a commit --rebase whose server cannot save
// state.json after switching the mount (a full disk, injected with strace) goes
// back to the old stack: the commit says so and fails, the image stays committed,
// and the writes made after it land where state.json says, so a remount shows
// them. Before, the server ran on the new upper with state.json naming the old,
// and the commit removed the new upper under it (found by a review): every later
// write failed with ENOENT.
func TestCommitRebaseSaveFails(t *testing.T) {
	strace := testenv.RequireTool(t, "strace")
	e := newMountEnv(t)
	root := rootFor(t)
	dir := e.dir()
	e.ok("mount", "--name", "c1", e.image, dir)
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st struct {
		PID int `json:"pid"`
	}
	b, err := os.ReadFile(filepath.Join(root, "work", "c1", "state.json"))
	if err != nil || json.Unmarshal(b, &st) != nil || st.PID == 0 {
		t.Fatalf("state.json: %v %s", err, b)
	}
	tr := exec.Command(strace, "-f", "-qq", "-o", "/dev/null", "-p", strconv.Itoa(st.PID),
		"-P", filepath.Join(root, "work", "c1", "state.json"),
		"-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:error=ENOSPC")
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Process.Kill(); tr.Wait() })
	waitFor(t, "strace to attach", func() bool {
		s, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID))
		return strings.Contains(string(s), "TracerPid:\t"+strconv.Itoa(tr.Process.Pid))
	})
	out := e.fails("not rebased", "commit", "--rebase", "c1", "img:2")
	if !strings.Contains(out, "committed sha256:") {
		t.Errorf("commit's error %q does not say the image was committed", out)
	}
	tr.Process.Kill()
	tr.Wait()

	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("b\n"), 0o644); err != nil {
		t.Fatalf("write after the failed rebase: %v", err)
	}
	e.ok("umount", dir)
	e.ok("mount", "--name", "c1", dir)
	for _, f := range []string{"a", "b"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after a remount: %v", err)
		}
	}
	e.ok("umount", dir)
	ents, _ := filepath.Glob(filepath.Join(root, "work", "c1", "upper-*"))
	if len(ents) > 0 {
		t.Errorf("the new upper of the failed rebase is left: %v", ents)
	}
}

// startBuildToRun starts `build -t k ctx` in root and returns once its RUN step
// runs; the mounts a killed build leaves are detached in Cleanup.
func startBuildToRun(t *testing.T, root, ctx string) *exec.Cmd {
	t.Helper()
	t.Cleanup(func() {
		for _, m := range buildMounts(t, root) {
			exec.Command("umount", "-l", m).Run()
		}
	})
	cmd := exec.Command(layerfsBin, "--root", root, "build", "-t", "k", ctx)
	out := outputFile(t)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the RUN step", func() bool { return strings.Contains(fileText(out), "Running in") })
	return cmd
}

// TestGCWaitingForLeaseStopsOnInterrupt: an rmi whose collection waits for a
// command holding the store (here flock(1) in a lease's place) says who it waits
// for, and ^C ends it (exit 130) with the image removed and its space left to
// the next gc. Its blocked flock(2) restarted after every signal: it waited for
// good, deaf to ^C and SIGTERM (found by the crash review).
func TestGCWaitingForLeaseStopsOnInterrupt(t *testing.T) {
	root := rootFor(t)
	mustRun(t, "import", "-q", busyboxRootfs(t), "victim:1")
	// -o: flock itself holds the lock (not its sleep), its group goes at the end.
	lease := exec.Command("flock", "-s", "-o", filepath.Join(root, "store", ".layerfs", "gc.lock"), "sleep", "60")
	lease.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := lease.Start(); err != nil {
		t.Fatal(err)
	}
	endLease := func() { syscall.Kill(-lease.Process.Pid, syscall.SIGKILL); lease.Wait() }
	t.Cleanup(endLease)
	waitFor(t, "flock to hold the lease", func() bool {
		b, _ := os.ReadFile("/proc/locks")
		return strings.Contains(string(b), " "+strconv.Itoa(lease.Process.Pid)+" ")
	})
	rmi := exec.Command(layerfsBin, "--root", root, "rmi", "victim:1")
	out := outputFile(t)
	rmi.Stdout, rmi.Stderr = out, out
	if err := rmi.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { rmi.Wait(); close(done) }()
	t.Cleanup(func() { rmi.Process.Kill(); <-done })
	waitFor(t, "rmi to say it waits", func() bool { return strings.Contains(fileText(out), "Waiting for") })
	if got := fileText(out); !strings.Contains(got, "pid "+strconv.Itoa(lease.Process.Pid)+": flock") {
		t.Errorf("rmi's notice does not name the holder (pid %d): %q", lease.Process.Pid, got)
	}
	rmi.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("rmi went on waiting after SIGINT: %q", fileText(out))
	}
	if code := rmi.ProcessState.ExitCode(); code != 130 {
		t.Errorf("rmi interrupted while it waited: exit %d, want 130: %q", code, fileText(out))
	}
	if r := run(t, "image", "inspect", "victim:1"); r.Code == 0 {
		t.Errorf("victim:1 is still there after its rmi")
	}
	endLease()
	if got := mustRun(t, "gc"); !strings.Contains(got, "Deleted") {
		t.Errorf("gc after the interrupted rmi collected nothing: %q", got)
	}
}
