package integration

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// regLayer is a layer of the given tar entries, gzip or zstd with the OCI media type.
func regLayer(t *testing.T, c compression.Compression, entries ...tarFileEntry) v1.Layer {
	t.Helper()
	raw := writeTarEntries(t, entries)
	mt := types.OCILayer
	if c == compression.ZStd {
		mt = types.OCILayerZStd
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
		tarball.WithCompression(c), tarball.WithMediaType(mt), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// regPushLayers pushes a linux/amd64 OCI image of layers to ref.
func regPushLayers(t *testing.T, ref string, layers ...v1.Layer) {
	t.Helper()
	img := huntImage(t, layers...)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// TestRegistryPullHostileLayer: pull refuses an image with a layer no mount could
// unpack, as load does, with one error line naming the image, the layer and the
// entry, and leaves the root exactly as it was (no blob, no temp file, no tag);
// images lists the same. A good image with the same good layers still pulls.
func TestRegistryPullHostileLayer(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	file := func(name, body string) tarFileEntry {
		return tarFileEntry{hdr: &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg}, body: []byte(body)}
	}
	symlink := func(name, target string) tarFileEntry {
		return tarFileEntry{hdr: &tar.Header{Name: name, Linkname: target, Mode: 0o777, Typeflag: tar.TypeSymlink}}
	}
	good := []v1.Layer{
		regLayer(t, compression.GZip, file("etc/hostname", "good\n")),
		regLayer(t, compression.ZStd, file("usr/share/doc/x", strings.Repeat("doc ", 4096))),
	}
	cases := []struct {
		name string
		bad  v1.Layer
		want string
	}{
		{"dotdot", regLayer(t, compression.GZip, file("ok", "x"), file("../escape", "x")), "check ../escape: unsafe path in layer tar"},
		{"symlink", regLayer(t, compression.ZStd, symlink("etc", "/"), file("etc/passwd", "root::0:0::/:/bin/sh\n")), "check etc/passwd: unsafe path in layer tar: etc is a symlink"},
	}
	e := newRegEnv(t)
	e.addImage("base:1", map[string]string{"etc/a": "one"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := reg.Host + "/hostile/" + tc.name + ":1"
			regPushLayers(t, ref, good[0], tc.bad, good[1])
			d, _ := tc.bad.Digest()
			imagesBefore := e.ok("images", "--no-trunc")
			before := treeSnapshot(t, e.root)
			e.fails("pull "+ref+": layer "+d.String()+": "+tc.want, "pull", ref)
			if diff := diffTrees(before, treeSnapshot(t, e.root)); diff != "" {
				t.Errorf("root changed by a refused pull:\n%s", diff)
			}
			if out := e.ok("images", "--no-trunc"); out != imagesBefore {
				t.Errorf("images after a refused pull =\n%s\nwant\n%s", out, imagesBefore)
			}
		})
	}
	ref := reg.Host + "/good/app:1"
	regPushLayers(t, ref, good...)
	e.ok("pull", "-q", ref)
	if _, err := e.store().Resolve(ref); err != nil {
		t.Errorf("good image after pull: %v", err)
	}
}

// TestRegistryPullDiffIDMismatch: pull refuses an image whose layer blobs match the
// manifest but whose config's diff_id for one of them is not its uncompressed
// content, as docker does and load does: one error line naming the layer and both
// digests, a non-zero exit, and the root as it was.
func TestRegistryPullDiffIDMismatch(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	file := func(name, body string) tarFileEntry {
		return tarFileEntry{hdr: &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg}, body: []byte(body)}
	}
	a := regLayer(t, compression.GZip, file("etc/hostname", "good\n"))
	b := regLayer(t, compression.ZStd, file("usr/bin/app", "app"))
	img := huntImage(t, a, b)
	aID, _ := a.DiffID()
	bID, _ := b.DiffID()
	bDigest, _ := b.Digest()
	img = registrytest.WithDiffIDs(t, img, aID, aID) // b's place claims a's content
	ref := reg.Host + "/hostile/diffid:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}

	e := newRegEnv(t)
	e.addImage("base:1", map[string]string{"etc/a": "one"})
	imagesBefore := e.ok("images", "--no-trunc")
	before := treeSnapshot(t, e.root)
	e.fails("pull "+ref+": layer "+bDigest.String()+": content does not match digest: uncompressed content is "+bID.String()+", config diff_id is "+aID.String(), "pull", ref)
	if diff := diffTrees(before, treeSnapshot(t, e.root)); diff != "" {
		t.Errorf("root changed by a refused pull:\n%s", diff)
	}
	if out := e.ok("images", "--no-trunc"); out != imagesBefore {
		t.Errorf("images after a refused pull =\n%s\nwant\n%s", out, imagesBefore)
	}
}
