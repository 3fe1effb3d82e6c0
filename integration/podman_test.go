package integration

// podman with layerfs as its overlay mount_program (the fuse-overlayfs-compatible
// mode): podman mounts images and containers through us, runs a container and
// commits it.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
)

// podmanEnv is a podman with its own storage (graphroot, runroot, tmpdir in a temp
// dir) whose overlay driver mounts with mountProgram; overlayOpts are more lines
// for its [storage.options.overlay] table (`force_mask = "shared"`).
type podmanEnv struct {
	t    *testing.T
	dir  string
	args []string
	env  []string
}

func newPodmanEnv(t *testing.T, mountProgram string, overlayOpts ...string) *podmanEnv {
	t.Helper()
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman")
	testenv.RequireTool(t, "runc") // crun refuses this machine's hybrid cgroups
	// A short dir: conmon's attach socket lives under runroot, and a path past
	// sun_path's 108 bytes makes every attached run wait for conmon's 20s timeout.
	dir, err := os.MkdirTemp("", "pm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "storage.conf")
	err = os.WriteFile(conf, []byte(`[storage]
driver = "overlay"
graphroot = "`+dir+`/graph"
runroot = "`+dir+`/run"

[storage.options.overlay]
mount_program = "`+mountProgram+`"
`+strings.Join(overlayOpts, "\n")+`
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox's hard RLIMIT_NOFILE is below podman's default (1048576), and
	// the default runtime crun refuses hybrid cgroups: name what works.
	cc := filepath.Join(dir, "containers.conf")
	err = os.WriteFile(cc, []byte(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := &podmanEnv{
		t:    t,
		dir:  dir,
		args: []string{"--tmpdir", filepath.Join(dir, "tmp")},
		env:  append(os.Environ(), "CONTAINERS_STORAGE_CONF="+conf, "CONTAINERS_CONF="+cc),
	}
	t.Cleanup(p.cleanup)
	return p
}

func (p *podmanEnv) run(args ...string) (string, string, error) {
	p.t.Helper()
	return runLogged(p.t, p.env, "podman", append(append([]string{}, p.args...), args...), args)
}

// runLogged runs name with args and env, logs shown (the arguments worth
// naming), its result and time, and returns its stdout and stderr.
func runLogged(t *testing.T, env []string, name string, args, shown []string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %v (%v)", name, strings.Join(shown, " "), err, time.Since(start).Round(time.Millisecond))
	return o.String(), e.String(), err
}

func (p *podmanEnv) ok(args ...string) string {
	p.t.Helper()
	out, errOut, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v: %s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// cleanup removes podman's containers and mounts, then clears any FUSE mount left
// under the test's dir.
func (p *podmanEnv) cleanup() {
	p.run("rm", "-a", "-f")
	p.run("image", "unmount", "-a", "-f")
	p.run("rmi", "-a", "-f")
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], p.dir+"/") {
			p.t.Errorf("podman left a mount at %s", f[4])
			exec.Command("fusermount3", "-u", "-z", f[4]).Run()
			exec.Command("umount", "-l", f[4]).Run()
		}
	}
}

// environmentRefusal names why the sandbox, not layerfs, stopped a container from
// running; "" if the failure does not look like one.
func environmentRefusal(stderr string) string {
	for _, s := range []string{"cgroup", "setrlimit", "OCI permission denied", "netns", "network namespace", "unshare", "pivot_root", "seccomp"} {
		if strings.Contains(stderr, s) {
			return strings.TrimSpace(stderr)
		}
	}
	return ""
}

func TestPodmanMountProgram(t *testing.T) {
	for _, tc := range []struct {
		name, program, fstype string
		oracle                bool
	}{
		// fuse-overlayfs first: if podman fails with it too, the sandbox is the cause.
		{"fuse-overlayfs", "fuse-overlayfs", "fuse.fuse-overlayfs", true},
		{"layerfs", "", "fuse.layerfs", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog := mountProgram(t, tc.program)
			podmanScenario(t, prog, tc.fstype, tc.oracle)
		})
	}
}

// requireCompatMode skips t if prog does not take fuse-overlayfs's command line
// (`-o lowerdir=...`): the compat mode is built separately from the mount verbs.
func requireCompatMode(t *testing.T, prog string) {
	t.Helper()
	out, _ := exec.Command(prog, "-o", "lowerdir=/nonexistent", "/nonexistent").CombinedOutput()
	if s := string(out); strings.Contains(s, "unknown command") || strings.Contains(s, "unknown shorthand flag") {
		t.Skip("layerfs has no fuse-overlayfs-compatible mode yet (-o lowerdir=...): podman cannot use it as mount_program")
	}
}

// podmanScenario loads our saved busybox into podman, mounts it (image and
// container) through prog, runs a container that changes files, commits it, and
// runs the committed image.
func podmanScenario(t *testing.T, prog, fstype string, oracle bool) {
	e := newMountEnv(t)
	p := newPodmanEnv(t, prog)

	archive := filepath.Join(t.TempDir(), "busybox.tar")
	e.ok("save", "-o", archive, e.image)
	p.ok("load", "-i", archive)

	// podman image mount: podman asks its mount_program for a lowerdir-only
	// read-only mount.
	mp := strings.TrimSpace(p.ok("image", "mount", e.image))
	if _, err := os.Stat(filepath.Join(mp, "bin/busybox")); err != nil {
		t.Errorf("podman image mount: bin/busybox: %v", err)
	}
	if got, _ := mountFSType(mp); got != fstype {
		t.Errorf("podman image mount at %s: fstype %q, want %s", mp, got, fstype)
	}
	p.ok("image", "unmount", e.image)

	// podman mount of a container: a writable union with an overlay-format upper.
	p.ok("create", "--name", "c1", e.image, "/bin/sh", "-c", "echo hi > /x; rm /bin/ls")
	cmp := strings.TrimSpace(p.ok("mount", "c1"))
	if got, _ := mountFSType(cmp); got != fstype {
		t.Errorf("podman mount at %s: fstype %q, want %s", cmp, got, fstype)
	}
	if err := os.WriteFile(filepath.Join(cmp, "from-host"), []byte("1\n"), 0o644); err != nil {
		t.Errorf("write through podman mount: %v", err)
	}
	p.ok("unmount", "c1")

	if out, errOut, err := p.run("start", "-a", "c1"); err != nil {
		if why := environmentRefusal(errOut); why != "" && oracle {
			t.Skipf("podman cannot run containers here, not even with fuse-overlayfs: %s", why)
		}
		t.Fatalf("podman start: %v: %s%s", err, out, errOut)
	}
	p.ok("commit", "-q", "c1", "localhost/committed:1")
	out := p.ok("run", "--rm", "localhost/committed:1", "/bin/sh", "-c", "cat /x /from-host; test ! -e /bin/ls && echo ls-gone")
	if out != "hi\n1\nls-gone\n" {
		t.Errorf("run of the committed image printed %q, want \"hi\\n1\\nls-gone\\n\"", out)
	}
}

// mountFSType returns the fstype of the mount at dir.
func mountFSType(dir string) (string, bool) {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			for i := 5; i+1 < len(f); i++ {
				if f[i] == "-" {
					return f[i+1], true
				}
			}
		}
	}
	return "", false
}

// mountProgram is the mount_program a podman test runs with: the named tool
// (fuse-overlayfs), or for "" the layerfs under test, which must answer in its
// fuse-overlayfs mode.
func mountProgram(t *testing.T, name string) string {
	t.Helper()
	if name == "" {
		requireCompatMode(t, layerfsBin)
		return layerfsBin
	}
	return testenv.RequireTool(t, name)
}
