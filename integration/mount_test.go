package integration

// End-to-end tests of mount, umount, ps, rm and rmi's in-use refusal: the real
// binary, real FUSE mounts, a busybox image built in code.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
)

// mountEnv is one store root with a busybox image, and every mountpoint a test
// used, unmounted in t.Cleanup whatever happened.
type mountEnv struct {
	t     *testing.T
	root  string
	image string
	mu    sync.Mutex
	dirs  []string
}

func newMountEnv(t *testing.T) *mountEnv {
	t.Helper()
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t) // chroot, allow_other
	e := &mountEnv{t: t, root: rootFor(t), image: "busybox:test"}
	t.Cleanup(e.cleanup)
	importBusybox(t, e.image)
	return e
}

// cleanup unmounts everything: umount --all, then fusermount3/umount -l on every
// mountpoint the test used, as the last resort.
func (e *mountEnv) cleanup() {
	e.run("umount", "--all")
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.dirs {
		if !mountedAt(d) {
			continue
		}
		e.t.Errorf("%s still mounted after umount --all", d)
		exec.Command("fusermount3", "-u", "-z", d).Run()
		if mountedAt(d) {
			exec.Command("umount", "-l", d).Run()
		}
	}
}

// dir returns a fresh mountpoint path (not created: mount creates it).
func (e *mountEnv) dir() string {
	d := filepath.Join(e.t.TempDir(), "rootfs")
	e.mu.Lock()
	e.dirs = append(e.dirs, d)
	e.mu.Unlock()
	return d
}

// run runs layerfs with the env's root.
func (e *mountEnv) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	r := runWith(e.t, cmdOpts{root: e.root}, args...)
	return r.Stdout, r.Stderr, r.Code
}

