package blobstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// TestFailedLoadSparesContainerBlobs: a load that fails at its index.json write
// takes out the blobs it placed, but not one a working container's image names
// (LoadOptions.Roots, as GCWith's roots): a container made meanwhile from another
// image sharing the layer, whose image was then removed with rmi -f, still needs
// it. dropPlaced judged by index.json alone and removed it.
func TestFailedLoadSparesContainerBlobs(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := newTestImage(t, "shared", 1, Gzip, "a:1")
	// b: another image (its own config) with a's layer; only a container names it
	b := &testImage{layers: a.layers, comps: a.comps}
	var cfg map[string]any
	if err := json.Unmarshal(a.config, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["config"].(map[string]any)["Labels"] = map[string]string{"name": "b"}
	b.config, _ = json.Marshal(cfg)
	if _, _, err := s.Put(ctx, bytes.NewReader(b.config), ""); err != nil {
		t.Fatal(err)
	}
	bm, _, err := s.Put(ctx, bytes.NewReader(b.manifest()), "")
	if err != nil {
		t.Fatal(err)
	}
	failIndexWrites(t)
	roots := func() ([]digest.Digest, error) { return []digest.Digest{bm}, nil }
	if _, err := s.Load(ctx, bytes.NewReader(ociArchive(t, a)), LoadOptions{Roots: roots}); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Load = %v, want %v", err, unix.ENOSPC)
	}
	if !s.Has(sha(a.layers[0])) {
		t.Errorf("the failed load removed layer %s, which a working container's image names", sha(a.layers[0]))
	}
	if s.Has(sha(a.config)) {
		t.Errorf("the failed load left its own config %s, which nothing names", sha(a.config))
	}
	// roots that cannot be read: nothing is judged unused
	a2 := newTestImage(t, "other", 1, Gzip, "a2:1")
	broken := func() ([]digest.Digest, error) { return nil, errors.New("state.json unreadable") }
	if _, err := s.Load(ctx, bytes.NewReader(ociArchive(t, a2)), LoadOptions{Roots: broken}); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Load = %v, want %v", err, unix.ENOSPC)
	}
	if !s.Has(sha(a2.config)) {
		t.Errorf("a failed load removed blobs although the containers' roots could not be read")
	}
}
