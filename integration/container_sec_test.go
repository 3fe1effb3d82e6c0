package integration

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHostMountsStayOutOfBinds: a mount the host makes under a bind's source
// after the container started does not appear in it (docker's binds are
// rprivate). It did with the tree a slave of the host's: a shared source's new
// submount came in without nodev or ro, where a node the container made (it may
// mknod) opened a host device (found by a review).
func TestHostMountsStayOutOfBinds(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	shared := t.TempDir()
	if err := unix.Mount(shared, shared, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(shared, unix.MNT_DETACH) })
	if err := unix.Mount("", shared, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(shared, "vol")
	os.MkdirAll(filepath.Join(vol, "sub"), 0o755)
	mustRun(t, "run", "-d", "--name", "prop", "-v", vol+":/v", "-v", vol+":/r:ro", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "prop") })
	if err := unix.Mount("tmpfs", filepath.Join(vol, "sub"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(vol, "sub"), unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(vol, "sub", "marker"), []byte("host\n"), 0o644)
	if got := mustRun(t, "exec", "prop", "sh", "-c", "cat /v/sub/marker /r/sub/marker 2>/dev/null; grep -c ' /v/sub \\| /r/sub ' /proc/self/mountinfo; true"); got != "0\n" {
		t.Errorf("a host mount made after the start shows in the container's binds: %q", got)
	}
}