// ok runs layerfs and fails the test unless it exits 0; it returns stdout.
func (e *mountEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("layerfs %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fails runs layerfs, wants a non-zero exit and stderr containing want.
func (e *mountEnv) fails(want string, args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code == 0 {
		e.t.Fatalf("layerfs %s: exit 0 (%s), want an error", strings.Join(args, " "), out)
	}
	if !strings.Contains(errOut, want) {
		e.t.Errorf("layerfs %s: stderr %q, want it to contain %q", strings.Join(args, " "), errOut, want)
	}
	return errOut
}

// psField returns ps's template field for container name ("" if absent).
func (e *mountEnv) psField(name, field string) string {
	e.t.Helper()
	for _, line := range strings.Split(e.ok("ps", "-a", "--format", "{{.Name}} {{."+field+"}}"), "\n") {
		if n, v, ok := strings.Cut(line, " "); ok && n == name {
			return v
		}
	}
	return ""
}

func chroot(t *testing.T, dir, script string) (string, error) {
	t.Helper()
	out, err := exec.Command("chroot", dir, "/bin/sh", "-c", script).CombinedOutput()
	return string(out), err
}

func mountedAt(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func TestMountChangeUmountRemount(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	if got := strings.TrimSpace(e.ok("mount", "--name", "c1", e.image, dir)); got != "c1" {
		t.Errorf("mount printed %q, want the container name c1", got)
	}
	if out, err := chroot(t, dir, "echo hi > /x; rm /bin/ls; cat /etc/passwd"); err != nil {
		t.Fatalf("chroot: %v: %s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "x")); err != nil || string(b) != "hi\n" {
		t.Errorf("read x = %q, %v; want \"hi\\n\"", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "bin/ls")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lstat bin/ls after rm = %v, want ErrNotExist", err)
	}
	upper := filepath.Join(e.root, "work", "c1", "upper")
	if _, err := os.Stat(filepath.Join(upper, "x")); err != nil {
		t.Errorf("upper/x: %v", err)
	}
	if got := e.psField("c1", "Mount"); got != "mounted" {
		t.Errorf("ps status = %q, want mounted", got)
	}
	if got := e.psField("c1", "Mountpoint"); got != dir {
		t.Errorf("ps mountpoint = %q, want %s", got, dir)
	}
	// docker's columns (MOUNTPOINT for PORTS); a container mount serves is
	// "Mounted", its mountpoint next, its name last.
	if out := e.ok("ps", "-a"); !strings.HasPrefix(out, "CONTAINER ID   IMAGE ") || !strings.Contains(out, "\n"+containerIDIn(t, e.root, "c1")[:12]+"   busybox:test ") || !strings.HasSuffix(strings.Join(strings.Fields(out), " "), " Mounted "+dir+" c1") {
		t.Errorf("ps =\n%s\nwant a header and c1's short ID, image busybox:test, STATUS Mounted, its mountpoint and its name last", out)
	}
	// mount with no arguments lists it with its mountpoint, as podman mount.
	if got, want := e.ok("mount"), containerIDIn(t, e.root, "c1")[:12]+"  "+dir+"\n"; got != want {
		t.Errorf("mount = %q, want %q", got, want)
	}

	// Refusals: the same container twice, a dir that is already a mount point.
	e.fails("already mounted", "mount", "--name", "c1", e.image, e.dir())
	e.fails("already a mount point", "mount", "--name", "c2", e.image, dir)

	e.ok("umount", dir)
	if mountedAt(dir) {
		t.Fatalf("%s still mounted after umount", dir)
	}
	if got := e.psField("c1", "Mount"); got != "unmounted" {
		t.Errorf("ps status after umount = %q, want unmounted", got)
	}
	if got := e.ok("mount"); got != "" {
		t.Errorf("mount after umount = %q, want nothing mounted", got)
	}
	e.fails("not mounted", "umount", "c1")

	dir2 := e.dir()
	e.ok("mount", "--name", "c1", e.image, dir2)
	if b, err := os.ReadFile(filepath.Join(dir2, "x")); err != nil || string(b) != "hi\n" {
		t.Errorf("after remount: read x = %q, %v; want \"hi\\n\"", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir2, "bin/ls")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after remount: lstat bin/ls = %v, want ErrNotExist", err)
	}
	e.fails("umount it first or force remove", "rm", "c1")
	e.ok("umount", "c1")
	if got := strings.TrimSpace(e.ok("rm", "c1")); got != "c1" {
		t.Errorf("rm printed %q, want c1", got)
	}
	if out := strings.TrimSpace(e.ok("ps", "-a", "-q")); out != "" {
		t.Errorf("ps -q after rm = %q, want nothing", out)
	}
	e.fails("No such container", "rm", "c1")
	e.ok("rm", "-f", "c1")
}

func TestMountServerKilled(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--name", "k", e.image, dir)
	if out, err := chroot(t, dir, "echo before-kill > /survivor; rm /bin/cat"); err != nil {
		t.Fatalf("chroot: %v: %s", err, out)
	}
	pid, err := strconv.Atoi(e.psField("k", "PID"))
	if err != nil || pid <= 1 {
		t.Fatalf("ps PID = %v, %v", pid, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "server lock released", func() bool { return e.psField("k", "Mount") == "dead" })
	if _, err := os.Stat(filepath.Join(dir, "survivor")); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("stat in a dead mount = %v, want ENOTCONN", err)
	}
	e.ok("umount", dir)
	if mountedAt(dir) {
		t.Fatalf("dead mount still at %s after umount", dir)
	}
	e.ok("mount", "--name", "k", e.image, dir)
	if b, err := os.ReadFile(filepath.Join(dir, "survivor")); err != nil || string(b) != "before-kill\n" {
		t.Errorf("after kill and remount: survivor = %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "bin/cat")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after kill and remount: lstat bin/cat = %v, want ErrNotExist", err)
	}

	// Killed again, then mounted straight away (by name alone, without the
	// image): mount clears the dead mount itself.
	pid, _ = strconv.Atoi(e.psField("k", "PID"))
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, "server lock released", func() bool { return e.psField("k", "Mount") == "dead" })
	e.ok("mount", "--name", "k", dir)
	if _, err := os.Stat(filepath.Join(dir, "survivor")); err != nil {
		t.Errorf("after kill and direct remount: %v", err)
	}
	e.ok("rm", "-f", "k")
	if mountedAt(dir) {
		t.Errorf("%s still mounted after rm -f", dir)
	}
}

func TestMountSameNameConcurrently(t *testing.T) {
	e := newMountEnv(t)
	dirs := []string{e.dir(), e.dir()}
	codes := make([]int, 2)
	errs := make([]string, 2)
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i], codes[i] = e.run("mount", "--name", "race", e.image, dirs[i])
		}()
	}
	wg.Wait()
	if (codes[0] == 0) == (codes[1] == 0) {
		t.Fatalf("two mounts of one name: exits %v (%q), want exactly one success", codes, errs)
	}
	loser := 0
	if codes[0] == 0 {
		loser = 1
	}
	if !strings.Contains(errs[loser], "already mounted") {
		t.Errorf("losing mount said %q, want already mounted", errs[loser])
	}
	if mountedAt(dirs[loser]) || !mountedAt(dirs[1-loser]) {
		t.Errorf("mounted: %v %v, want only the winner's", mountedAt(dirs[0]), mountedAt(dirs[1]))
	}
}

