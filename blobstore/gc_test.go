package blobstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// index.json and the other metadata files are replaced through a temp file in
// tmp/ by writers that hold no Lease: GC must not delete one in flight (the
// write would fail), but does clear one a killed writer left long ago.
func TestGCSparesInFlightMetaTemp(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	fresh := filepath.Join(s.tmpDir(), metaTempPrefix+"inflight")
	stale := filepath.Join(s.tmpDir(), metaTempPrefix+"killed")
	for _, p := range []string{fresh, stale} {
		if err := os.WriteFile(p, []byte(`{"manifests":[]}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * metaTempGrace)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	res, err := s.GC(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("in-flight temp file after GC: %v, want it kept", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file after GC: %v, want it removed", err)
	}
	if res.TempFiles != 1 {
		t.Errorf("GC TempFiles = %d, want 1", res.TempFiles)
	}
}

// A GC that waits for a Lease says so once, with the holders' PIDs, and gives
// up when its context ends: the blocked flock(2) was restarted after every
// signal, so a `layerfs gc` or `rmi` waiting for a long build ignored ^C and
// SIGTERM (found by the crash review).
func TestGCWaitForLeaseEndsWithContext(t *testing.T) {
	s := newStore(t)
	release, err := s.Lease(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	waited := make(chan []int, 1)
	s.OnGCWait = func(pids []int) { waited <- pids }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.GC(ctx, false, nil); done <- err }()
	select {
	case pids := <-waited:
		if !slices.Contains(pids, os.Getpid()) {
			t.Errorf("GC waits for %v, want this process (%d), which holds the lease", pids, os.Getpid())
		}
	case err := <-done:
		t.Fatalf("GC under a lease did not wait: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("GC under a lease did not tell that it waits")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrLockWaitEnded) {
			t.Errorf("GC cancelled while it waited: %v, want ErrLockWaitEnded and context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GC went on waiting for the lease after its context ended")
	}
	// The lease still works, and a GC once it is gone runs.
	release()
	s.OnGCWait = nil
	if _, err := s.GC(context.Background(), false, nil); err != nil {
		t.Errorf("GC after the lease: %v", err)
	}
}
