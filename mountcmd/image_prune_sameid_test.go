package mountcmd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// sameIDStore makes a store under a new root holding the image writeSameID makes
// with gzip layers, tagged tags, and returns its options, the store and the image.
func sameIDStore(t *testing.T, tags ...string) (*globalOptions, *blobstore.Store, *blobstore.Image) {
	t.Helper()
	_, gz := sameIDLayer(t)
	g := &globalOptions{root: t.TempDir()}
	s, err := openStore(g)
	if err != nil {
		t.Fatal(err)
	}
	first := writeSameID(t, s, gz, blobstore.Gzip)
	for _, tag := range tags {
		if err := s.Tag(context.Background(), first, tag); err != nil {
			t.Fatal(err)
		}
	}
	return g, s, first
}

// pulledSameID records in s, as pull does, the image writeSameID makes with
// plain layers, tagged tags, and returns it: a second manifest of the ID of a
// gzip copy s has.
func pulledSameID(t *testing.T, s *blobstore.Store, tags ...string) *blobstore.Image {
	t.Helper()
	ctx := context.Background()
	plain, _ := sameIDLayer(t)
	_, src := sameIDArchive(t, plain, blobstore.None, "x:1")
	img, err := src.Resolve("x:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{img.ManifestDigest, img.ID, img.Manifest.Layers[0].Digest} {
		rc, err := src.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Put(ctx, rc, d)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.AddManifest(ctx, img.Descriptor, tags...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestPruneSameIDContainer is rev15-sameid #1: a stopped container made from a
// manifest of an image that Images does not list (pulled, then its tag removed)
// uses the image: image prune -a leaves it, tags and all, and system df counts
// the container.
func TestPruneSameIDContainer(t *testing.T) {
	ctx := context.Background()
	g, s, first := sameIDStore(t, "bb:1", "bb:2")
	pulled := pulledSameID(t, s, "reg/bbz:zstd")
	claimFor(t, g, "c1", pulled, nil)
	if out, _, err := runOut(t, newRmiCommand(g), "reg/bbz:zstd"); err != nil || out != "Untagged: reg/bbz:zstd\n" {
		t.Fatalf("rmi reg/bbz:zstd = %q, %v; want only Untagged", out, err)
	}
	want := "bb:1 " + blobstore.ShortID(first.ID) + "\nbb:2 " + blobstore.ShortID(first.ID) + "\n"
	if rows := imagesRows(t, g); rows != want {
		t.Fatalf("images -a:\n%s\nwant:\n%s", rows, want)
	}

	du, err := diskUsageOf(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if len(du.images) != 1 || du.images[0].containers != 1 {
		n := -1
		if len(du.images) == 1 {
			n = du.images[0].containers
		}
		t.Errorf("system df: %d images, containers %d; want 1 image that 1 container uses", len(du.images), n)
	}
	if act := du.summary()[0].Active; act != "1" {
		t.Errorf("system df Images ACTIVE = %s, want 1", act)
	}

	out, _, err := runOut(t, newImagePruneCommand(g), "-a", "-f")
	if err != nil || strings.Contains(out, "untagged") || strings.Contains(out, "deleted") {
		t.Errorf("image prune -a -f = %q, %v; want nothing untagged or deleted", out, err)
	}
	if rows := imagesRows(t, g); rows != want {
		t.Errorf("images -a after image prune -a:\n%s\nwant:\n%s", rows, want)
	}
}

// TestPruneSameIDLeftover is rev15-sameid #2 through the verbs: once the pulled
// tag of an image loaded before is removed, image prune takes the pulled
// manifest's entry and the blobs only it named; the image stays.
func TestPruneSameIDLeftover(t *testing.T) {
	g, s, first := sameIDStore(t, "bb:1")
	pulled := pulledSameID(t, s, "reg/bbz:zstd")
	if _, _, err := runOut(t, newRmiCommand(g), "reg/bbz:zstd"); err != nil {
		t.Fatal(err)
	}
	out, _, err := runOut(t, newImagePruneCommand(g), "-f")
	if err != nil || strings.Contains(out, "Total reclaimed space: 0B") {
		t.Errorf("image prune -f = %q, %v; want the pulled manifest's blobs reclaimed", out, err)
	}
	for _, d := range []digest.Digest{pulled.ManifestDigest, pulled.Manifest.Layers[0].Digest} {
		if s.Has(d) {
			t.Errorf("after image prune: blob %s of the untagged pulled manifest is still stored", d)
		}
	}
	if rows, want := imagesRows(t, g), "bb:1 "+blobstore.ShortID(first.ID)+"\n"; rows != want {
		t.Errorf("images -a after image prune:\n%s\nwant:\n%s", rows, want)
	}
}

// TestPruneKeepsOtherToolsNames: an image skopeo or umoci named with an OCI tag
// that is no docker reference ("Stable", "v1.0+build") lists as <none>, but is
// no dangling image: image prune left nothing of it (review rev23-oci; gc
// already kept such entries, TestGCKeepsOtherToolsTags).
func TestPruneKeepsOtherToolsNames(t *testing.T) {
	for _, name := range []string{"Stable", "v1.0+build"} {
		t.Run(name, func(t *testing.T) {
			g, s, img := sameIDStore(t)
			if _, err := s.AddManifest(context.Background(), img.Descriptor); err != nil {
				t.Fatal(err)
			}
			setRefName(t, s, img.ManifestDigest, name)
			if out, _, err := runOut(t, newImagePruneCommand(g), "-f"); err != nil || strings.Contains(out, "Deleted") {
				t.Errorf("image prune -f = %q, %v; want the image named %q kept", out, err, name)
			}
			if !s.Has(img.ManifestDigest) {
				t.Errorf("the manifest of the image named %q is gone", name)
			}
		})
	}
}

// setRefName names every index.json entry of manifest d name, as another tool
// writes it, and nothing else.
func setRefName(t *testing.T, s *blobstore.Store, d digest.Digest, name string) {
	t.Helper()
	p := filepath.Join(s.Dir(), "index.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	for i, e := range idx.Manifests {
		if e.Digest == d {
			idx.Manifests[i].Annotations = map[string]string{ocispec.AnnotationRefName: name}
		}
	}
	if b, err = json.Marshal(idx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
