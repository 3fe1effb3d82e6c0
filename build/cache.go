package build

import (
	"encoding/json"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerfs/layerfs/blobstore"
)

// stepCache is the build cache: one JSON file per step key under dir.
type stepCache struct {
	dir   string
	store *blobstore.Store
}

// cacheEntry is a step's result: the image config after it, byte for byte, and
// the layer it added (nil for an empty_layer step).
type cacheEntry struct {
	Config json.RawMessage     `json:"config"`
	Layer  *ocispec.Descriptor `json:"layer,omitempty"`
}

func (c *stepCache) path(key digest.Digest) string {
	return filepath.Join(c.dir, key.Encoded()+".json")
}

// get returns the entry for key if there is one whose layer blob is still in the
// store (gc may have taken it with the last image that used it).
func (c *stepCache) get(key digest.Digest) (cacheEntry, bool) {
	return c.getPath(c.path(key))
}

// getPath is get of the entry file p.
func (c *stepCache) getPath(p string) (cacheEntry, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return cacheEntry{}, false
	}
	var e cacheEntry
	if err := json.Unmarshal(b, &e); err != nil || len(e.Config) == 0 {
		return cacheEntry{}, false
	}
	if e.Layer != nil && !c.store.Has(e.Layer.Digest) {
		return cacheEntry{}, false
	}
	return e, true
}

// put records an entry atomically (temp file, rename); last writer wins.
func (c *stepCache) put(key digest.Digest, e cacheEntry) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path(key))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
