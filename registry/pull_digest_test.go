package registry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"

	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// TestPullByDigestChecksManifest: a pull by digest from a registry that answers
// with another manifest (a hostile registry, a proxy rewriting bodies) fails,
// naming both digests, and stores nothing, as skopeo's and docker's do.
func TestPullByDigestChecksManifest(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	want := remoteImage(t, remoteLayer(t, entriesTar(t, entry{name: "want", body: "asked for\n"}), compression.GZip))
	served := remoteImage(t, remoteLayer(t, entriesTar(t, entry{name: "served", body: "sent instead\n"}), compression.GZip))
	pushRemote(t, reg.Host+"/app:1", want)
	pushRemote(t, reg.Host+"/app:served", served) // its blobs in app too
	d, err := want.Digest()
	if err != nil {
		t.Fatal(err)
	}
	p := registrytest.StartProxy(t, reg, registrytest.ProxyOptions{ManifestFrom: "app/manifests/served"})

	st := newStore(t)
	before := snapshot(t, st)
	ref := p.Host + "/app@" + d.String()
	_, err = (&registry.Client{}).Pull(context.Background(), st, ref, registry.PullOptions{})
	if err == nil || !strings.Contains(err.Error(), d.String()) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Pull(%s) from a registry serving another manifest = %v, want one line naming %s", ref, err, d)
	}
	t.Logf("Pull: %v", err)
	storeUnchanged(t, st, before)

	// The same pull from the registry itself works.
	if _, err := (&registry.Client{}).Pull(context.Background(), st, reg.Host+"/app@"+d.String(), registry.PullOptions{}); err != nil {
		t.Errorf("Pull by digest from the registry: %v", err)
	}
}
