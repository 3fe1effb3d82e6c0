package cow

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// umociUnpack unpacks uncompressed layer tars (bottom first) with umoci, an
// independent applier of OCI whiteouts, and returns the rootfs.
func umociUnpack(t *testing.T, layers ...[]byte) string {
	umoci := testenv.RequireTool(t, "umoci")
	base := tempDir(t)
	img := filepath.Join(base, "image")
	must(t, os.MkdirAll(filepath.Join(img, "blobs/sha256"), 0o755))
	put := func(b []byte) ocispec.Descriptor {
		d := digest.FromBytes(b)
		must(t, os.WriteFile(filepath.Join(img, "blobs/sha256", d.Encoded()), b, 0o644))
		return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
	}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers"}}
	var descs []ocispec.Descriptor
	for _, l := range layers {
		d := put(l)
		d.MediaType = ocispec.MediaTypeImageLayer
		descs = append(descs, d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d.Digest)
	}
	cb, err := json.Marshal(cfg)
	must(t, err)
	cd := put(cb)
	cd.MediaType = ocispec.MediaTypeImageConfig
	mb, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: descs})
	must(t, err)
	md := put(mb)
	md.MediaType = ocispec.MediaTypeImageManifest
	md.Annotations = map[string]string{ocispec.AnnotationRefName: "test"}
	ib, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}})
	must(t, err)
	must(t, os.WriteFile(filepath.Join(img, "index.json"), ib, 0o644))
	must(t, os.WriteFile(filepath.Join(img, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644))
	rootfs := filepath.Join(base, "rootfs")
	if out, err := exec.Command(umoci, "raw", "unpack", "--image", img+":test", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("umoci raw unpack: %v\n%s", err, out)
	}
	return rootfs
}
