package fs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
)

// busyboxLayer makes a lower with /bin/busybox and its applet symlinks, /etc and a
// root-owned file.
func busyboxLayer(t *testing.T) string {
	t.Helper()
	bb := testenv.RequireTool(t, "busybox")
	d := t.TempDir()
	for _, p := range []string{"bin", "etc", "tmp", "root"} {
		must(t, os.MkdirAll(filepath.Join(d, p), 0o755))
	}
	must(t, os.Chmod(filepath.Join(d, "tmp"), 0o1777))
	must(t, os.Chmod(filepath.Join(d, "root"), 0o700))
	data, err := os.ReadFile(bb)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(d, "bin/busybox"), data, 0o755))
	out, err := exec.Command(bb, "--list").Output()
	must(t, err)
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			must(t, os.Symlink("busybox", filepath.Join(d, "bin", a)))
		}
	}
	must(t, os.WriteFile(filepath.Join(d, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(d, "etc/owned"), []byte("root only\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(d, "root/secret"), []byte("s\n"), 0o600))
	return d
}

func TestBusyboxChroot(t *testing.T) {
	testenv.RequireRoot(t)
	u := mountUnion(t, cow.FormatOCI, busyboxLayer(t))
	sh := func(cred *syscall.Credential, script string) (string, error) {
		// chroot(8) chroots and execs the mount's sh: a Go child does that
		// before its exec, while this process, the mount's server, waits for
		// the exec with a P held (vfork), so a request it sends there can
		// wait forever on a stop-the-world (see inMount).
		args := []string{u.mnt, "/bin/sh", "-c", script}
		if cred != nil {
			args = append([]string{fmt.Sprintf("--userspec=%d:%d", cred.Uid, cred.Gid)}, args...)
		}
		cmd := exec.Command("/usr/sbin/chroot", args...)
		cmd.Env = []string{"PATH=/bin"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := sh(nil, `set -e
echo hello > /tmp/new
mkdir -p /var/lib/x && echo deep > /var/lib/x/f
rm /etc/owned
sed -i s/nobody/nobody2/ /etc/passwd
ln -s /tmp/new /tmp/link
cat /tmp/link
ls /bin | wc -l
rm -rf /bin/vi
test ! -e /bin/vi
cp /bin/busybox /tmp/busybox && /tmp/busybox true
echo ok`)
	if err != nil || !strings.HasSuffix(out, "ok\n") || !strings.HasPrefix(out, "hello\n") {
		t.Fatalf("chroot script: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(u.upper, "var/lib/x/f")); string(b) != "deep\n" {
		t.Errorf("upper var/lib/x/f = %q", b)
	}
	if _, err := os.Lstat(filepath.Join(u.upper, ".wh.etc")); err == nil {
		t.Errorf("whited out all of etc")
	}
	if _, err := os.Lstat(filepath.Join(u.upper, "etc", ".wh.owned")); err != nil {
		t.Errorf("no whiteout for etc/owned: %v", err)
	}

	// A non-root user reads what is world-readable and cannot write root's files
	// (the kernel checks permissions: default_permissions).
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	if out, err := sh(nobody, "cat /etc/passwd"); err != nil || !strings.Contains(out, "nobody2") {
		t.Errorf("nobody cat /etc/passwd: %v %q", err, out)
	}
	for _, script := range []string{
		"echo x >> /etc/passwd",
		"rm /bin/busybox",
		"cat /root/secret",
		"touch /etc/newfile",
		"chmod 777 /etc/passwd",
	} {
		if out, err := sh(nobody, script); err == nil {
			t.Errorf("nobody %q succeeded: %s", script, out)
		}
	}
	if out, err := sh(nobody, "echo mine > /tmp/nobody && cat /tmp/nobody"); err != nil || out != "mine\n" {
		t.Errorf("nobody writes /tmp: %v %q", err, out)
	}
	var st syscall.Stat_t
	must(t, syscall.Lstat(filepath.Join(u.upper, "tmp/nobody"), &st))
	if st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("tmp/nobody owned by %d:%d, want 65534:65534", st.Uid, st.Gid)
	}
}
