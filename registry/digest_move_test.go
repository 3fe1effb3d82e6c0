package registry_test

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// Two platforms of one index pulled by digest: name@<index digest> is the
// image pulled last, which alone keeps that repo digest, as docker moves the
// digest reference (AddDigest with force); pulling the first again moves it
// back. Before, it kept naming the first image and both listed it.
func TestPullByDigestMovesRepoDigest(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	idx := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	tag, _ := name.ParseReference(reg.Host + "/multi:1")
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	byDigest := reg.Host + "/multi@" + d.String()

	st := newStore(t)
	c := &registry.Client{}
	pull := func(platform string) *registry.PullResult {
		t.Helper()
		res, err := c.Pull(ctx, st, byDigest, registry.PullOptions{Platform: platform})
		if err != nil {
			t.Fatalf("pull --platform %s: %v", platform, err)
		}
		return res
	}
	check := func(now, old *registry.PullResult, arch string) {
		t.Helper()
		img, err := st.Resolve(byDigest)
		if err != nil {
			t.Fatal(err)
		}
		if img.ManifestDigest != now.Image.ManifestDigest || img.Config.Architecture != arch {
			t.Errorf("%s resolves to %s (%s), want the %s image just pulled", byDigest, img.ManifestDigest, img.Config.Architecture, arch)
		}
		for _, r := range []*registry.PullResult{now, old} {
			rds, err := st.RepoDigests(r.Image.ManifestDigest)
			if err != nil {
				t.Fatal(err)
			}
			if has, want := slices.Contains(rds, byDigest), r == now; has != want {
				t.Errorf("repo digests of %s = %v, want %s there: %v", r.Image.Config.Architecture, rds, byDigest, want)
			}
		}
	}
	arm := pull("linux/arm64")
	amd := pull("linux/amd64")
	check(amd, arm, "amd64")
	arm = pull("linux/arm64")
	check(arm, amd, "arm64")
}
