package build

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
)

// TestMain lets the test binary act as the container init that Start re-executes.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == InitCommand {
		os.Exit(InitMain())
	}
	if len(os.Args) > 1 && os.Args[1] == StepMountCommand {
		os.Exit(StepMountMain(context.Background()))
	}
	os.Exit(m.Run())
}

// busyboxRoot makes a minimal rootfs from the host's static busybox.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	bb := testenv.RequireTool(t, "busybox")
	dir := t.TempDir()
	for _, d := range []string{"bin", "etc", "proc", "dev", "sys", "tmp", "root", "home/app"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", name))
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runIn(t *testing.T, spec ProcessSpec) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	spec.Stdout, spec.Stderr = &out, &errb
	code, err := RunProcess(spec)
	if err != nil {
		t.Fatalf("RunProcess(%q) = %v", spec.Args, err)
	}
	return code, out.String(), errb.String()
}

func TestRunProcess(t *testing.T) {
	testenv.RequireRoot(t)
	root := busyboxRoot(t)
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "host.txt"), []byte("from host\n"), 0o644)
	roDir := t.TempDir()

	tests := []struct {
		name     string
		spec     ProcessSpec
		code     int
		want     string // substring of stdout
		wantErr  string // substring of stderr
		exactOut bool
	}{
		{name: "pid1", spec: ProcessSpec{Args: []string{"sh", "-c", "echo $$"}}, want: "1\n", exactOut: true},
		{name: "exit code", spec: ProcessSpec{Args: []string{"sh", "-c", "exit 42"}}, code: 42},
		{name: "env and workdir", spec: ProcessSpec{Args: []string{"sh", "-c", "echo $FOO $PWD $HOME"}, Env: []string{"FOO=bar"}, Dir: "/srv/www"}, want: "bar /srv/www /root\n", exactOut: true},
		{name: "hostname", spec: ProcessSpec{Args: []string{"hostname"}, Hostname: "abc123"}, want: "abc123\n", exactOut: true},
		{name: "user", spec: ProcessSpec{Args: []string{"id"}, User: "app"}, want: "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)"},
		{name: "uid:gid", spec: ProcessSpec{Args: []string{"id", "-u"}, User: "1234:55"}, want: "1234\n", exactOut: true},
		{name: "no such user", spec: ProcessSpec{Args: []string{"id"}, User: "nobody9"}, code: ExitSetup, wantErr: "unable to find user nobody9"},
		{name: "not found", spec: ProcessSpec{Args: []string{"nosuchcmd"}}, code: ExitNotFound, wantErr: "executable file not found"},
		{name: "not executable", spec: ProcessSpec{Args: []string{"/etc/passwd"}}, code: ExitCannotExec},
		{name: "killed", spec: ProcessSpec{Args: []string{"sh", "-c", "kill -9 $$; sleep 0.2"}}, code: 0}, // pid 1 ignores its own SIGKILL
		{name: "self term init", spec: ProcessSpec{Args: []string{"sh", "-c", "kill -9 $$; sleep 5"}, Init: true}, code: 137},
		{name: "init pid", spec: ProcessSpec{Args: []string{"sh", "-c", "test $$ -ne 1 && cat /proc/1/comm"}, Init: true}, want: "exe\n", exactOut: true},
		{name: "proc", spec: ProcessSpec{Args: []string{"sh", "-c", "readlink /proc/1/exe; true"}}, want: "/bin/busybox\n", exactOut: true},
		{name: "dev", spec: ProcessSpec{Args: []string{"sh", "-c", "ls /dev | tr '\\n' ' '; echo x > /dev/null && head -c 4 /dev/zero | wc -c"}}, want: "core fd full null ptmx pts random shm stderr stdin stdout tty urandom zero 4\n", exactOut: true},
		{name: "sys read-only", spec: ProcessSpec{Args: []string{"sh", "-c", "touch /sys/x"}}, code: 1, wantErr: "Read-only file system"},
		{name: "bind", spec: ProcessSpec{Args: []string{"sh", "-c", "cat /data/host.txt; echo new > /data/new.txt"}, Binds: []Bind{{Source: hostDir, Target: "/data"}}}, want: "from host\n"},
		{name: "bind ro", spec: ProcessSpec{Args: []string{"sh", "-c", "touch /ro/x"}, Binds: []Bind{{Source: roDir, Target: "/ro", ReadOnly: true}}}, code: 1, wantErr: "Read-only file system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Rootfs = root
			code, out, errs := runIn(t, tt.spec)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d (stdout %q, stderr %q)", code, tt.code, out, errs)
			}
			if tt.exactOut && out != tt.want || !tt.exactOut && !strings.Contains(out, tt.want) {
				t.Errorf("stdout = %q, want %q", out, tt.want)
			}
			if !strings.Contains(errs, tt.wantErr) {
				t.Errorf("stderr = %q, want %q", errs, tt.wantErr)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(hostDir, "new.txt")); err != nil || string(b) != "new\n" {
		t.Errorf("write through the bind = %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(roDir); len(ents) != 0 {
		t.Errorf("read-only bind was written: %v", ents)
	}
	// The rootfs mount points are left as they were: nothing mounted on the host.
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), root) {
		t.Errorf("mounts leaked to the host:\n%s", m)
	}
}

func TestRunProcessKilledFromOutside(t *testing.T) {
	testenv.RequireRoot(t)
	root := busyboxRoot(t)
	p, err := Start(ProcessSpec{Rootfs: root, Args: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	p.Signal(os.Kill)
	code, err := p.Wait()
	if err != nil || code != 137 {
		t.Errorf("Wait() = %d, %v; want 137", code, err)
	}
}
