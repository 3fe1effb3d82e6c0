package registry_test

import (
	"context"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// rawImage stores raw:1, an image of two uncompressed layers (as a
// docker-archive load stores them), and returns it.
func rawImage(t *testing.T, st *blobstore.Store) *blobstore.Image {
	t.Helper()
	ctx := context.Background()
	var descs []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, files := range []map[string]string{{"a": "one"}, {"b": "two"}} {
		d, diffID, err := st.AppendLayer(ctx, layerTar(t, files), blobstore.None)
		if err != nil {
			t.Fatal(err)
		}
		descs, diffIDs = append(descs, d), append(diffIDs, diffID)
	}
	cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	if _, err := st.WriteImage(ctx, cfg, descs, blobstore.WithTags("raw:1")); err != nil {
		t.Fatal(err)
	}
	img, err := st.Resolve("raw:1")
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// An image with uncompressed layers (docker save | load) is pushed with them
// gzipped, as docker and skopeo push, with commit's deterministic gzip: a
// re-push (from another store too) gives the same manifest digest, which is
// recorded as the image's repo digest and pulls back the same image. Before,
// the raw tars were uploaded as they were.
func TestPushGzipsUncompressedLayers(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	mk := func() (*blobstore.Store, *blobstore.Image) {
		st := newStore(t)
		return st, rawImage(t, st)
	}
	st, img := mk()
	dest := reg.Host + "/raw:1"
	c := &registry.Client{}
	res, err := c.Push(ctx, st, "raw:1", dest, registry.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest == img.ManifestDigest {
		t.Errorf("push sent the stored manifest %s, with uncompressed layers", res.Digest)
	}
	ref, _ := name.ParseReference(dest)
	rimg, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rimg.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := rimg.Digest(); d.String() != res.Digest.String() {
		t.Errorf("registry serves %s, push said %s", d, res.Digest)
	}
	for i, l := range m.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer %d media type %s, want gzip", i, l.MediaType)
		}
		if dl, _ := rimg.LayerByDigest(l.Digest); dl != nil {
			if diffID, err := dl.DiffID(); err != nil || diffID.String() != img.Config.RootFS.DiffIDs[i].String() {
				t.Errorf("layer %d diffID %v, %v; want %s", i, diffID, err, img.Config.RootFS.DiffIDs[i])
			}
		}
	}
	rds, err := st.RepoDigests(img.ManifestDigest)
	if err != nil || !slices.Contains(rds, reg.Host+"/raw@"+res.Digest.String()) {
		t.Errorf("repo digests after push = %v, %v; want the pushed digest %s", rds, err, res.Digest)
	}
	if got, err := st.Resolve(reg.Host + "/raw@" + res.Digest.String()); err != nil || got.ID != img.ID {
		t.Errorf("resolve of the pushed digest = %v, %v; want the local image", got, err)
	}

	// Same image again, from this store and from another: same digest.
	for i, s := range []*blobstore.Store{st, func() *blobstore.Store { s, _ := mk(); return s }()} {
		again, err := c.Push(ctx, s, "raw:1", reg.Host+"/raw:2", registry.PushOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if again.Digest != res.Digest {
			t.Errorf("re-push %d = %s, want %s", i, again.Digest, res.Digest)
		}
	}

	// It pulls back as the same image (config, so ID), gzipped.
	pulled, err := c.Pull(ctx, newStore(t), dest, registry.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Image.ID != img.ID || pulled.Image.ManifestDigest != res.Digest {
		t.Errorf("pull = %s (manifest %s), want ID %s and manifest %s", pulled.Image.ID, pulled.Image.ManifestDigest, img.ID, res.Digest)
	}
}

// countingStore counts the layers compressed through it.
type countingStore struct {
	*blobstore.Store
	appends int
}

func (s *countingStore) AppendLayer(ctx context.Context, r io.Reader, c blobstore.Compression, opts ...blobstore.AppendOption) (ocispec.Descriptor, digest.Digest, error) {
	s.appends++
	return s.Store.AppendLayer(ctx, r, c, opts...)
}

// A second push of an image with uncompressed layers sends the gzip blobs the
// first one made, without compressing the layers again (docker keeps diffID to
// blobsum the same way); once gc has taken those blobs, a push makes them again.
func TestPushReusesGzipTwins(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	bs := newStore(t)
	diffIDs := rawImage(t, bs).Config.RootFS.DiffIDs
	st := &countingStore{Store: bs}
	c := &registry.Client{}
	push := func(repo string, wantAppends int) digest.Digest {
		t.Helper()
		st.appends = 0
		res, err := c.Push(ctx, st, "raw:1", reg.Host+"/"+repo, registry.PushOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st.appends != wantAppends {
			t.Errorf("push to %s compressed %d layers, want %d", repo, st.appends, wantAppends)
		}
		return res.Digest
	}
	first := push("one:1", 2)
	if again := push("two:1", 0); again != first {
		t.Errorf("second push = %s, want %s", again, first)
	}
	if _, err := bs.GC(ctx, false, nil); err != nil {
		t.Fatal(err)
	}
	if again := push("three:1", 2); again != first {
		t.Errorf("push after gc = %s, want %s", again, first)
	}
	// A twin damaged in place (same size) is made again, not sent: the push
	// failed on it until a gc.
	tw, ok := bs.GzipTwinOf(diffIDs[0])
	if !ok {
		t.Fatal("no gzip twin recorded for layer 0")
	}
	b, err := os.ReadFile(bs.BlobPath(tw.Digest))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(bs.BlobPath(tw.Digest), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if again := push("four:1", 1); again != first {
		t.Errorf("push with a damaged twin = %s, want %s", again, first)
	}
	ref, _ := name.ParseReference(reg.Host + "/two:1")
	rimg, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := rimg.Digest(); d.String() != first.String() {
		t.Errorf("registry serves %s for two:1, want %s", d, first)
	}
	if ls, err := rimg.Layers(); err != nil || len(ls) != 2 {
		t.Fatalf("layers of two:1: %v, %v", ls, err)
	} else {
		for i, l := range ls {
			if id, err := l.DiffID(); err != nil || id.String() != diffIDs[i].String() {
				t.Errorf("two:1 layer %d diffID %v, %v; want %s", i, id, err, diffIDs[i])
			}
		}
	}
}
