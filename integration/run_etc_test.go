package integration

import "testing"

// TestRunHostnameResolves: the container's hostname (its short ID, or -h) is
// in its /etc/hosts, as docker's is on any network; it was in neither the
// host's copy nor anywhere else, and `hostname -i` failed.
func TestRunHostnameResolves(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	for _, args := range [][]string{nil, {"-h", "web.example.org"}, {"--add-host", "other:10.1.2.3"}} {
		r := run(t, append(append([]string{"run", "--rm"}, args...), "busybox", "sh", "-c", "hostname -i; grep -c \"[[:space:]]$(hostname)\\([[:space:]]\\|$\\)\" /etc/hosts")...)
		if r.Code != 0 || r.Stdout != "127.0.0.1\n1\n" {
			t.Errorf("run %v: hostname -i, its lines in /etc/hosts: exit %d, %q %q", args, r.Code, r.Stdout, r.Stderr)
		}
	}
	if got := mustRun(t, "run", "--rm", "-h", "web.example.org", "busybox", "grep", "web", "/etc/hosts"); got != "127.0.0.1\tweb.example.org web\n" {
		t.Errorf("-h web.example.org: /etc/hosts has %q, want the FQDN and the bare name (docker's)", got)
	}
}

// TestRunReadOnlyEtcFiles: with --read-only, /etc/hosts, /etc/resolv.conf and
// /etc/hostname are read-only too, as docker's (they were writable binds);
// without it they stay writable.
func TestRunReadOnlyEtcFiles(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	script := "for f in hosts resolv.conf hostname; do echo x 2>/dev/null >> /etc/$f && echo $f; done; true"
	if got := mustRun(t, "run", "--rm", "--read-only", "busybox", "sh", "-c", script); got != "" {
		t.Errorf("run --read-only: wrote to %q", got)
	}
	if got := mustRun(t, "run", "--rm", "busybox", "sh", "-c", script); got != "hosts\nresolv.conf\nhostname\n" {
		t.Errorf("run: wrote to %q, want all three", got)
	}
}
