package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
	"github.com/opencontainers/go-digest"
)

// readCounter is a store that counts the reads of layer blobs a pull makes once
// they are in the store: Open (a stored layer read back for its check), and each
// layer LayerSizes can only size by reading its blob.
type readCounter struct {
	*blobstore.Store
	mu    sync.Mutex
	reads map[digest.Digest]int // by layer blob
}

var _ registry.Store = (*readCounter)(nil)

func (s *readCounter) count(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reads == nil {
		s.reads = map[digest.Digest]int{}
	}
	s.reads[d]++
}

// takeReads returns the reads counted so far and starts again from none.
func (s *readCounter) takeReads() map[digest.Digest]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reads
	s.reads = nil
	return r
}

func (s *readCounter) Open(d digest.Digest) (io.ReadCloser, error) {
	s.count(d)
	return s.Store.Open(d)
}

// noBlob is a digest no store has: a layer descriptor naming it is out of reach.
var noBlob = digest.FromString("no such blob")

// LayerSizes first asks the store about imgs with their layer blobs out of reach:
// a layer missing from that answer is one the store would read to size, counted as
// a read. Then it answers for real, so the store records what it always did.
func (s *readCounter) LayerSizes(ctx context.Context, imgs ...*blobstore.Image) (map[digest.Digest]int64, error) {
	var blind []*blobstore.Image
	for _, img := range imgs {
		b := *img
		b.Manifest.Layers = slices.Clone(img.Manifest.Layers)
		for i := range b.Manifest.Layers {
			b.Manifest.Layers[i].Digest = noBlob
		}
		blind = append(blind, &b)
	}
	known, err := s.Store.LayerSizes(ctx, blind...)
	if err != nil {
		return nil, err
	}
	seen := map[digest.Digest]bool{}
	for _, img := range imgs {
		for i, id := range img.Config.RootFS.DiffIDs {
			if _, ok := known[id]; !ok && !seen[id] {
				seen[id] = true
				s.count(img.Manifest.Layers[i].Digest)
			}
		}
	}
	return s.Store.LayerSizes(ctx, imgs...)
}

// recordedSizes reads the store's record of layer content sizes.
func recordedSizes(t *testing.T, st *blobstore.Store) map[digest.Digest]int64 {
	t.Helper()
	rec := map[digest.Digest]int64{}
	b, err := os.ReadFile(filepath.Join(st.Dir(), ".layerfs", "layersizes.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// countedSizes are the sizes of img's layers as the store counts them from the
// blobs when it has no record, the way pull sized new layers before it learnt
// their sizes as they streamed in. The record is put back as it was.
func countedSizes(t *testing.T, st *blobstore.Store, img *blobstore.Image) map[digest.Digest]int64 {
	t.Helper()
	p := filepath.Join(st.Dir(), ".layerfs", "layersizes.json")
	saved, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	sizes, err := st.LayerSizes(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	return sizes
}

// TestPullSizesLayersOnce: a pull records every layer's content size (docker's
// SIZE) from the one pass that checks it and learns its diffID, for gzip, zstd and
// uncompressed layers and a blob listed twice, with and without a check: a layer
// it downloads is never read back from the store, a stored layer it reads back
// for the check is read once, and one it does not read back is read once, by
// LayerSizes. The sizes recorded are those the store counts from the blobs.
func TestPullSizesLayersOnce(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	long := strings.Repeat("d/", 70) + "f"
	bodies := map[string][]entry{
		"a": {{name: "etc/hostname", body: "a\n"}, {name: "bin/sh", link: "busybox"}, {name: "bin/busybox", body: strings.Repeat("a", 70000)}},
		"b": {{name: long, body: strings.Repeat("b", 5000)}, {name: "empty"}},
		"c": {{name: "c", body: strings.Repeat("c", 513)}},
	}
	comp := map[string]compression.Compression{"a": compression.GZip, "b": compression.ZStd, "c": compression.None}
	layers := map[string]v1.Layer{}
	want := map[digest.Digest]int64{} // by diffID: the bytes of the regular files
	for n, es := range bodies {
		layers[n] = remoteLayer(t, entriesTar(t, es...), comp[n])
		var size int64
		for _, e := range es {
			if e.link == "" {
				size += int64(len(e.body))
			}
		}
		want[digest.Digest(diffIDOf(t, layers[n]).String())] = size
	}
	a, b, c := layers["a"], layers["b"], layers["c"]
	pushRemote(t, reg.Host+"/size/multi:1", remoteImage(t, a, b, c))
	pushRemote(t, reg.Host+"/size/twice:1", remoteImage(t, a, b, a))

	pull := func(t *testing.T, st *readCounter, ref string, check func(io.Reader) error, wantReads map[digest.Digest]int) {
		t.Helper()
		st.takeReads()
		res, err := (&registry.Client{}).Pull(ctx, st, reg.Host+"/size/"+ref, registry.PullOptions{CheckLayer: check})
		if err != nil {
			t.Fatalf("Pull(%s) = %v", ref, err)
		}
		if got := st.takeReads(); fmt.Sprint(got) != fmt.Sprint(wantReads) {
			t.Errorf("Pull(%s): layer reads from the store = %v, want %v", ref, got, wantReads)
		}
		rec := recordedSizes(t, st.Store)
		counted := countedSizes(t, st.Store, res.Image)
		for _, id := range res.Image.Config.RootFS.DiffIDs {
			if rec[id] != counted[id] || rec[id] != want[id] {
				t.Errorf("Pull(%s): layer %s recorded size %d, counted from the blob %d, want %d", ref, id, rec[id], counted[id], want[id])
			}
		}
	}
	for _, pc := range pullChecks {
		t.Run(pc.name, func(t *testing.T) {
			// every layer downloaded: none read back
			st := &readCounter{Store: newStore(t)}
			pull(t, st, "multi:1", pc.check, nil)
			// a new image of stored layers (one of them twice): read back once
			// each for the check, not at all without one (their sizes are known)
			var stored map[digest.Digest]int
			if pc.check != nil {
				stored = map[digest.Digest]int{layerDigest(t, a): 1, layerDigest(t, b): 1}
			}
			pull(t, st, "twice:1", pc.check, stored)

			// the blob listed twice downloaded, and a stored layer whose size the
			// store has no record of: read once, by the check or by LayerSizes
			st = &readCounter{Store: newStore(t)}
			rc, err := b.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := st.Put(ctx, rc, layerDigest(t, b)); err != nil {
				t.Fatal(err)
			}
			rc.Close()
			pull(t, st, "twice:1", pc.check, map[digest.Digest]int{layerDigest(t, b): 1})
		})
	}
}
