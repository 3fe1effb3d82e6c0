package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// runAs runs the binary as nobody with exactly env, in dir, and returns its
// output and exit code.
func (r *rootlessEnv) runAs(env []string, dir string, args ...string) result {
	r.t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	res := result{}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			r.t.Fatalf("layerfs %s as nobody: %v", strings.Join(args, " "), err)
		}
		res.Code = ee.ExitCode()
	}
	res.Stdout, res.Stderr = out.String(), errOut.String()
	return res
}

// minimalTar writes a one-file rootfs tar for import.
func (r *rootlessEnv) minimalTar() string {
	r.t.Helper()
	src := filepath.Join(r.dir, "src")
	noErr(r.t, os.MkdirAll(filepath.Join(src, "etc"), 0o755))
	noErr(r.t, os.WriteFile(filepath.Join(src, "etc", "hostname"), []byte("x\n"), 0o644))
	in := filepath.Join(r.dir, "in.tar")
	if out, err := exec.Command("tar", "-C", src, "-cf", in, ".").CombinedOutput(); err != nil {
		r.t.Fatalf("tar: %v: %s", err, out)
	}
	noErr(r.t, os.Chmod(in, 0o644))
	return in
}

// TestRootlessContainerVerbsRefused: run, create and build need root (namespaces,
// mounts, a chroot). Without it they failed midway on an EPERM from clone(2)
// ("fork/exec /proc/self/exe: operation not permitted"), and create made a
// container that could never start: they now say so first and make nothing.
func TestRootlessContainerVerbsRefused(t *testing.T) {
	r := newRootlessEnv(t)
	r.run("import", r.minimalTar(), "img:1")
	root := filepath.Join(r.dir, "root")
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + r.dir}
	ctx := filepath.Join(r.dir, "ctx")
	noErr(t, os.MkdirAll(ctx, 0o755))
	noErr(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM img:1\nCOPY Dockerfile /df\n"), 0o644))
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"run", "--rm", "img:1", "/bin/true"}, 125},
		{[]string{"create", "--name", "c1", "img:1", "/bin/true"}, 125},
		{[]string{"container", "run", "img:1", "/bin/true"}, 125},
		{[]string{"start", "c1"}, 1},
		{[]string{"exec", "c1", "/bin/true"}, 1},
		{[]string{"build", "-t", "b:1", ctx}, 1},
	} {
		res := r.runAs(env, r.dir, append([]string{"--root", root}, c.args...)...)
		if res.Code != c.code || !strings.Contains(res.Stderr, "needs root") || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
			t.Errorf("%s as nobody: exit %d, stderr %q; want exit %d and one line saying it needs root", strings.Join(c.args, " "), res.Code, res.Stderr, c.code)
		}
	}
	if res := r.runAs(env, r.dir, "--root", root, "ps", "-a", "-q"); res.Code != 0 || strings.TrimSpace(res.Stdout) != "" {
		t.Errorf("ps -a after the refusals: exit %d, %q; want no container", res.Code, res.Stdout)
	}
}

// TestRootlessStoreLocation: without $HOME the store was made relative to the
// caller's directory (a new, empty store in every other directory, with no
// error), and a relative XDG_DATA_HOME was used as given. The XDG spec says to
// ignore a relative one; without $HOME the passwd entry's home stands in.
func TestRootlessStoreLocation(t *testing.T) {
	r := newRootlessEnv(t)
	in := r.minimalTar()
	sub := filepath.Join(r.dir, "sub")
	noErr(t, os.Mkdir(sub, 0o755))
	noErr(t, os.Chown(sub, nobodyID, nobodyID))

	res := r.runAs([]string{"PATH=/usr/bin:/bin", "HOME=" + r.dir, "XDG_DATA_HOME=rel"}, sub, "import", in, "img:1")
	if res.Code != 0 {
		t.Fatalf("import with a relative XDG_DATA_HOME: exit %d: %s", res.Code, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(r.dir, ".local", "share", "layerfs", "store")); err != nil {
		t.Errorf("store under $HOME/.local/share: %v", err)
	}
	if _, err := os.Stat(filepath.Join(sub, "rel")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a relative XDG_DATA_HOME made a store under the caller's directory (%v)", err)
	}

	// No HOME: nobody's passwd home (/nonexistent) stands in; the store cannot be
	// made there, and the error says where it looked. Nothing lands in the cwd.
	res = r.runAs([]string{"PATH=/usr/bin:/bin"}, sub, "import", in, "img:1")
	if res.Code == 0 || strings.Contains(res.Stderr, "\n\n") {
		t.Errorf("import without HOME: exit %d, stderr %q; want a failure", res.Code, res.Stderr)
	}
	if ents, _ := os.ReadDir(sub); len(ents) != 0 {
		t.Errorf("import without HOME left %v in the caller's directory", ents)
	}
}

// TestRootRefusesUserStore: a store a user made without root holds that user's
// uid on every file and the images' owners in user.rootlesscontainers xattrs;
// root showed and exported every file as the user's. Root now refuses it.
func TestRootRefusesUserStore(t *testing.T) {
	r := newRootlessEnv(t)
	r.run("import", r.minimalTar(), "img:1")
	res := runWith(t, cmdOpts{root: filepath.Join(r.dir, "root")}, "export", "-o", filepath.Join(r.dir, "x.tar"), "img:1")
	if res.Code == 0 || !strings.Contains(res.Stderr, "belongs to uid 65534") {
		t.Errorf("root's export from nobody's store: exit %d, stderr %q; want a refusal naming the owner", res.Code, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "x.tar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused export left its output (%v)", err)
	}
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
