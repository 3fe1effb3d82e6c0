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

// TestRootlessContainerVerbsRefused: run, start, restart and exec need root
// (namespaces, mounts, a chroot). Without it they failed midway on an EPERM from
// clone(2) ("fork/exec /proc/self/exe: operation not permitted"): they now say
// so first. create still makes a container (mount, edit and commit it, as
// buildah from does), and a build without RUN works (COPY chowned its files to
// 0, which the kernel refuses a user: the user stands for root there); a RUN
// says it needs root.
func TestRootlessContainerVerbsRefused(t *testing.T) {
	r := newRootlessEnv(t)
	r.allowFuse()
	r.run("import", r.minimalTar(), "img:1")
	root := filepath.Join(r.dir, "root")
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + r.dir}
	ctx := filepath.Join(r.dir, "ctx")
	noErr(t, os.MkdirAll(ctx, 0o755))
	noErr(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM img:1\nENV A=b\nCOPY Dockerfile /df\nWORKDIR /new\n"), 0o644))
	noErr(t, os.WriteFile(filepath.Join(ctx, "Dockerfile.run"), []byte("FROM img:1\nRUN true\n"), 0o644))
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"run", "--rm", "img:1", "/bin/true"}, 125, "needs root"},
		{[]string{"container", "run", "img:1", "/bin/true"}, 125, "needs root"},
		{[]string{"create", "--name", "c1", "img:1", "/bin/true"}, 0, ""},
		{[]string{"start", "c1"}, 1, "needs root"},
		{[]string{"restart", "c1"}, 1, "needs root"},
		{[]string{"exec", "c1", "/bin/true"}, 1, "needs root"},
		{[]string{"build", "-q", "-t", "b:1", ctx}, 0, ""},
		{[]string{"build", "-q", "-t", "b:2", "-f", filepath.Join(ctx, "Dockerfile.run"), ctx}, 1, "RUN needs root"},
	} {
		res := r.runAs(env, r.dir, append([]string{"--root", root}, c.args...)...)
		if res.Code != c.code || !strings.Contains(res.Stderr, c.stderr) || c.code == 125 && strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
			t.Errorf("%s as nobody: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), res.Code, res.Stderr, c.code, c.stderr)
		}
	}
	if res := r.runAs(env, r.dir, "--root", root, "ps", "-a", "--format", "{{.Names}}"); res.Code != 0 || strings.TrimSpace(res.Stdout) != "c1" {
		t.Errorf("ps -a after the refusals: exit %d, %q; want c1 alone", res.Code, res.Stdout)
	}
	out := filepath.Join(r.dir, "b.tar")
	r.run("export", "-o", out, "b:1")
	if got := strings.Join(tarOwners(t, out), "\n"); !strings.Contains(got, "df 0:0 ") || !strings.Contains(got, "new 0:0 ") {
		t.Errorf("the rootless build's files:\n%s\nwant df and new root's", got)
	}
}

// allowFuse lets nobody open /dev/fuse for the test where it is not 0666 (as
// Debian's udev makes it).
func (r *rootlessEnv) allowFuse() {
	if fi, err := os.Stat("/dev/fuse"); err == nil && fi.Mode().Perm()&0o006 != 0o006 {
		noErr(r.t, os.Chmod("/dev/fuse", fi.Mode().Perm()|0o006))
		r.t.Cleanup(func() { os.Chmod("/dev/fuse", fi.Mode().Perm()) })
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

	// A uid with no passwd entry and no HOME has no store: commands that use
	// one say so; version and completion need none.
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"version"}, 0, "layerfs version"},
		{[]string{"completion", "bash"}, 0, "bash completion"},
		{[]string{"images"}, 1, "no store root"},
	} {
		cmd := exec.Command(r.bin, c.args...)
		cmd.Dir, cmd.Env = sub, []string{"PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 54321, Gid: 54321}}
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != c.code || !strings.Contains(string(out), c.out) {
			t.Errorf("%s as a uid with no home: %v, %q; want exit %d and %q", strings.Join(c.args, " "), cmd.ProcessState, out, c.code, c.out)
		}
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
