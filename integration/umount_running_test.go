package integration

import (
	"strings"
	"testing"
)

// TestUmountRunningContainer: umount of a running container's mountpoint took its
// root from under it (the server aborted the connection its mount namespace
// held; a code review), and before that failed after 30 s. It is refused now,
// and umount -a leaves running containers alone, as stop is what ends them.
func TestUmountRunningContainer(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "-d", "--name", "up", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "up") })
	mp := strings.TrimSpace(mustRun(t, "inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", "up"))
	for _, args := range [][]string{{"umount", mp}, {"umount", "up"}} {
		r := run(t, args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "it is running") {
			t.Errorf("%s: exit %d, %q; want a refusal", strings.Join(args, " "), r.Code, r.Stderr)
		}
	}
	if r := run(t, "umount", "-a"); r.Code != 0 {
		t.Errorf("umount -a with a running container: exit %d, %s", r.Code, r.Stderr)
	}
	if got := mustRun(t, "exec", "up", "cat", "/etc/passwd"); got == "" {
		t.Error("the container's root reads nothing after the refused unmounts")
	}
	if got := strings.TrimSpace(mustRun(t, "inspect", "--format", "{{.State.Status}}", "up")); got != "running" {
		t.Errorf("state after the refused unmounts: %s, want running", got)
	}
}
