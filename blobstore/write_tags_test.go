package blobstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// WithTags records the image and its tags in one index.json write: when that
// write fails (a full disk) neither the image nor a tag is left, and a ref that
// does not parse is refused before any blob is written.
func TestWriteImageWithTags(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	ti := newTestImage(t, "a", 1, Gzip)
	d, n, err := s.Put(ctx, strings.NewReader(string(ti.layers[0])), "")
	if err != nil {
		t.Fatal(err)
	}
	layers := []ocispec.Descriptor{{MediaType: LayerMediaType(Gzip), Digest: d, Size: n}}
	var cfg ocispec.Image
	if err := json.Unmarshal(ti.config, &cfg); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s.Dir())

	if _, err := s.WriteImage(ctx, cfg, layers, WithTags("Bad:Ref")); !errors.Is(err, ErrInvalidReference) {
		t.Fatalf("WriteImage(WithTags(Bad:Ref)) = %v, want %v", err, ErrInvalidReference)
	}
	if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
		t.Fatalf("a refused ref changed the store:\n%s", d)
	}

	writes := 0
	writeIndexFault = func() error {
		writes++
		return unix.ENOSPC
	}
	t.Cleanup(func() { writeIndexFault = nil })
	if _, err := s.WriteImage(ctx, cfg, layers, WithTags("app:1", "app:2")); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("WriteImage on a full disk = %v, want %v", err, unix.ENOSPC)
	}
	if writes != 1 {
		t.Errorf("WriteImage with two tags tried %d index.json writes, want 1", writes)
	}
	if imgs, _, err := s.ImagesAndBroken(); err != nil || len(imgs) != 0 {
		t.Fatalf("images after a failed WriteImage = %d, %v; want none", len(imgs), err)
	}

	writeIndexFault = nil
	img, err := s.WriteImage(ctx, cfg, layers, WithTags("app:1", "app:2"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(img.Tags, " "); got != "docker.io/library/app:1 docker.io/library/app:2" {
		t.Errorf("WriteImage(WithTags(app:1, app:2)) tags = %q", got)
	}
}

// TestTagRefusesDigestAlgorithmName: as docker's reference store, no tag of a
// repository named "sha256" (it would read as an image ID), however it is spelt.
func TestTagRefusesDigestAlgorithmName(t *testing.T) {
	s := newStore(t)
	img := writeTestImage(t, s, newTestImage(t, "r", 1, Gzip, "busybox"))
	for _, ref := range []string{"sha256:abc", "sha256", "docker.io/library/sha256:1"} {
		if err := s.Tag(context.Background(), img, ref); !errors.Is(err, ErrAmbiguousTag) {
			t.Errorf("Tag(%s) = %v, want ErrAmbiguousTag", ref, err)
		}
	}
	if err := s.Tag(context.Background(), img, "me/sha256:abc"); err != nil {
		t.Errorf("Tag(me/sha256:abc) = %v, want nil", err)
	}
}
