package registry_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// newStore opens an empty store in a temp dir.
func newStore(t *testing.T) *blobstore.Store {
	t.Helper()
	st, err := blobstore.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// layerTar is a small tar with the given files.
func layerTar(t *testing.T, files map[string]string) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(c))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

// makeImage stores an image with one layer per entry of layers and tags it ref.
func makeImage(t *testing.T, st *blobstore.Store, ref string, layers ...map[string]string) *blobstore.Image {
	t.Helper()
	ctx := context.Background()
	var descs []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, files := range layers {
		d, diffID, err := st.AppendLayer(ctx, layerTar(t, files), "gzip")
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
		diffIDs = append(diffIDs, diffID)
	}
	cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Cmd = []string{"/bin/sh"}
	img, err := st.WriteImage(ctx, cfg, descs)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Tag(ctx, img, ref); err != nil {
		t.Fatal(err)
	}
	img, err = st.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// recorder keeps progress events.
type recorder struct {
	mu      sync.Mutex
	headers []string
	final   map[string]registry.Status
}

func (r *recorder) Header(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.headers = append(r.headers, line)
}

func (r *recorder) Layer(id string, s registry.Status, _, _ int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.final == nil {
		r.final = map[string]registry.Status{}
	}
	if s.Final() {
		r.final[id] = s
	}
}

func (r *recorder) statuses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.final {
		out = append(out, string(s))
	}
	return out
}

func allEqual(l []string, want string) bool {
	for _, s := range l {
		if s != want {
			return false
		}
	}
	return len(l) > 0
}

