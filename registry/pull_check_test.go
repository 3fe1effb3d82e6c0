package registry_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/treecmp"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
	"github.com/opencontainers/go-digest"
)

// entry is one tar entry of a test layer: a regular file, or a symlink with Link.
type entry struct {
	name, body, link string
}

func entriesTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if e.link != "" {
			h.Typeflag, h.Linkname, h.Size, h.Mode = tar.TypeSymlink, e.link, 0, 0o777
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// remoteLayer makes a layer of the tar raw, compressed as c says, with the
// matching OCI media type.
func remoteLayer(t *testing.T, raw []byte, c compression.Compression) v1.Layer {
	t.Helper()
	if c == compression.None {
		return static.NewLayer(raw, types.OCIUncompressedLayer)
	}
	opts := []tarball.LayerOption{tarball.WithCompression(c), tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching}
	if c == compression.ZStd {
		opts[1] = tarball.WithMediaType(types.OCILayerZStd)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// remoteImage makes a linux/amd64 OCI image of layers.
func remoteImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushRemote(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("remote.Write(%s): %v", ref, err)
	}
}

// checkLayer is mountcmd's check: cow.CheckLayer.
func checkLayer(r io.Reader) error {
	_, err := cow.CheckLayer(r)
	return err
}

func layerDigest(t *testing.T, l v1.Layer) digest.Digest {
	t.Helper()
	h, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

// storeCmp compares a store before and after an operation that must leave it as it
// was: everything but directory mtimes (a temp file made and removed moves them).
var storeCmp = treecmp.Options{NoDirMtime: true}

func snapshot(t *testing.T, st *blobstore.Store) treecmp.Tree {
	t.Helper()
	tr, err := treecmp.Snapshot(st.Dir(), storeCmp)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// storeUnchanged fails t unless st is as in before: no new blob, no temp file, the
// same index.json.
func storeUnchanged(t *testing.T, st *blobstore.Store, before treecmp.Tree) {
	t.Helper()
	if d := treecmp.Diff(before, snapshot(t, st), storeCmp); len(d) > 0 {
		t.Errorf("store changed:\n%s", strings.Join(d, "\n"))
	}
}

// TestPullChecksLayers: a pulled image with a layer no mount could unpack (an
// entry escaping the root, a path through a symlink, a name too long), whatever
// the layer's compression, fails the pull with one line naming the reference,
// the layer and the entry, and leaves the store exactly as it was, although the
// image's good layers downloaded fine. Without the check the same pulls succeed.
func TestPullChecksLayers(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	good1 := entriesTar(t, entry{name: "etc/hostname", body: "good\n"}, entry{name: "bin/sh", link: "busybox"})
	good2 := entriesTar(t, entry{name: "usr/share/doc", body: strings.Repeat("docs ", 1000)})
	long := strings.Repeat("n", 256)
	for _, tc := range []struct {
		name    string
		hostile []entry
		c       compression.Compression
		want    string
	}{
		{"dotdot gzip", []entry{{name: "ok", body: "x"}, {name: "../escape", body: "x"}}, compression.GZip, "check ../escape: unsafe path"},
		{"symlink zstd", []entry{{name: "etc", link: "/"}, {name: "etc/passwd", body: "root::0:0::/:/bin/sh\n"}}, compression.ZStd, "check etc/passwd: unsafe path in layer tar: etc is a symlink"},
		{"long name uncompressed", []entry{{name: "dir/" + long, body: "x"}}, compression.None, "check dir/" + long + ": unsupported layer content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := remoteLayer(t, entriesTar(t, tc.hostile...), tc.c)
			// the hostile layer between two good ones, all downloaded at once
			img := remoteImage(t, remoteLayer(t, good1, tc.c), bad, remoteLayer(t, good2, tc.c))
			ref := reg.Host + "/hostile/" + strings.ReplaceAll(tc.name, " ", "-") + ":1"
			pushRemote(t, ref, img)

			st := newStore(t)
			makeImage(t, st, "example.com/base:1", map[string]string{"a": "base"})
			before := snapshot(t, st)
			imgsBefore, _ := st.Images()
			_, err := (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: checkLayer})
			if err == nil {
				t.Fatalf("Pull(%s) of a hostile image succeeded", ref)
			}
			t.Logf("Pull: %v", err)
			want := "pull " + ref + ": layer " + layerDigest(t, bad).String() + ": " + tc.want
			if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Pull(%s) = %q, want one line starting %q", ref, err, want)
			}
			var ee *cow.EntryError
			if !errors.As(err, &ee) {
				t.Errorf("Pull(%s) = %v, want a *cow.EntryError inside", ref, err)
			}
			storeUnchanged(t, st, before)
			if imgs, _ := st.Images(); len(imgs) != len(imgsBefore) {
				t.Errorf("images after a refused pull: %d, want %d", len(imgs), len(imgsBefore))
			}

			// the check is what refuses: without it the image is stored
			if _, err := (&registry.Client{}).Pull(ctx, newStore(t), ref, registry.PullOptions{}); err != nil {
				t.Errorf("Pull(%s) without a check = %v, want success", ref, err)
			}
		})
	}

	// a good image in every compression pulls with the check on
	for _, c := range []compression.Compression{compression.GZip, compression.ZStd, compression.None} {
		img := remoteImage(t, remoteLayer(t, good1, c), remoteLayer(t, good2, c))
		ref := reg.Host + "/good/" + string(c) + ":1"
		pushRemote(t, ref, img)
		st := newStore(t)
		res, err := (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: checkLayer})
		if err != nil {
			t.Fatalf("Pull(%s) = %v", ref, err)
		}
		if md, _ := img.Digest(); res.Image.ManifestDigest.String() != md.String() {
			t.Errorf("Pull(%s) = %s, want %s", ref, res.Image.ManifestDigest, md)
		}
	}
}

