package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
	"github.com/opencontainers/go-digest"
)

func diffIDOf(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	h, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pullChecks are the two ways a pull runs: as the CLI runs it, and with no layer
// check at all (diff_ids are matched either way).
var pullChecks = []struct {
	name  string
	check func(io.Reader) error
}{{"check", checkLayer}, {"no check", nil}}

// TestPullChecksDiffIDs: a layer whose blob is the one the manifest names but whose
// uncompressed content is not the config's diff_id for it, whatever its compression
// and wherever it sits (also a blob listed twice, wrong at its second place only),
// fails the pull with one line naming the layer and both digests, as load words
// it, and leaves the store exactly as it was.
func TestPullChecksDiffIDs(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	tars := [][]byte{
		entriesTar(t, entry{name: "etc/hostname", body: "one\n"}),
		entriesTar(t, entry{name: "usr/share/doc", body: strings.Repeat("docs ", 1000)}),
		entriesTar(t, entry{name: "bin/app", body: "app"}),
	}
	// the diff_id a hostile config gives instead: some other layer's
	other := diffIDOf(t, remoteLayer(t, entriesTar(t, entry{name: "evil", body: "evil"}), compression.None))
	for _, tc := range []struct {
		name string
		c    compression.Compression
		// the image's layers (indexes into tars), the place whose diff_id is
		// replaced, and the index of the layer the error must name
		layers []int
		bad    int
	}{
		{"gzip middle", compression.GZip, []int{0, 1, 2}, 1},
		{"zstd first", compression.ZStd, []int{0, 1, 2}, 0},
		{"uncompressed last", compression.None, []int{0, 1, 2}, 2},
		{"same blob twice, second place", compression.GZip, []int{0, 1, 0}, 2},
	} {
		ls := make([]v1.Layer, len(tars))
		for i, raw := range tars {
			ls[i] = remoteLayer(t, raw, tc.c)
		}
		var layers []v1.Layer
		var ids []v1.Hash
		for _, i := range tc.layers {
			layers = append(layers, ls[i])
			ids = append(ids, diffIDOf(t, ls[i]))
		}
		ids[tc.bad] = other
		img := registrytest.WithDiffIDs(t, remoteImage(t, layers...), ids...)
		ref := reg.Host + "/diffid/" + strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "-"), ",", "") + ":1"
		pushRemote(t, ref, img)
		bad := layers[tc.bad]
		for _, pc := range pullChecks {
			t.Run(tc.name+" "+pc.name, func(t *testing.T) {
				st := newStore(t)
				makeImage(t, st, "example.com/base:1", map[string]string{"a": "base"})
				before := snapshot(t, st)
				_, err := (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: pc.check})
				if err == nil {
					t.Fatalf("Pull(%s) with a wrong diff_id succeeded", ref)
				}
				t.Logf("Pull: %v", err)
				want := "pull " + ref + ": layer " + layerDigest(t, bad).String() + ": content does not match digest: uncompressed content is " +
					diffIDOf(t, bad).String() + ", config diff_id is " + other.String()
				if err.Error() != want {
					t.Errorf("Pull(%s) = %q, want %q", ref, err, want)
				}
				if !errors.Is(err, blobstore.ErrDigestMismatch) {
					t.Errorf("Pull(%s) = %v, want ErrDigestMismatch", ref, err)
				}
				storeUnchanged(t, st, before)
			})
		}
	}
}