func TestPushPullRoundTrip(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	src := newStore(t)
	img := makeImage(t, src, "example.com/app:1", map[string]string{"a": "one"}, map[string]string{"b": "two"})
	c := &registry.Client{}
	dest := reg.Host + "/team/app:v1"

	var pushed recorder
	res, err := c.Push(ctx, src, "example.com/app:1", dest, registry.PushOptions{Progress: &pushed})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if res.Digest != img.ManifestDigest {
		t.Errorf("Push digest = %s, want %s", res.Digest, img.ManifestDigest)
	}
	if got := pushed.statuses(); len(got) != 2 || !allEqual(got, string(registry.StatusPushed)) {
		t.Errorf("first push statuses = %v, want 2 x Pushed", got)
	}
	if want := "The push refers to repository [" + reg.Host + "/team/app]"; len(pushed.headers) != 1 || pushed.headers[0] != want {
		t.Errorf("push headers = %q, want %q", pushed.headers, want)
	}
	uploads, _ := reg.Uploads(t)

	// A second push sends nothing.
	var again recorder
	if _, err := c.Push(ctx, src, "example.com/app:1", dest, registry.PushOptions{Progress: &again}); err != nil {
		t.Fatalf("second Push: %v", err)
	}
	if got := again.statuses(); !allEqual(got, string(registry.StatusLayerExists)) {
		t.Errorf("second push statuses = %v, want all Layer already exists", got)
	}
	if u, _ := reg.Uploads(t); u != uploads {
		t.Errorf("second push uploaded %d blobs, want 0", u-uploads)
	}

	// Pull into a fresh store: the same digests.
	dst := newStore(t)
	var pulled recorder
	pr, err := c.Pull(ctx, dst, dest, registry.PullOptions{Progress: &pulled})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if pr.Image.ManifestDigest != img.ManifestDigest || pr.Image.ID != img.ID {
		t.Errorf("Pull = manifest %s id %s, want %s %s", pr.Image.ManifestDigest, pr.Image.ID, img.ManifestDigest, img.ID)
	}
	if !pr.Updated {
		t.Errorf("first Pull Updated = false")
	}
	if got := pulled.statuses(); len(got) != 2 || !allEqual(got, string(registry.StatusPullComplete)) {
		t.Errorf("pull statuses = %v, want 2 x Pull complete", got)
	}
	if want := "v1: Pulling from team/app"; len(pulled.headers) != 1 || pulled.headers[0] != want {
		t.Errorf("pull headers = %q, want %q", pulled.headers, want)
	}
	got, err := dst.Resolve(dest)
	if err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Fatalf("Resolve(%s) = %v, %v", dest, got, err)
	}
	rd, err := dst.RepoDigests(img.ManifestDigest)
	if err != nil || len(rd) != 1 || rd[0] != reg.Host+"/team/app@"+img.ManifestDigest.String() {
		t.Errorf("RepoDigests = %v, %v", rd, err)
	}
	// the pull recorded the layers' content sizes (docker's SIZE) as it stored them
	var recorded map[string]int64
	if b, err := os.ReadFile(filepath.Join(dst.Dir(), ".layerfs", "layersizes.json")); err != nil || json.Unmarshal(b, &recorded) != nil {
		t.Errorf("layer sizes after pull: %v %s", err, b)
	}
	for _, id := range got.Config.RootFS.DiffIDs {
		if _, ok := recorded[id.String()]; !ok {
			t.Errorf("pull recorded no content size for layer %s (%v)", id, recorded)
		}
	}

	// A single-platform image must match an explicit --platform.
	if _, err := c.Pull(ctx, newStore(t), dest, registry.PullOptions{Platform: "linux/arm64"}); !errors.Is(err, registry.ErrNoPlatform) {
		t.Errorf("Pull --platform linux/arm64 of an amd64 image = %v, want ErrNoPlatform", err)
	}

	// Pulling again changes nothing.
	pr, err = c.Pull(ctx, dst, dest, registry.PullOptions{})
	if err != nil || pr.Updated {
		t.Errorf("second Pull = updated %v, %v; want up to date", pr != nil && pr.Updated, err)
	}

	// An image removed from index.json whose blobs are still there (before gc, or
	// left by a pull that failed to record it) is not up to date: it is recorded
	// again, and said to be new.
	if err := dst.DeleteImage(ctx, img.ManifestDigest); err != nil {
		t.Fatal(err)
	}
	byDigest := reg.Host + "/team/app@" + img.ManifestDigest.String()
	pr, err = c.Pull(ctx, dst, byDigest, registry.PullOptions{})
	if err != nil || !pr.Updated {
		t.Errorf("Pull by digest of a removed image whose blobs remain = updated %v, %v; want updated", pr != nil && pr.Updated, err)
	}
	if got, err := dst.Resolve(byDigest); err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Errorf("Resolve(%s) after the pull = %v, %v", byDigest, got, err)
	}

	// Pushing the same image to another repository mounts its blobs.
	var mounted recorder
	if _, err := c.Push(ctx, src, "example.com/app:1", reg.Host+"/other/app:v1", registry.PushOptions{Progress: &mounted}); err != nil {
		t.Fatalf("Push to other repository: %v", err)
	}
	if got := mounted.statuses(); !allEqual(got, "Mounted from team/app") {
		t.Errorf("cross-repository push statuses = %v, want all Mounted from team/app", got)
	}
}