// TestPullChecksStoredLayers: a layer the store has already is not downloaded
// again but, for an image new to the store, read back and checked as well, as
// load checks every layer of what it records.
func TestPullChecksStoredLayers(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	bad := remoteLayer(t, entriesTar(t, entry{name: "../escape", body: "x"}), compression.GZip)
	img := remoteImage(t, remoteLayer(t, entriesTar(t, entry{name: "a", body: "a"}), compression.GZip), bad)
	ref := reg.Host + "/stored/app:1"
	pushRemote(t, ref, img)

	st := newStore(t)
	// the hostile blob is in the store already (as an unchecked old pull left it)
	rc, err := bad.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Put(ctx, rc, layerDigest(t, bad)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	before := snapshot(t, st)
	_, err = (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: checkLayer})
	want := "layer " + layerDigest(t, bad).String() + ": check ../escape: unsafe path"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Pull(%s) with the hostile layer stored = %v, want an error containing %q", ref, err, want)
	}
	storeUnchanged(t, st, before)
}

// TestPullRefusalCancels: a refused layer ends the downloads still running at once
// (they would otherwise hang: the registry stalls them halfway), and the pull
// leaves no temp file behind.
func TestPullRefusalCancels(t *testing.T) {
	bad := remoteLayer(t, entriesTar(t, entry{name: "../escape", body: "x"}), compression.GZip)
	big := func(seed string) v1.Layer {
		return remoteLayer(t, entriesTar(t, entry{name: seed, body: strings.Repeat(seed, 1<<20)}), compression.None)
	}
	img := remoteImage(t, big("a"), big("b"), bad)
	badHash, _ := bad.Digest()
	stall := registrytest.StartStalling(t, "slow/app", "1", img, badHash)

	st := newStore(t)
	before := snapshot(t, st)
	// the refusal waits until both other layers hang mid-download
	var hangingAtRefusal atomic.Int64
	check := func(r io.Reader) error {
		err := checkLayer(r)
		// the refusal, not the cut-off checks of the layers it cancels (which
		// fail reading an entry's data)
		if ee := (*cow.EntryError)(nil); errors.As(err, &ee) && strings.Contains(err.Error(), "../escape") {
			deadline := time.Now().Add(10 * time.Second)
			for stall.Hanging() < 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			hangingAtRefusal.Store(int64(stall.Hanging()))
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := (&registry.Client{}).Pull(ctx, st, stall.Host+"/slow/app:1", registry.PullOptions{CheckLayer: check})
	if err == nil || !strings.Contains(err.Error(), "check ../escape") || ctx.Err() != nil {
		t.Fatalf("Pull = %v (after %v), want the refusal before the timeout", err, time.Since(start))
	}
	if errors.Is(err, context.Canceled) {
		t.Errorf("Pull = %v, want the refusal, not a cancelled neighbour", err)
	}
	if n := hangingAtRefusal.Load(); n != 2 {
		t.Errorf("downloads in flight at the refusal = %d, want 2", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for stall.Hanging() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := stall.Hanging(); n != 0 {
		t.Errorf("%d stalled downloads still connected after the pull returned", n)
	}
	storeUnchanged(t, st, before)
}

// TestPullKeepsArrivedLayers: a pull that fails for another reason than a refused
// layer (here the connection stalls until the caller gives up) keeps the layers
// that arrived whole and passed, as docker does, so that a retry fetches only the
// rest; the image itself is not recorded.
func TestPullKeepsArrivedLayers(t *testing.T) {
	layer := func(seed string) v1.Layer {
		return remoteLayer(t, entriesTar(t, entry{name: seed, body: strings.Repeat(seed, 1<<20)}), compression.GZip)
	}
	whole, stalled := layer("a"), layer("b")
	img := remoteImage(t, whole, stalled)
	wholeHash, _ := whole.Digest()
	stalledHash, _ := stalled.Digest()
	stall := registrytest.StartStalling(t, "slow/app", "1", img, wholeHash)
	st := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	checked := make(chan struct{}, 2)
	check := func(r io.Reader) error {
		err := checkLayer(r)
		checked <- struct{}{} // only the whole layer's check ever returns by itself
		return err
	}
	go func() {
		<-stall.Started // the other layer is half sent
		select {
		case <-checked: // the whole layer is in and passed
		case <-time.After(20 * time.Second):
		}
		cancel()
	}()
	_, err := (&registry.Client{}).Pull(ctx, st, stall.Host+"/slow/app:1", registry.PullOptions{CheckLayer: check})
	if err == nil {
		t.Fatal("Pull of a stalled image succeeded")
	}
	if !st.Has(digest.Digest(wholeHash.String())) {
		t.Errorf("the layer that arrived whole was dropped (%v)", err)
	}
	if st.Has(digest.Digest(stalledHash.String())) {
		t.Errorf("the half-sent layer was stored")
	}
	if imgs, _ := st.Images(); len(imgs) != 0 {
		t.Errorf("a failed pull recorded %d images", len(imgs))
	}
}
