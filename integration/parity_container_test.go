package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParityContainerOutlivesRmi: as in docker, rmi -f of a stopped container's
// image only untags it; the container's diff, export and commit still work (its
// image is read from the blobs gc keeps for it).
func TestParityContainerOutlivesRmi(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--name", "c1", e.image, dir)
	if err := os.WriteFile(filepath.Join(dir, "etc", "added"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("umount", "c1")
	e.ok("rmi", "-f", e.image)
	if out := e.ok("diff", "c1"); !strings.Contains(out, "A /etc/added") {
		t.Errorf("diff c1 after rmi -f of its image = %q, want A /etc/added", out)
	}
	e.ok("commit", "c1", "after:rmi")
	if out := e.ok("images", "--format", "{{.Repository}}:{{.Tag}}"); out != "after:rmi\n" {
		t.Errorf("images after commit = %q", out)
	}
}

// TestParityStartAfterRmi: as in docker, containers whose image rmi -f deleted
// still start (attached or not) and restart, with the image's config and their
// own changes: start reads the image from the container, not by its ID again.
func TestParityStartAfterRmi(t *testing.T) {
	requireRunner(t)
	importRunner(t, "img:1", `ENV X=fromimage`, `CMD ["sh"]`)
	mustRun(t, "create", "--name", "c1", "img:1", "sh", "-c", "echo $X; cat /root/f 2>/dev/null; echo kept > /root/f")
	mustRun(t, "run", "--name", "r1", "img:1", "sh", "-c", "echo ran")
	if r := run(t, "rmi", "img:1"); r.Code == 0 {
		t.Fatalf("rmi img:1 with stopped containers succeeded: %q", r.Stdout)
	}
	mustRun(t, "rmi", "-f", "img:1")
	if r := run(t, "start", "-a", "c1"); r.Code != 0 || r.Stdout != "fromimage\n" {
		t.Errorf("start -a c1 after rmi -f of its image: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := run(t, "start", "-a", "c1"); r.Code != 0 || r.Stdout != "fromimage\nkept\n" {
		t.Errorf("second start -a c1: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := run(t, "start", "-a", "r1"); r.Code != 0 || r.Stdout != "ran\n" {
		t.Errorf("start -a r1 (made by run) after rmi -f: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, verb := range []string{"start", "restart"} {
		if got := mustRun(t, verb, "c1"); got != "c1\n" {
			t.Errorf("%s c1 = %q", verb, got)
		}
		if got := mustRun(t, "wait", "c1"); got != "0\n" {
			t.Errorf("wait c1 after %s = %q, want 0", verb, got)
		}
	}
}
