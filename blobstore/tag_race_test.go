package blobstore

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// tagRaceStore is a store with keep:1 and an unrelated other:1.
func tagRaceStore(t *testing.T) *Store {
	t.Helper()
	s := newStore(t)
	writeTestImage(t, s, newTestImage(t, "keep", 1, Gzip, "keep:1"))
	writeTestImage(t, s, newTestImage(t, "other", 1, Gzip, "other:1"))
	return s
}

// checkUsable fails unless every image in the store still reads (Images verifies
// each manifest and config).
func checkUsable(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.Images(); err != nil {
		t.Fatalf("Images() = %v, want the store usable", err)
	}
	if _, err := s.Resolve("other:1"); err != nil {
		t.Fatalf("Resolve(other:1) = %v", err)
	}
}

// tag resolves, then an rmi (and its GC) removes the image, then tag takes the
// index lock: it must not record a tag for an image that is gone.
func TestTagAfterRemove(t *testing.T) {
	ctx := context.Background()
	for _, gc := range []bool{false, true} {
		name := "untagged-and-deleted"
		if gc {
			name = "and-collected"
		}
		t.Run(name, func(t *testing.T) {
			s := tagRaceStore(t)
			img, err := s.Resolve("keep:1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Remove(ctx, "keep:1", RemoveOptions{}); err != nil {
				t.Fatal(err)
			}
			if gc {
				if _, err := s.GC(ctx, false, nil); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, s.Dir())
			if err := s.Tag(ctx, img, "new:1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Tag(removed image, new:1) = %v, want %v", err, ErrNotFound)
			}
			if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
				t.Fatalf("store changed by a refused tag:\n%s", d)
			}
			checkUsable(t, s)
		})
	}
}

// A tag that lands between rmi's last look at the image and its delete keeps the
// image: rmi then only untags.
func TestRemoveKeepsImageTaggedMeanwhile(t *testing.T) {
	ctx := context.Background()
	s := tagRaceStore(t)
	calls := 0
	opts := RemoveOptions{InUse: func(img *Image) ([]string, error) {
		// the second call is deleteHelper's conflict check, just before the delete
		if calls++; calls == 2 {
			if err := s.Tag(ctx, img, "new:1"); err != nil {
				t.Errorf("Tag(new:1) = %v", err)
			}
		}
		return nil, nil
	}}
	got, err := s.Remove(ctx, "keep:1", opts)
	if err != nil || lines(got) != "Untagged: keep:1" {
		t.Fatalf("Remove(keep:1) = %q, %v, want only the untag", lines(got), err)
	}
	if calls < 2 {
		t.Fatalf("InUse called %d times, want 2 (the test lost its hook)", calls)
	}
	if _, err := s.GC(ctx, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve("new:1"); err != nil {
		t.Fatalf("Resolve(new:1) = %v, want the image kept", err)
	}
	checkUsable(t, s)
}

// Tag and rmi+GC in parallel: whoever wins, the store stays usable, and a tag that
// succeeded names an image that is there.
func TestTagRacesRemove(t *testing.T) {
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		s := tagRaceStore(t)
		img, err := s.Resolve("keep:1")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var tagErr, rmErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			tagErr = s.Tag(ctx, img, "new:1")
		}()
		go func() {
			defer wg.Done()
			if _, rmErr = s.Remove(ctx, "keep:1", RemoveOptions{}); rmErr == nil {
				_, rmErr = s.GC(ctx, false, nil)
			}
		}()
		wg.Wait()
		if rmErr != nil {
			t.Fatalf("round %d: Remove = %v", i, rmErr)
		}
		checkUsable(t, s)
		switch {
		case tagErr == nil:
			if _, err := s.Resolve("new:1"); err != nil {
				t.Fatalf("round %d: Tag succeeded, Resolve(new:1) = %v", i, err)
			}
		case !errors.Is(tagErr, ErrNotFound):
			t.Fatalf("round %d: Tag = %v, want nil or %v", i, tagErr, ErrNotFound)
		}
	}
}
