package blobstore

import (
	"errors"
	"strings"
	"testing"
)

// A manifest in an archive must describe the blobs it names as they are: a mount
// opens a layer by its media type, and a registry or another tool trusts the sizes.
// Found by the property checkLoad adds for the load fuzz targets (loaded layers
// open to their diffIDs, descriptors say the blob sizes), on hand-made inputs.
func TestLoadManifestMisdescribesBlob(t *testing.T) {
	fx := metaFixture(t)
	oci := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@M","size":@MS,"annotations":{"org.opencontainers.image.ref.name":"docker.io/library/fz:meta"}}]}`
	docker := `[{"Config":"blobs/sha256/@CH","RepoTags":["fz:meta"],"Layers":["blobs/sha256/@L0H","blobs/sha256/@L1H"]}]`
	for _, tc := range []struct {
		name, from, to string
		want           error
	}{
		{"gzip layer said zstd", "tar+gzip", "tar+zstd", ErrInvalidManifest},
		{"plain layer said gzip", `layer.v1.tar","digest":"@L1"`, `layer.v1.tar+gzip","digest":"@L1"`, ErrInvalidManifest},
		{"config size", `"size":@CS`, `"size":3`, ErrDigestMismatch},
		{"layer size", `"size":@L1S`, `"size":3`, ErrDigestMismatch},
	} {
		man := strings.Replace(fx.manifest, tc.from, tc.to, 1)
		if man == fx.manifest {
			t.Fatalf("%s: %q is not in the manifest", tc.name, tc.from)
		}
		t.Run("oci/"+tc.name, func(t *testing.T) {
			a, o := fx.archive(t, 0, oci, man, fx.config, "")
			if _, err := checkLoad(t, a, o); !errors.Is(err, tc.want) {
				t.Errorf("Load = %v, want %v", err, tc.want)
			}
		})
		// docker load reads manifest.json; an embedded manifest that misdescribes
		// the blobs is not kept, one is made from the blobs instead (checkLoad
		// checks the sizes and media types of what is stored).
		t.Run("docker/"+tc.name, func(t *testing.T) {
			a, o := fx.archive(t, 1|64, docker, man, fx.config, "")
			if loaded, err := checkLoad(t, a, o); err != nil || len(loaded) != 1 {
				t.Fatalf("Load = %v, %v", loaded, err)
			}
		})
	}
}

// An OCI archive's index.json, or an image index it names, must give the size of
// the manifest or index it points at, as a manifest must give its config's and
// layers' (rev15-archive #4: a size 5 bytes too large loaded without a word).
func TestLoadIndexMisdescribesManifest(t *testing.T) {
	fx := metaFixture(t)
	// fill takes "@MS5" as @MS and a 5: the size with a digit appended
	const man = `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@M","size":@MS}`
	const nested = `{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"@X","size":@XS}`
	index := func(desc string) string { return `{"schemaVersion":2,"manifests":[` + desc + `]}` }
	for _, tc := range []struct {
		name, meta, extra string
		want              []string // in the error, in order; none: it loads
	}{
		{"right sizes", index(man), "", nil},
		{"right sizes, nested", index(nested), index(man), nil},
		{"manifest size", index(strings.Replace(man, "@MS", "@MS5", 1)), "", []string{"manifest sha256:", ": size ", ", index.json says "}},
		{"manifest size, nested", index(nested), index(strings.Replace(man, "@MS", "1", 1)), []string{"manifest sha256:", ": size ", ", index sha256:", " says 1"}},
		{"index size", index(strings.Replace(nested, "@XS", "@XS5", 1)), index(man), []string{"index sha256:", ": size ", ", index.json says "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, o := fx.archive(t, 0, tc.meta, fx.manifest, fx.config, tc.extra)
			loaded, err := checkLoad(t, a, o)
			if tc.want == nil {
				if err != nil || len(loaded) != 1 {
					t.Fatalf("Load = %v, %v; want one image", loaded, err)
				}
				return
			}
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("Load = %v, want %v", err, ErrDigestMismatch)
			}
			rest := err.Error()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("Load error %q: no %q (in order: %q)", err, w, tc.want)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