// TestPullChecksDiffIDCount: a config that lists fewer or more diff_ids than the
// manifest has layers is refused before any layer is fetched: one line naming
// the config, the store as it was.
func TestPullChecksDiffIDCount(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	a := remoteLayer(t, entriesTar(t, entry{name: "a", body: "a"}), compression.GZip)
	b := remoteLayer(t, entriesTar(t, entry{name: "b", body: "b"}), compression.GZip)
	for _, tc := range []struct {
		name string
		ids  []v1.Hash
	}{
		{"fewer", []v1.Hash{diffIDOf(t, a)}},
		{"more", []v1.Hash{diffIDOf(t, a), diffIDOf(t, b), diffIDOf(t, b)}},
		{"none", nil},
	} {
		img := registrytest.WithDiffIDs(t, remoteImage(t, a, b), tc.ids...)
		ref := reg.Host + "/count/" + tc.name + ":1"
		pushRemote(t, ref, img)
		cfgDigest, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		for _, pc := range pullChecks {
			t.Run(tc.name+" "+pc.name, func(t *testing.T) {
				st := newStore(t)
				before := snapshot(t, st)
				_, err := (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: pc.check})
				if err == nil {
					t.Fatalf("Pull(%s) with %d diff_ids for 2 layers succeeded", ref, len(tc.ids))
				}
				t.Logf("Pull: %v", err)
				want := fmt.Sprintf("pull %s: config %s: invalid image config: %d diff_ids for 2 layers", ref, cfgDigest, len(tc.ids))
				if err.Error() != want {
					t.Errorf("Pull(%s) = %q, want %q", ref, err, want)
				}
				if !errors.Is(err, blobstore.ErrInvalidConfig) {
					t.Errorf("Pull(%s) = %v, want ErrInvalidConfig", ref, err)
				}
				storeUnchanged(t, st, before)
			})
		}
	}
}

// TestPullChecksStoredDiffID: a layer the store has already (as an unchecked old
// pull, or a pull cut short, left it) is matched against the new image's diff_id
// in the read that checks it: a mismatch refuses the pull, and the layer that was
// downloaded for it is not kept.
func TestPullChecksStoredDiffID(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	fresh := remoteLayer(t, entriesTar(t, entry{name: "a", body: "a"}), compression.GZip)
	stored := remoteLayer(t, entriesTar(t, entry{name: "b", body: "b"}), compression.GZip)
	other := diffIDOf(t, fresh)
	img := registrytest.WithDiffIDs(t, remoteImage(t, fresh, stored), diffIDOf(t, fresh), other)
	ref := reg.Host + "/stored-diffid/app:1"
	pushRemote(t, ref, img)

	st := newStore(t)
	rc, err := stored.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Put(ctx, rc, layerDigest(t, stored)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	before := snapshot(t, st)
	_, err = (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: checkLayer})
	want := "layer " + layerDigest(t, stored).String() + ": content does not match digest: uncompressed content is " +
		diffIDOf(t, stored).String() + ", config diff_id is " + other.String()
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("Pull(%s) with the mismatched layer stored = %v, want an error ending %q", ref, err, want)
	}
	storeUnchanged(t, st, before)
}

// TestPullDiffIDsGood: images whose diff_ids are right pull, with and without a
// check: several layers in every compression, and one blob listed twice (fetched
// once, matched at both places), also when the store has that blob already.
func TestPullDiffIDsGood(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	a := remoteLayer(t, entriesTar(t, entry{name: "a", body: "a"}), compression.GZip)
	b := remoteLayer(t, entriesTar(t, entry{name: "b", body: strings.Repeat("b", 5000)}), compression.ZStd)
	c := remoteLayer(t, entriesTar(t, entry{name: "c", body: "c"}), compression.None)
	multi, twice := remoteImage(t, a, b, c), remoteImage(t, a, b, a)
	pushRemote(t, reg.Host+"/good-diffid/multi:1", multi)
	pushRemote(t, reg.Host+"/good-diffid/twice:1", twice)
	for _, pc := range pullChecks {
		t.Run(pc.name, func(t *testing.T) {
			st := newStore(t)
			// twice second: its blobs are in the store, read back and matched
			for _, tc := range []struct {
				ref string
				img v1.Image
			}{{"multi", multi}, {"twice", twice}} {
				ref := reg.Host + "/good-diffid/" + tc.ref + ":1"
				res, err := (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: pc.check})
				if err != nil {
					t.Fatalf("Pull(%s) = %v", ref, err)
				}
				cf, err := tc.img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				var want []digest.Digest
				for _, h := range cf.RootFS.DiffIDs {
					want = append(want, digest.Digest(h.String()))
				}
				if got := res.Image.Config.RootFS.DiffIDs; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("Pull(%s): diff_ids %v, want %v", ref, got, want)
				}
			}
			// the twice image alone, into a store that has none of it
			ref := reg.Host + "/good-diffid/twice:1"
			if _, err := (&registry.Client{}).Pull(ctx, newStore(t), ref, registry.PullOptions{CheckLayer: pc.check}); err != nil {
				t.Errorf("Pull(%s) into an empty store = %v", ref, err)
			}
		})
	}
}
