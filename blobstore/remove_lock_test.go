package blobstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
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
		s, img := tagRaceStoreRemoved(t)
		called := false
		err := s.HoldImage(ctx, img.ID, func() error { called = true; return nil })
		if !errors.Is(err, ErrNotFound) || called {
			t.Fatalf("HoldImage of a removed image = %v (fn called: %v), want %v and no call", err, called, ErrNotFound)
		}
		checkUsable(t, s)
	})
}

// A pull by digest records its image untagged, then its repo digest (rev19-diff
// 2b: an image prune in between took it for dangling, and the pull still said it
// was done). AddManifestRef holds Remove off across both.
func TestAddManifestRefHoldsRemoveOff(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	ti := newTestImage(t, "pulled", 1, Gzip)
	for _, b := range append([][]byte{ti.config, ti.manifest()}, ti.layers...) {
		if _, _, err := s.Put(ctx, bytes.NewReader(b), ""); err != nil {
			t.Fatal(err)
		}
	}
	mb := ti.manifest()
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: sha(mb), Size: int64(len(mb))}
	rd := "127.0.0.1:5000/pulled@" + desc.Digest.String()
	rmDone := make(chan error, 1)
	addManifestRefHook = func() {
		img, err := s.reload(desc.Digest)
		if err != nil {
			t.Errorf("reload between the records: %v", err)
			return
		}
		go func() {
			_, err := s.Remove(ctx, img.ID.String(), RemoveOptions{})
			rmDone <- err
		}()
		select {
		case err := <-rmDone:
			t.Errorf("rmi of the untagged image returned (%v) between its records", err)
			rmDone <- err
		case <-time.After(stillRunning):
		}
	}
	t.Cleanup(func() { addManifestRefHook = nil })
	img, err := s.AddManifestRef(ctx, desc, rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-rmDone; err != nil {
		t.Fatalf("rmi after the pull = %v", err) // then it removes the image, digest and all
	}
	if _, err := s.Resolve(img.ID.String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve after rmi = %v, want %v", err, ErrNotFound)
	}
	if got, _ := s.RepoDigests(desc.Digest); len(got) != 0 {
		t.Fatalf("repo digests of the removed image: %q, want none", got)
	}
}

// A store on a read-only filesystem (rev19-diff 3: an older layerfs mounted
// images from one, and this one failed to make remove.lock there): HoldImage
// goes on without the lock, which no Remove could need there.
func TestHoldImageReadOnlyStore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a read-only bind mount")
	}
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	img := writeTestImage(t, s, newTestImage(t, "ro", 1, Gzip, "ro:1"))
	os.Remove(filepath.Join(dir, privDir, removeLockName)) // as a store made before it
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	called := false
	if err := ro.HoldImage(ctx, img.ID, func() error { called = true; return nil }); err != nil || !called {
		t.Fatalf("HoldImage on a read-only store = %v (fn called: %v), want it run", err, called)
	}
}

// A Remove that waits for a reference being added says so once, through
// OnRemoveWait, with the holder's PID (rev19-diff 4: rmi waited without a word).
func TestRemoveWaitNotice(t *testing.T) {
	ctx := context.Background()
	s := tagRaceStore(t)
	img, err := s.Resolve("keep:1")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	var pids atomic.Pointer[[]int]
	s.OnRemoveWait = func(p []int) { calls.Add(1); pids.Store(&p) }
	rmDone := make(chan error, 1)
	err = s.HoldImage(ctx, img.ID, func() error {
		go func() {
			_, err := s.Remove(ctx, "other:1", RemoveOptions{})
			rmDone <- err
		}()
		time.Sleep(stillRunning)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-rmDone; err != nil {
		t.Fatalf("Remove(other:1) = %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("OnRemoveWait called %d times, want once", calls.Load())
	}
	if p := pids.Load(); p == nil || !slices.Contains(*p, os.Getpid()) {
		t.Errorf("OnRemoveWait's holders = %v, want this process among them", p)
	}
}
