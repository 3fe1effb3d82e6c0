package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// TestPullRefusesOtherOS: a single-manifest image whose config is for another
// OS than Linux (a Windows image) is refused as docker's pull refuses it,
// whether or not --platform asks for that OS, before anything is stored; so is
// the Windows entry of an index that --platform picks.
func TestPullRefusesOtherOS(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	winImage := func(os string) v1.Image {
		img := remoteImage(t, remoteLayer(t, entriesTar(t, entry{name: "Files/hello.txt", body: "hi"}), compression.GZip))
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf.OS = os
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	single := reg.Host + "/win/single:1"
	pushRemote(t, single, winImage("windows"))
	bsd := reg.Host + "/other/freebsd:1"
	pushRemote(t, bsd, winImage("freebsd"))
	multi := reg.Host + "/win/multi:1"
	lin := remoteImage(t, remoteLayer(t, entriesTar(t, entry{name: "etc/hostname", body: "lin"}), compression.GZip))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json"),
		mutate.IndexAddendum{Add: lin, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: winImage("windows"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "windows", Architecture: "amd64"}}})
	mref, err := name.ParseReference(multi)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(mref, idx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ref, platform, os string
	}{
		{"single", single, "", "windows"},
		{"single --platform windows", single, "windows/amd64", "windows"},
		{"single freebsd", bsd, "", "freebsd"},
		{"index --platform windows", multi, "windows/amd64", "windows"},
	} {
		for _, pc := range pullChecks {
			t.Run(tc.name+" "+pc.name, func(t *testing.T) {
				st := newStore(t)
				makeImage(t, st, "example.com/base:1", map[string]string{"a": "base"})
				before := snapshot(t, st)
				_, err := (&registry.Client{}).Pull(ctx, st, tc.ref, registry.PullOptions{Platform: tc.platform, CheckLayer: pc.check})
				want := "pull " + tc.ref + `: image operating system "` + tc.os + `" cannot be used on this platform`
				if err == nil || err.Error() != want {
					t.Fatalf("Pull(%s, %q) = %v, want %q", tc.ref, tc.platform, err, want)
				}
				if !errors.Is(err, blobstore.ErrUnsupportedOS) {
					t.Errorf("Pull(%s) = %v, want ErrUnsupportedOS", tc.ref, err)
				}
				storeUnchanged(t, st, before)
			})
		}
	}
	// the index's Linux entry is still what a plain pull takes
	if _, err := (&registry.Client{}).Pull(ctx, newStore(t), multi, registry.PullOptions{}); err != nil {
		t.Errorf("Pull(%s) = %v", multi, err)
	}
}
