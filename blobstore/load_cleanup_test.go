package blobstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// failIndexWrites makes index.json writes fail as on a full disk, for this test.
func failIndexWrites(t *testing.T) {
	t.Helper()
	writeIndexFault = func() error { return unix.ENOSPC }
	t.Cleanup(func() { writeIndexFault = nil })
}

// A load that fails writing index.json (a full disk) has already moved its blobs
// into blobs/: it must take them out again, and keep the ones the store had.
func TestFailedLoadRemovesPlacedBlobs(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	base := newTestImage(t, "base", 1, None, "base:latest")
	load(t, s, classicDockerArchive(t, base))
	before := snapshot(t, s.Dir())
	failIndexWrites(t)
	// base's blobs are in the store already, the new image's are not
	archive := ociArchive(t, base, newTestImage(t, "new", 2, Gzip, "new:1"))
	_, err := s.Load(ctx, bytes.NewReader(archive), LoadOptions{})
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Load = %v, want %v", err, unix.ENOSPC)
	}
	if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
		t.Fatalf("store changed by a failed load:\n%s", d)
	}
}

// While another writer holds a Lease the failed load cannot know who else uses
// its blobs: it leaves them, and GC removes them.
func TestFailedLoadLeavesBlobsToGCUnderLease(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	failIndexWrites(t)
	release, err := s.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ti := newTestImage(t, "new", 1, Gzip, "new:1")
	if _, err := s.Load(ctx, bytes.NewReader(ociArchive(t, ti)), LoadOptions{}); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Load = %v, want %v", err, unix.ENOSPC)
	}
	release()
	if !s.Has(sha(ti.config)) {
		t.Fatalf("config blob removed while a Lease was held")
	}
	res, err := s.GC(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 3 || s.Has(sha(ti.config)) {
		t.Fatalf("GC removed %v, want the failed load's 3 blobs", res.Removed)
	}
}

// A load removes the spools killed loads left in tmp/ at once, however young:
// every load-* dir nobody holds locked (a live load locks its spool before it
// has that name). An mkload-* dir (a load between its mkdir and its flock) goes
// only when old and unlocked.
func TestLoadRemovesStaleSpools(t *testing.T) {
	s := newStore(t)
	mk := func(name string, age time.Duration) string {
		p := filepath.Join(s.tmpDir(), name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "part-1"), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		m := time.Now().Add(-age)
		if err := os.Chtimes(p, m, m); err != nil {
			t.Fatal(err)
		}
		return p
	}
	killed := mk(spoolPrefix+"killed", time.Hour)
	killedNow := mk(spoolPrefix+"young", 0)
	killedMk := mk(newSpoolPrefix+"killed", time.Hour)
	youngMk := mk(newSpoolPrefix+"young", 0)
	held := mk(spoolPrefix+"held", time.Hour) // a slow load, still running
	d, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := flockRetry(d, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	load(t, s, ociArchive(t, newTestImage(t, "x", 1, Gzip, "x:1")))
	for _, p := range []string{killed, killedNow, killedMk} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("killed load's spool %s after a load: %v, want it removed", filepath.Base(p), err)
		}
	}
	for _, p := range []string{youngMk, held} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("spool %s after a load: %v, want it kept", filepath.Base(p), err)
		}
	}
}

// A load's spool has its load-* name only while locked: another load's
// removeStaleSpools, which now takes any unlocked load-* at once, never sees it
// unlocked, also between its mkdir and its flock.
func TestSpoolLockedBeforeNamed(t *testing.T) {
	s := newStore(t)
	dir, remove, err := s.newSpoolDir()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(dir), spoolPrefix) {
		t.Errorf("spool dir %s, want %s*", dir, spoolPrefix)
	}
	if ents, _ := os.ReadDir(s.tmpDir()); len(ents) != 1 {
		t.Errorf("tmp/ holds %v, want the spool alone (no mkload-* left)", ents)
	}
	s.removeStaleSpools()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("live spool after removeStaleSpools: %v", err)
	}
	remove()
	if ents, _ := os.ReadDir(s.tmpDir()); len(ents) != 0 {
		t.Errorf("tmp/ after remove: %v, want it empty", ents)
	}
}

// A blob another writer places while a load runs (a commit of a working container
// Puts the same layer) is that writer's: the load did not move it in, so its failure
// must not take it out again.
func TestFailedLoadKeepsBlobPlacedByAnother(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	failIndexWrites(t)
	ti := newTestImage(t, "new", 1, Gzip, "new:1")
	layer := sha(ti.layers[0])
	loadPlaceHook = func(d digest.Digest) {
		if d != layer {
			return
		}
		if _, _, err := s.Put(ctx, bytes.NewReader(ti.layers[0]), layer); err != nil {
			t.Errorf("Put(layer) = %v", err)
		}
	}
	t.Cleanup(func() { loadPlaceHook = nil })
	if _, err := s.Load(ctx, bytes.NewReader(ociArchive(t, ti)), LoadOptions{}); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Load = %v, want %v", err, unix.ENOSPC)
	}
	if !s.Has(layer) {
		t.Fatalf("layer %s another writer placed was removed by the failed load", layer)
	}
	if s.Has(sha(ti.config)) {
		t.Fatalf("config blob the failed load placed is still there, want it taken out")
	}
}

// A load removes its spool while it still holds the spool's lock: unlocked, the
// dir would look like a killed load's to another load's removeStaleSpools.
func TestLoadRemovesSpoolWhileLocked(t *testing.T) {
	s := newStore(t)
	removed := 0
	removeSpoolDir = func(dir string) error {
		removed++
		d, err := os.Open(dir)
		if err != nil {
			t.Errorf("open spool %s: %v", dir, err)
		} else {
			if err := flockRetry(d, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
				t.Errorf("flock(spool) while it is removed = %v, want %v (the load's lock held)", err, unix.EWOULDBLOCK)
			}
			d.Close()
		}
		return os.RemoveAll(dir)
	}
	t.Cleanup(func() { removeSpoolDir = os.RemoveAll })
	load(t, s, ociArchive(t, newTestImage(t, "x", 1, Gzip, "x:1")))
	if removed != 1 {
		t.Fatalf("spool removed %d times, want 1", removed)
	}
}