// TestContainerSecurityFixes: what a security review of the runtime found.
func TestContainerSecurityFixes(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)

	// --init's init (layerfs built with CGO_ENABLED=0, as here) holds no more
	// capabilities than the container's command once it forked it; it is not
	// dumpable either.
	caps := `grep -E '^Cap(Prm|Eff|Bnd)' /proc/1/status; echo --; grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status`
	for _, args := range [][]string{{"busybox"}, {"--cap-add", "SYS_PTRACE", "--cap-drop", "CHOWN", "busybox"}, {"--user", "1000", "busybox"}} {
		a := append(append([]string{"run", "--rm", "--init"}, args...), "sh", "-c", caps)
		init, cmd, _ := strings.Cut(mustRun(t, a...), "--\n")
		if args[0] == "--user" {
			// A user's command has no permitted or effective capabilities.
			init = strings.Join(strings.Fields(init)[4:6], " ")
			cmd = strings.Join(strings.Fields(cmd)[4:6], " ")
		}
		if init != cmd || init == "" {
			t.Errorf("run --init %v: the init's capabilities\n%s\nthe command's\n%s", args, init, cmd)
		}
	}
	// Without CAP_SETPCAP the init's second pass still works (the kernel
	// refuses even an already-made bounding drop then: run --init failed).
	for _, drop := range []string{"SETPCAP", "ALL"} {
		if got := mustRun(t, "run", "--rm", "--init", "--cap-drop", drop, "busybox", "echo", "hi"); got != "hi\n" {
			t.Errorf("run --init --cap-drop %s: %q", drop, got)
		}
	}
	if got := mustRun(t, "run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/environ >/dev/null 2>&1 && echo readable || echo refused"); got != "refused\n" {
		t.Errorf("the init's /proc/1/environ from the container: %q", got)
	}

	// /proc/sys is read-only, the masked paths hidden.
	out := mustRun(t, "run", "--rm", "busybox", "sh", "-c", "echo core > /proc/sys/kernel/core_pattern && echo wrote; grep ' /proc/sys ' /proc/mounts")
	if strings.Contains(out, "wrote") || !strings.Contains(out, " ro,") {
		t.Errorf("/proc/sys in a container: %q", out)
	}

	// The masks are the container's own /dev/null, read-only: not the host's
	// node, which the container could chmod through them.
	var hostNull unix.Stat_t
	unix.Stat("/dev/null", &hostNull)
	out = mustRun(t, "run", "--rm", "busybox", "sh", "-c", "chmod 666 /proc/keys 2>/dev/null && echo changed; stat -c '%d %i' /proc/keys")
	if strings.Contains(out, "changed") || strings.TrimSpace(out) == strconv.FormatUint(hostNull.Dev, 10)+" "+strconv.FormatUint(hostNull.Ino, 10) {
		t.Errorf("/proc/keys in a container: %q (the host's /dev/null is %d %d)", out, hostNull.Dev, hostNull.Ino)
	}
	// A bound device is usable (-v /dev/null), a bound dir's devices are not.
	if r := run(t, "run", "--rm", "-v", "/dev/null:/n", "busybox", "sh", "-c", "echo x > /n"); r.Code != 0 {
		t.Errorf("-v /dev/null: exit %d, %q", r.Code, r.Stderr)
	}
	if r := run(t, "run", "--rm", "-v", "/dev:/hd", "busybox", "sh", "-c", "echo x > /hd/null"); r.Code == 0 {
		t.Errorf("-v /dev:/hd: a device of the bound dir opened")
	}

	// Device nodes neither in an image's VOLUME (copied to a host dir) nor in
	// a bound host dir open; --privileged's do.
	dev := filepath.Join(t.TempDir(), "dev")
	os.MkdirAll(dev, 0o755)
	if err := unix.Mknod(filepath.Join(dev, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("mknod: %v", err)
	}
	if r := run(t, "run", "--rm", "-v", dev+":/d", "busybox", "sh", "-c", "echo x > /d/null"); r.Code == 0 {
		t.Errorf("a host dir's device node opened in a container")
	}
	if r := run(t, "run", "--rm", "--privileged", "-v", dev+":/d", "busybox", "sh", "-c", "echo x > /d/null"); r.Code != 0 {
		t.Errorf("--privileged: the bind's device node: exit %d, %q", r.Code, r.Stderr)
	}
	entries := append(readTarFile(t, runnerTar(t)),
		tarFileEntry{hdr: &tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarFileEntry{hdr: &tar.Header{Name: "data/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}})
	tarPath := filepath.Join(t.TempDir(), "vol.tar")
	os.WriteFile(tarPath, writeTarEntries(t, entries), 0o644)
	mustRun(t, "import", "-q", "-c", "VOLUME /data", tarPath, "volimg:1")
	if r := run(t, "run", "--rm", "volimg:1", "sh", "-c", "test -c /data/null || exit 9; echo x > /data/null"); r.Code != 1 && r.Code != 2 {
		t.Errorf("an image's device node in its VOLUME: exit %d (want the write refused), %q", r.Code, r.Stderr)
	}

	// RUN makes device nodes, as docker's (a package's /dev nodes land in the
	// layer); they open nothing there (no device cgroup here), nor in a
	// container of the image.
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nRUN mknod /tmp/sda b 8 0 && mknod /tmp/nul c 1 3 && ! head -c1 /tmp/sda && ! echo x > /tmp/nul\n"), 0o644)
	if r := run(t, "build", "-t", "nodes:1", ctx); r.Code != 0 {
		t.Errorf("RUN mknod: exit %d, %s", r.Code, r.Stderr)
	}
	if got := mustRun(t, "run", "--rm", "nodes:1", "sh", "-c", "test -b /tmp/sda && test -c /tmp/nul && echo nodes; { echo x > /tmp/nul && echo opened; } 2>/dev/null; true"); got != "nodes\n" {
		t.Errorf("the image's nodes from RUN: %q", got)
	}

	// exec passes no fd but stdio, and joins the network namespace.
	mustRun(t, "run", "-d", "--name", "sec", "--network", "none", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "sec") })
	f, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "exec", "sec", "ls", "/proc/self/fd")
	cmd.ExtraFiles = []*os.File{f} // fd 3 of layerfs exec, without close-on-exec
	b, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if fds := strings.Fields(string(b)); len(fds) > 4 { // 0 1 2, and ls's own dir fd
		t.Errorf("exec'd process fds: %v, want stdio only", fds)
	}
	if got := mustRun(t, "exec", "sec", "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"); got != "lo\n" {
		t.Errorf("exec in a --network none container sees interfaces %q", got)
	}

	// cp into a running container reaches its binds, as docker cp does.
	vol := t.TempDir()
	mustRun(t, "run", "-d", "--name", "cpb", "-v", vol+":/x", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "cpb") })
	src := filepath.Join(t.TempDir(), "hello")
	os.WriteFile(src, []byte("hi\n"), 0o644)
	mustRun(t, "cp", src, "cpb:/x/")
	if b, err := os.ReadFile(filepath.Join(vol, "hello")); err != nil || string(b) != "hi\n" {
		t.Errorf("cp into a running container's bind: %q, %v", b, err)
	}

	// The unpacked layers are the store user's alone.
	if fi, err := os.Stat(filepath.Join(rootFor(t), "layers")); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("layers dir: %v, %v", fi.Mode(), err)
	}
}

// TestRunMountpointDirMustBePrivate: run refuses a mountpoint parent dir in
// TMPDIR that another user made (they could move a live mount's dir).
func TestRunMountpointDirMustBePrivate(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	tmp := t.TempDir()
	abs, _ := filepath.Abs(rootFor(t))
	h := sha256.Sum256([]byte(abs))
	dir := filepath.Join(tmp, "layerfs-run-"+hex.EncodeToString(h[:4]))
	os.Mkdir(dir, 0o777)
	os.Chmod(dir, 0o777)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Skipf("chown: %v", err)
	}
	r := runWith(t, cmdOpts{env: []string{"TMPDIR=" + tmp}}, "run", "--rm", "busybox", "true")
	if r.Code != 125 || !strings.Contains(r.Stderr, "is not a private dir of this user") {
		t.Errorf("run with another user's mountpoint dir: exit %d, %q", r.Code, r.Stderr)
	}
}
