package blobstore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// aliasEntries are ti's OCI layout entries with index.json naming a manifest digest
// fake instead of the real one, and blobs/sha256/<fake> a link of type typ to the
// real manifest blob. With docker set they also carry docker's manifest.json, as
// docker save's newer layout does (the OCI layout then is the embedded one).
func aliasEntries(t testing.TB, ti *testImage, typ byte, docker bool) []tarEntry {
	t.Helper()
	mb := ti.manifest()
	fake := hexOf([]byte("not the manifest"))
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{{
		MediaType: ocispec.MediaTypeImageManifest, Digest: sha([]byte("not the manifest")), Size: int64(len(mb)),
		Annotations: map[string]string{ocispec.AnnotationRefName: ti.tags[0]},
	}}}
	idx.SchemaVersion = 2
	ib, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	var out []tarEntry
	for _, e := range ociEntries(ti) {
		if e.Name == "index.json" {
			e.Body = string(ib)
		}
		out = append(out, e)
	}
	link := tarEntry{Name: "blobs/sha256/" + fake, Type: typ, Link: hexOf(mb)}
	if typ == tar.TypeLink {
		link.Link = "blobs/sha256/" + hexOf(mb) // hard links name the target from the archive root
	}
	out = append(out, link)
	if docker {
		var layers []string
		for _, l := range ti.layers {
			layers = append(layers, "blobs/sha256/"+hexOf(l))
		}
		dm, err := json.Marshal([]dockerManifestEntry{{Config: "blobs/sha256/" + hexOf(ti.config), RepoTags: ti.tags, Layers: layers}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{Name: "manifest.json", Body: string(dm)})
	}
	return out
}

// A link under blobs/ must not let one blob's content be stored under another
// digest: that blob fails verification on every later read of index.json, which
// breaks images, inspect, tag and rmi for the whole store.
func TestLoadRefusesAliasedBlob(t *testing.T) {
	for _, tc := range []struct {
		name   string
		typ    byte
		docker bool
	}{
		{"oci-symlink", tar.TypeSymlink, false},
		{"oci-hardlink", tar.TypeLink, false},
		{"docker-embedded-symlink", tar.TypeSymlink, true},
		{"docker-embedded-hardlink", tar.TypeLink, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			load(t, s, classicDockerArchive(t, newTestImage(t, "base", 1, None, "base:latest")))
			before := snapshot(t, s.Dir())
			ti := newTestImage(t, "alias", 1, Gzip, "alias:1")
			_, err := s.Load(context.Background(), bytes.NewReader(makeTar(t, aliasEntries(t, ti, tc.typ, tc.docker)...)), LoadOptions{})
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("Load = %v, want %v", err, ErrDigestMismatch)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
			if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
				t.Fatalf("store changed by a refused load:\n%s", d)
			}
			if _, err := s.Resolve("base"); err != nil {
				t.Fatalf("Resolve(base) after the refused load = %v", err)
			}
		})
	}
}

// A link under blobs/ that leads to content of its own digest is harmless and loads.
func TestLoadAcceptsLinkToSameBlob(t *testing.T) {
	for _, typ := range []byte{tar.TypeSymlink, tar.TypeLink} {
		t.Run(string(typ), func(t *testing.T) {
			ti := newTestImage(t, "same", 1, Gzip, "same:1")
			var entries []tarEntry
			layer := "blobs/sha256/" + hexOf(ti.layers[0])
			for _, e := range ociEntries(ti) {
				if e.Name == layer {
					// the content under another name; the blob entry links to it
					entries = append(entries, tarEntry{Name: "extra/spare", Body: e.Body})
					e = tarEntry{Name: layer, Type: typ, Link: "../../extra/spare"}
					if typ == tar.TypeLink {
						e.Link = "extra/spare"
					}
				}
				entries = append(entries, e)
			}
			s := newStore(t)
			load(t, s, makeTar(t, entries...))
			img, err := s.Resolve("same:1")
			if err != nil {
				t.Fatalf("Resolve(same:1) = %v", err)
			}
			if img.Manifest.Layers[0].Digest != sha(ti.layers[0]) {
				t.Errorf("layer = %s, want %s", img.Manifest.Layers[0].Digest, sha(ti.layers[0]))
			}
		})
	}
}
