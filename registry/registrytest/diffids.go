package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WithDiffIDs is img with its config's rootfs.diff_ids replaced by ids, as many as
// given (a hostile image: layer blobs that match the manifest, a config that lies
// about their content): the same layer blobs, under a manifest naming the changed
// config. go-containerregistry's mutate cannot make it, since it finds an image's
// layers by the config's diff_ids. Push it as any image (remote.Write).
func WithDiffIDs(t testing.TB, img v1.Image, ids ...v1.Hash) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs = ids
	cb, err := json.Marshal(cf)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	if m.Config.Digest, m.Config.Size, err = v1.SHA256(bytes.NewReader(cb)); err != nil {
		t.Fatal(err)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	r := &rawImage{mediaType: mt, manifest: mb, config: cb, layers: map[v1.Hash]v1.Layer{}}
	for _, l := range ls {
		h, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		r.layers[h] = l
	}
	out, err := partial.CompressedToImage(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawImage is an image served exactly as given: a manifest, a config and the layer
// blobs the manifest names.
type rawImage struct {
	mediaType        types.MediaType
	manifest, config []byte
	layers           map[v1.Hash]v1.Layer
}

var _ partial.CompressedImageCore = (*rawImage)(nil)

func (r *rawImage) MediaType() (types.MediaType, error) { return r.mediaType, nil }
func (r *rawImage) RawManifest() ([]byte, error)        { return r.manifest, nil }
func (r *rawImage) RawConfigFile() ([]byte, error)      { return r.config, nil }

func (r *rawImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := r.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("no layer %s", h)
}
