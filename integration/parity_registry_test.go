package integration

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrmutate "github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// regPushIndex pushes a two-platform (linux/amd64, linux/arm64) OCI index to reg
// as multi/app:1 and returns its reference, its digest and the manifest digest per
// architecture.
func regPushIndex(t *testing.T, reg *registrytest.Server) (string, v1.Hash, map[string]string) {
	t.Helper()
	idx := ggcrmutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	want := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf.OS, cf.Architecture = "linux", arch
		img, _ = ggcrmutate.ConfigFile(img, cf)
		d, _ := img.Digest()
		want[arch] = d.String()
		idx = ggcrmutate.AppendManifests(idx, ggcrmutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	ref := reg.Host + "/multi/app:1"
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	return ref, idxDigest, want
}

// TestParityPulledDigest: after a multi-platform pull, name@<index digest> names
// the image for every verb, images --digests shows that digest, and rmi untags it
// as docker does.
func TestParityPulledDigest(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, idxDigest, want := regPushIndex(t, reg)
	e := newRegEnv(t)
	e.ok("pull", "--platform", "linux/arm64", ref)
	byDigest := reg.Host + "/multi/app@" + idxDigest.String()
	img, err := e.store().Resolve(ref)
	if err != nil || img.ManifestDigest.String() != want["arm64"] {
		t.Fatalf("pull = %v, %v", img, err)
	}
	if out := e.ok("inspect", "--format", "{{.Id}}", byDigest); strings.TrimSpace(out) != img.ID.String() {
		t.Errorf("inspect %s = %q, want %s", byDigest, out, img.ID)
	}
	if out := e.ok("images", "--digests", "--format", "{{.Tag}} {{.Digest}}"); out != "1 "+idxDigest.String()+"\n" {
		t.Errorf("images --digests = %q, want the index digest", out)
	}
	if out := e.ok("rmi", byDigest); out != "Untagged: "+byDigest+"\nDeleted: "+img.ID.String()+"\n" {
		t.Errorf("rmi %s =\n%s", byDigest, out)
	}
}