func TestMountDerivedNames(t *testing.T) {
	e := newMountEnv(t)
	a := strings.TrimSpace(e.ok("mount", e.image, e.dir()))
	b := strings.TrimSpace(e.ok("mount", e.image, e.dir()))
	if a != "busybox-working-container" || b != "busybox-working-container-1" {
		t.Errorf("derived names = %q, %q; want busybox-working-container, busybox-working-container-1", a, b)
	}
	if got := e.ok("ps", "-a", "--format", "table {{.Name}}\t{{.Mount}}"); !strings.HasPrefix(got, "NAME") || strings.Count(got, "mounted") != 2 {
		t.Errorf("ps --format table =\n%s\nwant a NAME header and two mounted rows", got)
	}
	var row struct{ Name, Image, ImageID, Mountpoint, Mount, Status string }
	if err := json.Unmarshal([]byte(strings.SplitN(e.ok("ps", "-a", "--format", "json"), "\n", 2)[0]), &row); err != nil {
		t.Errorf("ps --format json: %v", err)
	} else if row.Name != b /* newest first, as docker's */ || row.Image != e.image || !strings.HasPrefix(row.ImageID, "sha256:") || row.Mount != "mounted" || row.Status != "Mounted" || row.Mountpoint == "" {
		t.Errorf("ps --format json first row = %+v", row)
	}
	// mount with no arguments: podman mount's --no-trunc and --format json.
	var mounts []struct {
		ID         string `json:"id"`
		Names      []string
		Mountpoint string `json:"mountpoint"`
	}
	if err := json.Unmarshal([]byte(e.ok("mount", "--format", "json")), &mounts); err != nil || len(mounts) != 2 ||
		mounts[0].ID != containerIDIn(t, e.root, a) || len(mounts[0].Names) != 1 || mounts[0].Names[0] != a || mounts[0].Mountpoint != e.psField(a, "Mountpoint") {
		t.Errorf("mount --format json = %+v, %v", mounts, err)
	}
	if got, want := e.ok("mount", "--no-trunc"), containerIDIn(t, e.root, a)+"  "+e.psField(a, "Mountpoint")+"\n"+containerIDIn(t, e.root, b)+"  "+e.psField(b, "Mountpoint")+"\n"; got != want {
		t.Errorf("mount --no-trunc = %q, want %q", got, want)
	}
	e.fails("unknown --format", "mount", "--format", "{{.ID}}")
	e.ok("umount", "--all")
	if got := strings.Fields(e.ok("ps", "-a", "--format", "{{.Mount}}")); len(got) != 2 || got[0] != "unmounted" || got[1] != "unmounted" {
		t.Errorf("ps statuses after umount --all = %v", got)
	}
	// A mount's containers have IDs too: ps -q prints them, and they name the
	// containers as the names do.
	if got, want := e.ok("ps", "-a", "-q"), psQuietIn(t, e.root, b, a); got != want { // newest first
		t.Errorf("ps -q = %q, want %q (the IDs of %s and %s)", got, want, a, b)
	}
	prefix := containerIDIn(t, e.root, b)[:5]
	if got := e.ok("rm", prefix); got != prefix+"\n" {
		t.Errorf("rm by ID prefix printed %q, want %q", got, prefix)
	}
}

