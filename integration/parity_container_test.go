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