func TestPullPlatform(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	idx := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	want := map[string]v1.Hash{}
	key := func(p v1.Platform) string { return p.Architecture + p.Variant }
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "arm", Variant: "v6"}, {OS: "linux", Architecture: "arm", Variant: "v7"}} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		want[key(p)] = d
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	ref, err := name.ParseReference(reg.Host + "/multi/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("WriteIndex: %v", err)
	}
	idxDigest, _ := idx.Digest()
	c := &registry.Client{}
	// docker's spellings and choices (containerd's platforms): linux/arm is
	// arm/v7, the best of v7 and v6; x86_64, aarch64, armhf, upper case and a
	// bare arch are normalised (they were refused, and linux/arm took v6).
	for _, tc := range []struct{ platform, arch string }{{"linux/arm64", "arm64v8"}, {"linux/amd64", "amd64"},
		{"linux/arm", "armv7"}, {"linux/arm/v7", "armv7"}, {"linux/arm/v6", "armv6"}, {"linux/armhf", "armv7"},
		{"linux/x86_64", "amd64"}, {"Linux/AMD64", "amd64"}, {"linux/aarch64", "arm64v8"}, {"amd64", "amd64"}} {
		st := newStore(t)
		res, err := c.Pull(ctx, st, ref.String(), registry.PullOptions{Platform: tc.platform})
		if err != nil {
			t.Fatalf("Pull --platform %s: %v", tc.platform, err)
		}
		if string(res.Image.ManifestDigest) != want[tc.arch].String() {
			t.Errorf("Pull --platform %s = %s (%s), want %s's %s", tc.platform, res.Image.ManifestDigest, res.Image.Config.Architecture, tc.arch, want[tc.arch])
		}
		if res.Digest.String() != idxDigest.String() {
			t.Errorf("Pull --platform %s digest = %s, want the index's %s", tc.platform, res.Digest, idxDigest)
		}
	}
	_, err = c.Pull(ctx, newStore(t), ref.String(), registry.PullOptions{Platform: "linux/s390x"})
	if !errors.Is(err, registry.ErrNoPlatform) {
		t.Errorf("Pull --platform linux/s390x = %v, want ErrNoPlatform", err)
	}

	// An index of linux/386 alone serves an amd64 pull, as docker's (amd64
	// runs 386); arm/v7 falls back to v6.
	img386, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	only := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json"),
		mutate.IndexAddendum{Add: img386, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "386"}}})
	ref386, _ := name.ParseReference(reg.Host + "/multi/i386:1")
	if err := remote.WriteIndex(ref386, only); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, newStore(t), ref386.String(), registry.PullOptions{Platform: "linux/amd64"}); err != nil {
		t.Errorf("Pull --platform linux/amd64 of a 386-only index: %v", err)
	}
	if _, err := c.Pull(ctx, newStore(t), ref386.String(), registry.PullOptions{Platform: "linux/arm64"}); !errors.Is(err, registry.ErrNoPlatform) {
		t.Errorf("Pull --platform linux/arm64 of a 386-only index = %v, want ErrNoPlatform", err)
	}
}

func TestLoginAndPrivatePull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Users: map[string]string{"alice": "s3cret"}})
	ctx := context.Background()
	authfile := filepath.Join(t.TempDir(), "auth.json")
	c := &registry.Client{Keychain: registry.Keychain(authfile)}
	src := newStore(t)
	makeImage(t, src, "private:1", map[string]string{"secret": "x"})
	dest := reg.Host + "/private/app:1"

	if _, err := c.Push(ctx, src, "private:1", dest, registry.PushOptions{}); !errors.Is(err, registry.ErrDenied) {
		t.Errorf("Push without login = %v, want ErrDenied", err)
	}
	if _, _, err := c.Login(ctx, authfile, reg.Host, "alice", "wrong"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("Login with a wrong password = %v, want ErrUnauthorized", err)
	}
	if _, err := os.Stat(authfile); err == nil {
		t.Errorf("a failed login wrote %s", authfile)
	}
	key, plain, err := c.Login(ctx, authfile, "http://"+reg.Host+"/", "alice", "s3cret")
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if key != reg.Host || !plain {
		t.Errorf("Login = key %q plaintext %v, want %q true", key, plain, reg.Host)
	}
	b, _ := os.ReadFile(authfile)
	if !strings.Contains(string(b), `"auths"`) || !strings.Contains(string(b), reg.Host) {
		t.Errorf("auth file = %s, want an auths entry for %s", b, reg.Host)
	}
	if _, err := c.Push(ctx, src, "private:1", dest, registry.PushOptions{}); err != nil {
		t.Fatalf("Push after login: %v", err)
	}
	if _, err := c.Pull(ctx, newStore(t), dest, registry.PullOptions{}); err != nil {
		t.Fatalf("Pull after login: %v", err)
	}
	if _, removed, err := registry.Logout(authfile, reg.Host); err != nil || !removed {
		t.Fatalf("Logout = %v, %v", removed, err)
	}
	_, err = c.Pull(ctx, newStore(t), dest, registry.PullOptions{})
	if !errors.Is(err, registry.ErrDenied) {
		t.Errorf("Pull after logout = %v, want ErrDenied", err)
	}
	if _, removed, _ := registry.Logout(authfile, reg.Host); removed {
		t.Errorf("second Logout removed something")
	}
}

