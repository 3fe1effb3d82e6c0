package blobstore

import (
	"context"
	"errors"
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

// tagRaceStoreRemoved is tagRaceStore after an rmi of keep:1, and the image
// keep:1 named (resolved before the rmi, as a racing command holds it).
func tagRaceStoreRemoved(t *testing.T) (*Store, *Image) {
	t.Helper()
	s := tagRaceStore(t)
	img, err := s.Resolve("keep:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(context.Background(), "keep:1", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	return s, img
}

// checkUsable fails unless every entry of index.json still reads (ImagesAndBroken
// verifies each manifest and config, and lists what does not read as broken).
func checkUsable(t *testing.T, s *Store) {
	t.Helper()
	_, broken, err := s.ImagesAndBroken()
	if err != nil {
		t.Fatalf("ImagesAndBroken() = %v, want the store usable", err)
	}
	for _, b := range broken {
		t.Errorf("index.json entry %s does not read: %v", b.Name(), b.Err)
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
			s, img := tagRaceStoreRemoved(t)
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

// A tag that lands between rmi's last look at the image and its delete (from a
// writer that does not wait for Remove) keeps the image: rmi then only untags.
func TestRemoveKeepsImageTaggedMeanwhile(t *testing.T) {
	ctx := context.Background()
	s := tagRaceStore(t)
	calls := 0
	opts := RemoveOptions{InUse: func(img *Image) ([]string, error) {
		// the second call is deleteHelper's conflict check, just before the delete
		if calls++; calls == 2 {
			if err := tagUnordered(ctx, s, img, "new:1"); err != nil {
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

// Tag and rmi+GC in parallel, in each order, forced by tagHook: Tag has resolved
// the image, and the other goroutine's rmi and GC either run to the end before Tag
// takes its Lease, or start only once Tag is done. Either way the store stays
// usable, and a tag that succeeded names an image that is there.
func TestTagRacesRemove(t *testing.T) {
	ctx := context.Background()
	for _, rmiFirst := range []bool{true, false} {
		name := "tag-then-rmi-gc"
		if rmiFirst {
			name = "rmi-gc-then-tag"
		}
		t.Run(name, func(t *testing.T) {
			s := tagRaceStore(t)
			img, err := s.Resolve("keep:1")
			if err != nil {
				t.Fatal(err)
			}
			start, done := make(chan struct{}), make(chan struct{})
			hooked := false
			tagHook = func() {
				if rmiFirst {
					hooked = true
					close(start)
					<-done
				}
			}
			t.Cleanup(func() { tagHook = nil })
			var rmErr error
			go func() {
				defer close(done)
				<-start
				if _, rmErr = s.Remove(ctx, "keep:1", RemoveOptions{}); rmErr == nil {
					_, rmErr = s.GC(ctx, false, nil)
				}
			}()
			tagErr := s.Tag(ctx, img, "new:1")
			if !rmiFirst {
				close(start)
			}
			<-done
			if rmiFirst && !hooked {
				t.Fatal("Tag never called tagHook (the test lost its hook)")
			}
			if rmErr != nil {
				t.Fatalf("Remove, GC = %v", rmErr)
			}
			checkUsable(t, s)
			switch {
			case rmiFirst && !errors.Is(tagErr, ErrNotFound):
				t.Fatalf("Tag after rmi and GC = %v, want %v", tagErr, ErrNotFound)
			case !rmiFirst && tagErr != nil:
				t.Fatalf("Tag before rmi = %v, want nil", tagErr)
			case tagErr == nil:
				if _, err := s.Resolve("new:1"); err != nil {
					t.Fatalf("Tag succeeded, Resolve(new:1) = %v", err)
				}
			}
		})
	}
}
