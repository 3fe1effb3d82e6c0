package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/layerfs/layerfs/registry"
	"github.com/opencontainers/go-digest"
)

// hostileRegistry is go-containerregistry's in-memory registry, which takes
// manifests layerfs's store refuses, filled over its HTTP API with hand-made
// images. It records the blobs clients GET, and answers 404 for those in missing.
type hostileRegistry struct {
	t    *testing.T
	host string

	mu      sync.Mutex
	got     map[digest.Digest]int
	missing map[digest.Digest]bool
}

func startHostileRegistry(t *testing.T) *hostileRegistry {
	t.Helper()
	h := &hostileRegistry{t: t, got: map[digest.Digest]int{}, missing: map[digest.Digest]bool{}}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dir, base := path.Split(r.URL.Path); r.Method == http.MethodGet && strings.HasSuffix(dir, "/blobs/") {
			d := digest.Digest(base)
			h.mu.Lock()
			h.got[d]++
			missing := h.missing[d]
			h.mu.Unlock()
			if missing {
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`, http.StatusNotFound)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	h.host = strings.TrimPrefix(srv.URL, "http://")
	return h
}

func (h *hostileRegistry) fetched(d digest.Digest) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got[d]
}

func (h *hostileRegistry) putBlob(repo string, b []byte) digest.Digest {
	h.t.Helper()
	d := digest.FromBytes(b)
	resp, err := http.Post("http://"+h.host+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(b))
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		h.t.Fatalf("put blob in %s: %s", repo, resp.Status)
	}
	return d
}

func (h *hostileRegistry) putManifest(repo string, m any) digest.Digest {
	h.t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		h.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+h.host+"/v2/"+repo+"/manifests/latest", bytes.NewReader(b))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		h.t.Fatalf("put manifest of %s: %s", repo, resp.Status)
	}
	return digest.FromBytes(b)
}

// hostileImage is one hand-made image in a hostileRegistry.
type hostileImage struct {
	manifest, config digest.Digest
	layers           []digest.Digest
}

// image puts an image of the layers (uncompressed tars) into repo. cfgPad pads the
// config with a label that long; edit changes the manifest before it is put.
func (h *hostileRegistry) image(repo string, cfgPad int, edit func(m map[string]any), layers ...[]byte) hostileImage {
	h.t.Helper()
	var img hostileImage
	var diffIDs []string
	var descs []any
	for _, l := range layers {
		sum := sha256.Sum256(l)
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(sum[:]))
		d := h.putBlob(repo, l)
		img.layers = append(img.layers, d)
		descs = append(descs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(l)})
	}
	cfg := map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}}
	if cfgPad > 0 {
		cfg["config"] = map[string]any{"Labels": map[string]string{"pad": strings.Repeat("x", cfgPad)}}
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	img.config = h.putBlob(repo, cb)
	m := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": img.config, "size": len(cb)},
		"layers": descs}
	if edit != nil {
		edit(m)
	}
	img.manifest = h.putManifest(repo, m)
	return img
}

// TestPullRefusesBeforeDownload: an image whose manifest the store would refuse
// (over 16 MiB, an unknown layer or config media type, schemaVersion 3) or whose
// config is declared larger than 16 MiB is refused as soon as its manifest is
// fetched: neither its config nor any layer is downloaded (so the config is never
// held in memory), and the store is left as it was. Before, pull fetched the
// config (whatever its size, into memory) and every layer, stored them, and only
// then was refused by AddManifest, leaving every blob behind.
func TestPullRefusesBeforeDownload(t *testing.T) {
	h := startHostileRegistry(t)
	layer := entriesTar(t, entry{name: "etc/hostname", body: "hostile"})
	setLayerMT := func(mt string) func(map[string]any) {
		return func(m map[string]any) { m["layers"].([]any)[0].(map[string]any)["mediaType"] = mt }
	}
	images := map[string]hostileImage{
		"bigcfg":  h.image("bigcfg", 17<<20, nil, layer),
		"bigmf":   h.image("bigmf", 0, func(m map[string]any) { m["annotations"] = map[string]string{"pad": strings.Repeat("y", 17<<20)} }, layer),
		"mtlayer": h.image("mtlayer", 0, setLayerMT("application/vnd.foo.layer"), layer),
		"mtcfg": h.image("mtcfg", 0, func(m map[string]any) {
			m["config"].(map[string]any)["mediaType"] = "application/octet-stream"
		}, layer),
		"schema3": h.image("schema3", 0, func(m map[string]any) { m["schemaVersion"] = 3 }, layer),
	}
	for _, tc := range []struct{ repo, platform, want string }{
		{"bigcfg", "", "read config " + images["bigcfg"].config.String() + ": blob " + images["bigcfg"].config.String() + ": larger than 16777216 bytes"},
		{"bigcfg", "linux/amd64", "larger than 16777216 bytes"}, // the platform check reads the config too
		{"bigmf", "", "larger than 16777216"},
		{"mtlayer", "", `unknown media type "application/vnd.foo.layer"`},
		{"mtcfg", "", `config: unknown media type "application/octet-stream"`},
		{"schema3", "", "invalid manifest: schemaVersion 3"},
	} {
		t.Run(tc.repo+" "+tc.platform, func(t *testing.T) {
			img := images[tc.repo]
			before := map[digest.Digest]int{img.config: h.fetched(img.config), img.layers[0]: h.fetched(img.layers[0])}
			st := newStore(t)
			makeImage(t, st, "example.com/base:1", map[string]string{"a": "base"})
			snap := snapshot(t, st)
			ref := h.host + "/" + tc.repo + ":latest"
			_, err := (&registry.Client{}).Pull(context.Background(), st, ref, registry.PullOptions{Platform: tc.platform, CheckLayer: checkLayer})
			if err == nil || !(strings.HasPrefix(err.Error(), "pull "+ref+": ") || strings.HasPrefix(err.Error(), "pull "+ref+" from ")) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Pull(%s) = %v, want one line with %q", ref, err, tc.want)
			}
			for d, n := range before {
				if got := h.fetched(d); got != n {
					t.Errorf("blob %s was downloaded %d times by a refused pull", d, got-n)
				}
			}
			storeUnchanged(t, st, snap)
		})
	}
	// The same registry serves a good image, which pulls.
	good := h.image("good", 0, nil, layer)
	st := newStore(t)
	if _, err := (&registry.Client{}).Pull(context.Background(), st, h.host+"/good:latest", registry.PullOptions{CheckLayer: checkLayer}); err != nil {
		t.Fatalf("Pull(good) = %v", err)
	}
	if !st.Has(good.manifest) || !st.Has(good.config) {
		t.Errorf("a good pull did not store its manifest and config")
	}
}

// TestPullLayerMissingLeavesNoMetadata: a pull that fails on a layer the registry
// does not have (a 404 after another layer arrived) records nothing and leaves
// no config or manifest blob in the store; the layer that arrived whole may stay,
// as NOTES says (for a retry), and gc would remove it.
func TestPullLayerMissingLeavesNoMetadata(t *testing.T) {
	h := startHostileRegistry(t)
	img := h.image("app", 0, nil,
		entriesTar(t, entry{name: "a", body: "first"}),
		entriesTar(t, entry{name: "b", body: "second"}))
	h.mu.Lock()
	h.missing[img.layers[1]] = true
	h.mu.Unlock()
	st := newStore(t)
	ref := h.host + "/app:latest"
	_, err := (&registry.Client{}).Pull(context.Background(), st, ref, registry.PullOptions{CheckLayer: checkLayer})
	if err == nil || !strings.Contains(err.Error(), img.layers[1].String()) {
		t.Fatalf("Pull(%s) with a missing layer = %v, want an error naming %s", ref, err, img.layers[1])
	}
	for what, d := range map[string]digest.Digest{"config": img.config, "manifest": img.manifest, "missing layer": img.layers[1]} {
		if st.Has(d) {
			t.Errorf("a failed pull left its %s %s in the store", what, d)
		}
	}
	if imgs, _ := st.Images(); len(imgs) != 0 {
		t.Errorf("a failed pull recorded %d images", len(imgs))
	}
	res, err := st.GC(context.Background(), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Removed {
		if d != img.layers[0] {
			t.Errorf("gc would delete %s: only the arrived layer %s may be left unreferenced", d, img.layers[0])
		}
	}
}
