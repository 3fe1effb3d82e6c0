package mountcmd

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A run whose mount fails after its container was made (here its mountpoint is
// taken by a file) reports the error and removes the container; it used to panic
// on the nil container its error return had set.
func TestMountForRunFailureRemovesContainer(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	g, s, img := storeWithImage(t)
	mp := runMountpoint(g.root, "r1")
	if err := os.MkdirAll(filepath.Dir(mp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := mountForRun(context.Background(), g, s, img, "a:1", "r1"); err == nil {
		t.Fatal("mountForRun() with its mountpoint a file = nil, want an error")
	}
	w, err := newWorkContainer(g.root, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if w.exists() {
		t.Errorf("container r1 left behind by a failed run")
	}
}