func TestTLS(t *testing.T) {
	// On a loopback address a registry's certificate is not checked, as
	// docker's default insecure 127.0.0.0/8 (a self-signed one failed).
	local := registrytest.Start(t, registrytest.Options{TLS: true})
	lsrc := newStore(t)
	makeImage(t, lsrc, "tls:1", map[string]string{"f": "tls"})
	if _, err := (&registry.Client{}).Push(context.Background(), lsrc, "tls:1", local.Host+"/tls/app:1", registry.PushOptions{}); err != nil {
		t.Errorf("Push to a self-signed loopback registry: %v", err)
	}

	reg := registrytest.Start(t, registrytest.Options{TLS: true, NonLoopback: true})
	ctx := context.Background()
	src := newStore(t)
	makeImage(t, src, "tls:1", map[string]string{"f": "tls"})
	dest := reg.Host + "/tls/app:1"

	if _, err := (&registry.Client{}).Push(ctx, src, "tls:1", dest, registry.PushOptions{}); err == nil {
		t.Errorf("Push to an untrusted certificate succeeded")
	}
	if _, err := (&registry.Client{CertDir: reg.CertDir}).Push(ctx, src, "tls:1", dest, registry.PushOptions{}); err != nil {
		t.Fatalf("Push with --cert-dir: %v", err)
	}
	if _, err := (&registry.Client{SkipTLSVerify: true}).Pull(ctx, newStore(t), dest, registry.PullOptions{}); err != nil {
		t.Fatalf("Pull with --tls-verify=false: %v", err)
	}
	host, _, _ := strings.Cut(reg.Host, ":")
	cfg := registry.Config{Insecure: []string{host + "/32"}}
	if _, err := (&registry.Client{Config: cfg}).Pull(ctx, newStore(t), dest, registry.PullOptions{}); err != nil {
		t.Fatalf("Pull from an insecure-registries network: %v", err)
	}
}

func TestMirrors(t *testing.T) {
	mirror := registrytest.Start(t, registrytest.Options{})
	origin := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	src := newStore(t)
	img := makeImage(t, src, "hub:1", map[string]string{"m": "mirror"})
	c := &registry.Client{}
	// The mirror serves docker.io's library/busybox as library/busybox.
	if _, err := c.Push(ctx, src, "hub:1", mirror.Host+"/library/busybox:mirrored", registry.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, src, "hub:1", origin.Host+"/library/busybox:origin", registry.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	down := fmt.Sprintf("http://127.0.0.1:%d", registrytest.FreePort(t))

	for _, tc := range []struct {
		name    string
		mirrors []string
		ref     string
		from    string
	}{
		{"mirror serves", []string{"http://" + mirror.Host}, "busybox:mirrored", mirror.Host},
		{"mirror down, next mirror", []string{down, "http://" + mirror.Host}, "busybox:mirrored", mirror.Host},
		{"mirror lacks it, origin", []string{"http://" + mirror.Host}, "busybox:origin", origin.Host},
		{"mirror down, origin", []string{down}, "busybox:origin", origin.Host},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &registry.Client{Config: registry.Config{Mirrors: tc.mirrors}, HubOrigin: origin.Host}
			st := newStore(t)
			res, err := c.Pull(ctx, st, tc.ref, registry.PullOptions{})
			if err != nil {
				t.Fatalf("Pull(%s): %v", tc.ref, err)
			}
			if res.Registry != tc.from || res.Image.ManifestDigest != img.ManifestDigest {
				t.Errorf("Pull(%s) = from %s manifest %s, want %s %s", tc.ref, res.Registry, res.Image.ManifestDigest, tc.from, img.ManifestDigest)
			}
			if want := "docker.io/library/" + tc.ref; !contains(res.Image.Tags, want) {
				t.Errorf("tags = %v, want %s", res.Image.Tags, want)
			}
		})
	}
	c = &registry.Client{Config: registry.Config{Mirrors: []string{down}}, HubOrigin: fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))}
	if _, err := c.Pull(ctx, newStore(t), "busybox:origin", registry.PullOptions{}); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("Pull with everything down = %v, want one error line", err)
	}
}

