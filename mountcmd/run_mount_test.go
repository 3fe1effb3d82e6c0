package mountcmd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
	if _, err := mountForRun(context.Background(), g, s, img, "a:1", "r1", "", false); err == nil {
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

// TestMountForRunChecksUnderLock: a start (reuse) of a container that is gone
// by the time it holds the lock (a rename or rm raced it) makes none in its
// place, and a run --name of a name taken meanwhile is refused, not handed the
// other container's changes. Both checks are the ones made under the lock.
func TestMountForRunChecksUnderLock(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	g, s, img := storeWithImage(t)
	_, err := mountForRun(context.Background(), g, s, img, "a:1", "gone", "", true)
	if !errors.Is(err, errNoSuchContainer) {
		t.Errorf("start of a missing container: %v, want no such container", err)
	}
	if w, _ := newWorkContainer(g.root, "gone"); w.exists() {
		t.Errorf("start of a missing container made one")
	}
	o := &runOptions{name: "taken"}
	if _, err := createContainer(context.Background(), g, o, "a:1", []string{"true"}); err != nil {
		t.Fatal(err)
	}
	_, err = mountForRun(context.Background(), g, s, img, "a:1", "taken", "", false)
	if err == nil || !strings.Contains(err.Error(), `The container name "/taken" is already in use`) {
		t.Errorf("run --name of a taken name: %v", err)
	}
	w, _ := newWorkContainer(g.root, "taken")
	if st, err := w.load(); err != nil || st.Mountpoint != "" {
		t.Errorf("the taken container after the refused run: %+v, %v", st, err)
	}
}
