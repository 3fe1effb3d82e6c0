package mountcmd

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/fs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestWarnDeep: load and pull warn of an image nothing can be committed or
// built on (as deep as commit's limit or deeper: docker refuses to load it),
// and say nothing of one that can take another layer.
func TestWarnDeep(t *testing.T) {
	img := func(n int) *blobstore.Image {
		return &blobstore.Image{ID: digest.Digest("sha256:" + strings.Repeat("a", 64)), Manifest: ocispec.Manifest{Layers: make([]ocispec.Descriptor, n)}}
	}
	for _, tc := range []struct {
		layers int
		warn   bool
	}{{build.MaxLayers - 1, false}, {build.MaxLayers, true}, {1000, true}} {
		var b bytes.Buffer
		warnDeep(&b, img(tc.layers))
		if got := strings.Contains(b.String(), "WARNING: image aaaaaaaaaaaa has"); got != tc.warn {
			t.Errorf("%d layers: %q, want a warning %v", tc.layers, b.String(), tc.warn)
		}
	}
	var b bytes.Buffer
	warnDeep(&b, nil)
	if b.Len() != 0 {
		t.Errorf("no image: %q", b.String())
	}
}

// TestEnsureLayersKeepsOneForTheContainer: an image is refused before its
// layers are unpacked when its layers and the container's own layer, which a
// read-only mount stacks, are more than fs.MaxLayers: one of exactly MaxLayers
// layers was unpacked, then refused by the mount (review rev21-diff3, finding 4).
func TestEnsureLayersKeepsOneForTheContainer(t *testing.T) {
	n := fs.MaxLayers()
	img := &blobstore.Image{ID: digest.Digest("sha256:" + strings.Repeat("a", 64)),
		Manifest: ocispec.Manifest{Layers: make([]ocispec.Descriptor, n)}}
	img.Config.RootFS.DiffIDs = make([]digest.Digest, n)
	g := &globalOptions{root: t.TempDir()}
	_, err := ensureLayers(context.Background(), g, nil, img)
	if err == nil || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("ensureLayers of %d layers (MaxLayers %d): %v, want a refusal naming the limit", n, n, err)
	}
}
