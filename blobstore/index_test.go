package blobstore

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// putIndex stores an image index naming img's manifest for the host platform and
// a manifest for another platform that the store does not have, and records it in
// index.json tagged ref (and nothing else names img's manifest).
func putIndex(t *testing.T, s *Store, img *Image, ref string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	ix := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageManifest, Digest: sha([]byte("other arch")), Size: 10,
			Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}},
		{MediaType: ocispec.MediaTypeImageManifest, Digest: img.ManifestDigest, Size: img.Descriptor.Size,
			Platform: &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}},
	}}
	ix.SchemaVersion = 2
	b, _ := json.Marshal(ix)
	d, n, err := s.Put(ctx, bytes.NewReader(b), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImage(ctx, img.ManifestDigest); err != nil {
		t.Fatal(err)
	}
	n2, err := ParseTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	err = s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: n,
			Annotations: map[string]string{ocispec.AnnotationRefName: n2.String()}})
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestImagesListsIndexEntries(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := writeTestImage(t, s, newTestImage(t, "m", 1, Gzip))
	ixd := putIndex(t, s, img, "multi:1")

	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].ManifestDigest != img.ManifestDigest || imgs[0].Index != ixd ||
		len(imgs[0].Tags) != 1 || imgs[0].Tags[0] != "docker.io/library/multi:1" {
		t.Fatalf("Images() = %+v, want the host-platform manifest tagged multi:1 via index %s", imgs, ixd)
	}
	for _, ref := range []string{"multi:1", "multi@" + ixd.String(), ixd.String(), "multi@" + img.ManifestDigest.String()} {
		if got, err := s.Resolve(ref); err != nil || got.ManifestDigest != img.ManifestDigest {
			t.Errorf("Resolve(%s) = %v, %v; want the image", ref, got, err)
		}
	}
	// A second tag moves to the image itself; removing by ID removes the index too.
	if err := s.Tag(ctx, imgs[0], "single:1"); err != nil {
		t.Fatal(err)
	}
	lines, err := s.Remove(ctx, img.ID.String(), RemoveOptions{Force: true})
	if err != nil {
		t.Fatalf("Remove = %v (%v)", err, lines)
	}
	if imgs, _ := s.Images(); len(imgs) != 0 {
		t.Errorf("after rmi -f, Images() = %v, want none", imgs)
	}
	idx, _ := s.readIndex()
	if len(idx.Manifests) != 0 {
		t.Errorf("after rmi -f, index.json = %+v, want empty", idx.Manifests)
	}
}

func TestImagesSkipsIndexWithNothingLocal(t *testing.T) {
	s := newStore(t)
	img := writeTestImage(t, s, newTestImage(t, "m", 1, Gzip))
	putIndex(t, s, img, "multi:1")
	// the manifest goes: nothing the index names is in the store
	if err := os.Remove(s.BlobPath(img.ManifestDigest)); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.Images()
	if err != nil || len(imgs) != 0 {
		t.Errorf("Images() = %v, %v; want none", imgs, err)
	}
}
