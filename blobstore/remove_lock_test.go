package blobstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tagUnordered is Tag as a writer that does not wait for Remove (removeLockName)
// makes it, an older layerfs: the only way a tag can still land while Remove
// runs, which Remove's retries are for.
func tagUnordered(ctx context.Context, s *Store, img *Image, ref string) error {
	refs, err := parseTags([]string{ref})
	if err != nil {
		return err
	}
	return s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		if !indexes(idx, img) {
			return false, ErrNotFound
		}
		setTags(idx, img.Descriptor, refs)
		return true, nil
	})
}

// stillRunning is how long a test lets a call that must wait for a lock try to
// finish before it says the call did not wait: the call passes by waiting, so a
// slow machine cannot fail it.
const stillRunning = 300 * time.Millisecond

// rmi by ID and a tag of the same image at once (rev19-conc 3): the tag, fired
// from rmi's conflict check, waits for the rmi and then finds the image gone. It
// used to land in between, and rmi's retry untagged it and deleted the image:
// both succeeded, and the tag was gone.
func TestTagWaitsForRemove(t *testing.T) {
	ctx := context.Background()
	s := tagRaceStore(t)
	img := writeTestImage(t, s, newTestImage(t, "victim", 1, Gzip, "victim:1"))
	tagDone := make(chan error, 1)
	fired := false
	opts := RemoveOptions{InUse: func(got *Image) ([]string, error) {
		if !fired {
			fired = true
			go func() { tagDone <- s.Tag(ctx, got, "new:1") }()
			select {
			case err := <-tagDone:
				t.Errorf("Tag during rmi returned (%v) before rmi ended", err)
			case <-time.After(stillRunning):
			}
		}
		return nil, nil
	}}
	got, err := s.Remove(ctx, img.ID.String(), opts)
	if !fired {
		t.Fatal("InUse never called (the test lost its hook)")
	}
	if err != nil || lines(got) != "Untagged: victim:1\nDeleted: "+img.ID.String() {
		t.Fatalf("Remove(id) = %q, %v", lines(got), err)
	}
	select {
	case err := <-tagDone:
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Tag after rmi = %v, want %v", err, ErrNotFound)
		}
	case <-time.After(time.Minute):
		t.Fatal("Tag still waiting a minute after rmi ended")
	}
	if _, err := s.Resolve("new:1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve(new:1) = %v, want %v", err, ErrNotFound)
	}
	checkUsable(t, s)
}

// HoldImage against Remove (rev19-conc 2: a mount or create made a container
// of an image a plain rmi deleted at the same moment, both succeeding). A
// Remove that starts while a container is being recorded waits for it and
// then sees it in use; a HoldImage after a Remove finds the image gone and
// records nothing.
func TestHoldImageOrdersRemove(t *testing.T) {
	ctx := context.Background()
	t.Run("hold-first", func(t *testing.T) {
		s := tagRaceStore(t)
		img, err := s.Resolve("keep:1")
		if err != nil {
			t.Fatal(err)
		}
		var users atomic.Pointer[[]string] // the flock orders them, unseen by -race
		users.Store(&[]string{})
		opts := RemoveOptions{InUse: func(*Image) ([]string, error) { return *users.Load(), nil }}
		rmDone := make(chan error, 1)
		var rmErr error
		rmEnded := false
		err = s.HoldImage(ctx, img.ID, func() error {
			go func() {
				_, err := s.Remove(ctx, "keep:1", opts)
				rmDone <- err
			}()
			select {
			case rmErr = <-rmDone:
				rmEnded = true
				t.Errorf("rmi returned (%v) while a container was being recorded", rmErr)
			case <-time.After(stillRunning):
			}
			users.Store(&[]string{"c1"}) // the container's state, written
			return nil
		})
		if err != nil {
			t.Fatalf("HoldImage = %v", err)
		}
		if !rmEnded {
			rmErr = <-rmDone
		}
		var conflict *ConflictError
		if err := rmErr; !errors.As(err, &conflict) {
			t.Fatalf("rmi of an image a container uses = %v, want a conflict", err)
		}
		if _, err := s.Resolve("keep:1"); err != nil {
			t.Fatalf("Resolve(keep:1) after a refused rmi = %v", err)
		}
	})
	t.Run("remove-first", func(t *testing.T) {
		s := tagRaceStore(t)
		img, err := s.Resolve("keep:1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Remove(ctx, "keep:1", RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		called := false
		err = s.HoldImage(ctx, img.ID, func() error { called = true; return nil })
		if !errors.Is(err, ErrNotFound) || called {
			t.Fatalf("HoldImage of a removed image = %v (fn called: %v), want %v and no call", err, called, ErrNotFound)
		}
		checkUsable(t, s)
	})
}
