package registry_test

import (
	"context"
	"testing"

	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// A reference with both a tag and a digest is pulled by the digest alone, as
// docker does (its client sends the daemon only the digest): the image is stored
// by digest and no tag is set, rather than the pull downloading every layer and
// then failing to record "name:tag@sha256:..." as a tag.
func TestPullTagAndDigest(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	src := newStore(t)
	img := makeImage(t, src, "app:1", map[string]string{"a": "one"})
	c := &registry.Client{}
	if _, err := c.Push(ctx, src, "app:1", reg.Host+"/team/app:v1", registry.PushOptions{}); err != nil {
		t.Fatalf("Push: %v", err)
	}

	dst := newStore(t)
	byDigest := reg.Host + "/team/app@" + img.ManifestDigest.String()
	var pulled recorder
	res, err := c.Pull(ctx, dst, reg.Host+"/team/app:v1@"+img.ManifestDigest.String(), registry.PullOptions{Progress: &pulled})
	if err != nil {
		t.Fatalf("Pull(name:tag@digest) = %v", err)
	}
	if res.Ref != byDigest || res.Digest != img.ManifestDigest || !res.Updated {
		t.Errorf("Pull(name:tag@digest) = ref %s digest %s updated %v, want %s %s true", res.Ref, res.Digest, res.Updated, byDigest, img.ManifestDigest)
	}
	if want := img.ManifestDigest.String() + ": Pulling from team/app"; len(pulled.headers) != 1 || pulled.headers[0] != want {
		t.Errorf("pull headers = %q, want %q", pulled.headers, want)
	}
	if got, err := dst.Resolve(byDigest); err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Errorf("Resolve(%s) = %v, %v", byDigest, got, err)
	}
	if got, err := dst.Resolve(reg.Host + "/team/app:v1"); err == nil {
		t.Errorf("Resolve(tag) after a pull by tag and digest = %s, want no tag set", got.ManifestDigest)
	}
}
