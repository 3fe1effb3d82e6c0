package blobstore

import (
	"context"
	"os"
	"path/filepath"
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