func TestMountReadOnly(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--read-only", "--name", "ro", e.image, dir)
	if out, err := chroot(t, dir, "cat /etc/passwd"); err != nil || !strings.Contains(out, "root:") {
		t.Errorf("read in a read-only mount: %v: %s", err, out)
	}
	err := os.WriteFile(filepath.Join(dir, "y"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("create in a read-only mount = %v, want EROFS", err)
	}
	if err := os.Remove(filepath.Join(dir, "etc/passwd")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("remove in a read-only mount = %v, want EROFS", err)
	}
	if out, err := chroot(t, dir, "echo > /z"); err == nil {
		t.Errorf("shell write in a read-only mount succeeded: %s", out)
	}
	e.ok("umount", dir)

	// A container with changes, mounted read-only again, shows them (its upper
	// dir is the top layer then), and the upper dir stays as it was.
	e.ok("mount", "--name", "ro", e.image, dir)
	if err := os.WriteFile(filepath.Join(dir, "etc", "added"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "newdir", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.ok("umount", dir)
	diff := e.ok("diff", "ro")
	e.ok("mount", "--read-only", "--name", "ro", e.image, dir)
	if b, err := os.ReadFile(filepath.Join(dir, "etc", "added")); err != nil || string(b) != "mine\n" {
		t.Errorf("a change read through a read-only remount: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "etc", "passwd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file the container deleted is back in its read-only mount: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "newdir", "sub")); err != nil {
		t.Errorf("a dir the container made: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "added"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write in a read-only remount = %v, want EROFS", err)
	}
	e.ok("umount", dir)
	if got := e.ok("diff", "ro"); got != diff {
		t.Errorf("diff after a read-only mount = %q, want %q as before it", got, diff)
	}
}

func TestRmiRefusedWhileContainerUsesImage(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--name", "user", e.image, dir)
	e.fails("conflict", "rmi", e.image)
	// A mounted container is docker's running container: even -f cannot delete its
	// image by ID, and -f by name only untags it.
	id := strings.TrimSpace(e.ok("images", "-q", "--no-trunc", e.image))
	// named by its ID, as docker's
	cid := strings.TrimSpace(e.ok("inspect", "-f", "{{.Id}}", "user"))[:12]
	e.fails("(cannot be forced) - image is being used by running container "+cid, "rmi", "-f", id)
	e.fails("container "+cid+" is using its referenced image", "rmi", e.image)
	if out := e.ok("rmi", "-f", e.image); strings.Contains(out, "Deleted:") || !strings.Contains(out, "Untagged:") {
		t.Errorf("rmi -f %s of a running container's image = %q, want Untagged only", e.image, out)
	}
	if out := e.ok("images", "-q", "--no-trunc"); !strings.Contains(out, id) {
		t.Errorf("image %s gone after rmi -f while mounted; images -q = %q", id, out)
	}
	e.ok("tag", id, e.image)
	e.ok("umount", dir)
	// An unmounted container still uses its image (as a stopped docker container).
	e.fails("container "+cid+" is using", "rmi", e.image)
	e.ok("rm", "user")
	e.ok("rmi", e.image)
}

func TestRmForceUnmounts(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--name", "gone", e.image, dir)
	e.ok("rm", "-f", "gone")
	if mountedAt(dir) {
		t.Errorf("%s still mounted after rm -f", dir)
	}
	if _, err := os.Stat(filepath.Join(e.root, "work", "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("work/gone after rm -f: %v, want ErrNotExist", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMountForeground(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	cmd := exec.Command(layerfsBin, "--root", e.root, "mount", "-f", "--name", "fg", e.image, dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make([]byte, 3)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "fg\n" {
		t.Fatalf("mount -f printed %q, %v (stderr %s); want the name once live", line, err, stderr.String())
	}
	if !mountedAt(dir) {
		t.Fatalf("mount -f said ready but %s is not mounted", dir)
	}
	if got := e.psField("fg", "PID"); got != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("ps PID = %s, want the foreground process %d", got, cmd.Process.Pid)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("mount -f after SIGTERM: %v (stderr %s), want exit 0", err, stderr.String())
	}
	if mountedAt(dir) {
		t.Errorf("%s still mounted after SIGTERM to mount -f", dir)
	}
	if got := e.psField("fg", "Mount"); got != "unmounted" {
		t.Errorf("ps status = %q, want unmounted", got)
	}
}

func TestMountServerSIGTERM(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--name", "term", e.image, dir)
	pid, _ := strconv.Atoi(e.psField("term", "PID"))
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to unmount and exit", func() bool { return e.psField("term", "Mount") == "unmounted" })
	if mountedAt(dir) {
		t.Errorf("%s still mounted after SIGTERM to the server", dir)
	}
	e.ok("mount", "--name", "term", e.image, dir)
}

func TestMountServerFailureReported(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--name", "broken", e.image, dir)
	e.ok("umount", "broken")
	// A container whose upper dir vanished cannot be served: the server's own error
	// comes back, one line, and nothing stays mounted or marked mounted.
	if err := os.RemoveAll(filepath.Join(e.root, "work", "broken", "upper")); err != nil {
		t.Fatal(err)
	}
	errOut := e.fails("upper", "mount", "--name", "broken", e.image, dir)
	if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
		t.Errorf("mount failure printed %d lines, want one: %q", n+1, errOut)
	}
	if mountedAt(dir) {
		t.Errorf("%s mounted after a failed mount", dir)
	}
	if got := e.psField("broken", "Mount"); got != "unmounted" {
		t.Errorf("ps status after a failed mount = %q, want unmounted", got)
	}
	e.fails("No such container", "umount", filepath.Join(t.TempDir(), "nothing"))
}

func TestUmountBusy(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--name", "busy", e.image, dir)
	sleeper := exec.Command("sleep", "30")
	sleeper.Dir = dir
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	e.fails("busy", "umount", "busy")
	if got := e.psField("busy", "Mount"); got != "mounted" {
		t.Errorf("ps status after a refused umount = %q, want mounted", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin/busybox")); err != nil {
		t.Errorf("mount unusable after a refused umount: %v", err)
	}
	e.fails("umount -f", "umount", "busy") // the hint
	e.ok("umount", "-f", "busy")
	if mountedAt(dir) {
		t.Errorf("%s still mounted after umount -f", dir)
	}
	if got := e.psField("busy", "Mount"); got != "unmounted" {
		t.Errorf("ps status after umount -f = %q, want unmounted", got)
	}
	// Busy again: rm -f removes it all the same.
	e.ok("mount", "--name", "busy", e.image, dir)
	sleeper2 := exec.Command("sleep", "30")
	sleeper2.Dir = dir
	if err := sleeper2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper2.Process.Kill(); sleeper2.Wait() })
	e.ok("rm", "-f", "busy")
	if mountedAt(dir) {
		t.Errorf("%s still mounted after rm -f", dir)
	}
}

// TestRelativeRoot: a relative --root works for mount as for the other verbs (the
// server runs from "/", so it used to fail to find its lock: "server lock: open
// st/work/c/server.lock: no such file or directory").
func TestRelativeRoot(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	dir := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Write([]byte("hi\n"))
	tw.Close()
	if err := os.WriteFile(filepath.Join(dir, "x.tar"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	lfs := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(layerfsBin, append([]string{"--root", "st"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("layerfs --root st %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	lfs("import", "-q", "x.tar", "x:1")
	lfs("mount", "--name", "c", "x:1", "mnt")
	t.Cleanup(func() { exec.Command("fusermount3", "-u", filepath.Join(dir, "mnt")).Run() })
	if b, err := os.ReadFile(filepath.Join(dir, "mnt/etc/x")); err != nil || string(b) != "hi\n" {
		t.Errorf("mnt/etc/x = %q, %v", b, err)
	}
	lfs("umount", "mnt")
}
