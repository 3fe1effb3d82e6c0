package integration

import (
	"regexp"
	"strings"
	"testing"
)

// TestRunVolumeForms: docker's -v forms that scripts and compose files use (a
// review found them refused): -v CONTAINER is an anonymous volume (a dir of the
// container's, out of its diff); z, Z, cached, delegated, rprivate are
// accepted with ro/rw; propagation this runtime cannot give and nocopy on a
// bind are refused by name; rm -v and ps --filter exited=N work.
func TestRunVolumeForms(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	host := t.TempDir()
	t.Cleanup(func() { run(t, "rm", "-f", "vf1") })
	r := run(t, "run", "--name", "vf1", "-v", "/data", "-v", host+":/h:ro,z", "-v", host+":/h2:Z,cached",
		"busybox", "sh", "-c", "echo x > /data/f && cat /data/f && ! touch /h/x 2>/dev/null && touch /h2/y && exit 3")
	if r.Code != 3 || r.Stdout != "x\n" {
		t.Fatalf("run with -v /data, :ro,z and :Z,cached: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "inspect", "-f", `{{range .Mounts}}{{.Type}} {{.Destination}} {{.RW}};{{end}}`, "vf1"); got != "volume /data true;bind /h false;bind /h2 true;\n" {
		t.Errorf("inspect .Mounts = %q", got)
	}
	// A volume has docker's Name (its dir's) and Driver; a bind has neither.
	if got := mustRun(t, "inspect", "-f", `{{range .Mounts}}{{.Type}} {{.Name}} {{.Driver}} {{.Source}};{{end}}`, "vf1"); !regexp.MustCompile(`^volume ([0-9a-f]{16}) local \S+/volumes/([0-9a-f]{16});bind  `).MatchString(got) {
		t.Errorf("inspect .Mounts' Name and Driver = %q", got)
	}
	if got := mustRun(t, "diff", "vf1"); strings.Contains(got, "/data/f") {
		t.Errorf("an anonymous volume's files are in the container's diff:\n%s", got)
	}
	if got := mustRun(t, "ps", "-a", "--filter", "exited=3", "--format", "{{.Names}}"); got != "vf1\n" {
		t.Errorf("ps --filter exited=3 = %q", got)
	}
	if got := mustRun(t, "ps", "-a", "--filter", "exited=0", "--format", "{{.Names}}"); got != "" {
		t.Errorf("ps --filter exited=0 = %q", got)
	}
	for _, v := range []string{host + ":/h:rslave", host + ":/h:nocopy", host + ":/h:ro,rw", host + ":/h:z,Z", "data:/h"} {
		if r := run(t, "run", "--rm", "-v", v, "busybox", "true"); r.Code != 125 || !strings.Contains(r.Stderr, v) && !strings.Contains(r.Stderr, "invalid mode") {
			t.Errorf("-v %s: exit %d, %q; want a refusal naming it", v, r.Code, r.Stderr)
		}
	}
	if got := mustRun(t, "rm", "-v", "vf1"); got != "vf1\n" {
		t.Errorf("rm -v = %q", got)
	}
}

// TestInspectHostConfigRunFlags: inspect -f on docker's HostConfig fields that
// run's flags set (a review found them missing: inspect failed on the field).
func TestInspectHostConfigRunFlags(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	t.Cleanup(func() { run(t, "rm", "-f", "hc1", "hc2") })
	mustRun(t, "run", "--name", "hc1", "--ulimit", "nofile=1024:2048", "--shm-size", "128m", "--tmpfs", "/t:size=1m", "busybox", "true")
	const f = `{{.HostConfig.AutoRemove}} {{.HostConfig.ShmSize}} {{json .HostConfig.Ulimits}} {{json .HostConfig.Tmpfs}} {{json .HostConfig.PortBindings}} {{json .HostConfig.Devices}}`
	if got, want := mustRun(t, "inspect", "-f", f, "hc1"), `false 134217728 [{"Name":"nofile","Hard":2048,"Soft":1024}] {"/t":"size=1m"} {} []`+"\n"; got != want {
		t.Errorf("inspect of run's flags = %q, want %q", got, want)
	}
	mustRun(t, "create", "--rm", "--name", "hc2", "busybox")
	if got, want := mustRun(t, "inspect", "-f", `{{.HostConfig.AutoRemove}} {{.HostConfig.ShmSize}} {{json .HostConfig.Ulimits}}`, "hc2"), "true 67108864 []\n"; got != want {
		t.Errorf("inspect of create --rm = %q, want %q", got, want)
	}
}
