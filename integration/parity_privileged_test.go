package integration

import (
	"strings"
	"testing"
)

// TestPrivilegedHostDevices: --privileged gives the host's device nodes and a
// writable /sys, as docker's does (a review found only the default six nodes
// and a read-only /sys: users run --privileged for /dev/fuse, /dev/loop*,
// /dev/kvm); without it, neither.
func TestPrivilegedHostDevices(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	script := `ls -l /dev/fuse; grep " /sys " /proc/mounts | cut -d" " -f4 | cut -d, -f1`
	got := mustRun(t, "run", "--rm", "--privileged", "busybox", "sh", "-c", script)
	if !strings.Contains(got, "10, 229") || !strings.HasSuffix(got, "\nrw\n") {
		t.Errorf("--privileged: /dev/fuse and /sys:\n%s\nwant the host's node and rw", got)
	}
	r := run(t, "run", "--rm", "busybox", "sh", "-c", script)
	if strings.Contains(r.Stdout, "10, 229") || !strings.HasSuffix(r.Stdout, "ro\n") {
		t.Errorf("not privileged: /dev/fuse and /sys:\n%s\nwant no node and ro", r.Stdout)
	}
}
