package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
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

// A container claimed for an image rmi removed after the caller resolved it
// (rev19-conc 2: mount, create or run racing a plain rmi, both succeeding) is
// refused with docker's "No such image" and not made; one claimed before the
// rmi makes the rmi refuse (blobstore.TestHoldImageOrdersRemove orders the two).
func TestClaimOfRemovedImageRefused(t *testing.T) {
	ctx := context.Background()
	g, s, img := storeWithImage(t)
	if _, err := s.Remove(ctx, "a:1", imageRemoveOptions(g)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"c1", ""} {
		_, _, _, unlock, err := claimContainer(ctx, g, s, name, "", img, "a:1")
		if err == nil {
			unlock()
		}
		if err == nil || err.Error() != "No such image: a:1" {
			t.Errorf("claim %q of a removed image = %v, want No such image: a:1", name, err)
		}
	}
	if ws, err := listContainers(g.root); err != nil || len(ws) != 0 {
		t.Errorf("%d containers after refused claims (%v), want none", len(ws), err)
	}
}

// Runs that start while others end (rev19-conc 1: "mountpoint ...: mkdir ...:
// no such file or directory" once in 600 parallel run --rm): an ending run
// removes the shared parent of the run mountpoints once it is empty, at any
// moment, and a starting run must make its own dir all the same, in a parent
// that passed the private-dir check.
func TestRunMountpointWhileRunsEnd(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	root := t.TempDir()
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				mp, err := prepareRunMountpoint(root, fmt.Sprintf("r%d-%d", k, i))
				if err != nil {
					t.Error(err)
					return
				}
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Dir(mp), &st); err == nil && st.Mode&0o077 != 0 {
					t.Errorf("run dir %s made with mode %o, want 0700", filepath.Dir(mp), st.Mode&0o777)
					return
				}
				os.Remove(mp) // as unmountAfterRun does
				os.Remove(filepath.Dir(mp))
			}
		}()
	}
	wg.Wait()
}