func TestPullErrors(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	src := newStore(t)
	img := makeImage(t, src, "err:1", map[string]string{"e": strings.Repeat("corrupt me ", 100)})
	c := &registry.Client{}
	if _, err := c.Push(ctx, src, "err:1", reg.Host+"/err/app:1", registry.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	layer := img.Manifest.Layers[0].Digest
	if err := os.WriteFile(reg.BlobPath(layer.String()), bytes.Repeat([]byte{'x'}, int(img.Manifest.Layers[0].Size)), 0o644); err != nil {
		t.Fatal(err)
	}
	unreachable := fmt.Sprintf("127.0.0.1:%d/app:1", registrytest.FreePort(t))
	for _, tc := range []struct {
		name, ref string
		is        error
		msg       string
	}{
		{"404", reg.Host + "/nope/app:1", registry.ErrNotFound, "manifest for " + reg.Host + "/nope/app:1 not found"},
		{"unknown digest", reg.Host + "/err/app@sha256:" + strings.Repeat("a", 64), registry.ErrNotFound, "not found"},
		{"corrupt blob", reg.Host + "/err/app:1", blobstore.ErrDigestMismatch, layer.String()},
		{"unreachable", unreachable, nil, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t)
			// with the layer check on, as the CLI pulls: a damaged blob is still a digest mismatch
			_, err := c.Pull(ctx, st, tc.ref, registry.PullOptions{CheckLayer: checkLayer})
			if err == nil {
				t.Fatalf("Pull(%s) succeeded", tc.ref)
			}
			t.Logf("Pull(%s): %v", tc.ref, err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Pull(%s) = %v, want %v", tc.ref, err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Pull(%s) = %q, want one line containing %q", tc.ref, err, tc.msg)
			}
			if imgs, _ := st.Images(); len(imgs) != 0 {
				t.Errorf("failed pull left %d images", len(imgs))
			}
		})
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestPushNondistributable: an image with a non-distributable layer (no URLs)
// is pushed whole, as docker and skopeo push it: go-containerregistry skipped
// the layer silently, printed it as pushed, and the manifest then failed on a
// blob the registry lacked (found by a review).
func TestPushNondistributable(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	layer, err := random.Layer(512, types.OCIRestrictedLayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), layer)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := name.ParseReference(reg.Host + "/nd/src:1")
	if err := remote.Write(src, img, remote.WithNondistributable); err != nil {
		t.Fatalf("Write: %v", err)
	}
	c := &registry.Client{}
	st := newStore(t)
	if _, err := c.Pull(ctx, st, src.String(), registry.PullOptions{}); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	dest := reg.Host + "/nd/copy:1"
	if _, err := c.Push(ctx, st, src.String(), dest, registry.PushOptions{}); err != nil {
		t.Fatalf("Push of a non-distributable layer: %v", err)
	}
	if _, err := c.Pull(ctx, newStore(t), dest, registry.PullOptions{}); err != nil {
		t.Errorf("Pull of the pushed copy: %v", err)
	}
}
