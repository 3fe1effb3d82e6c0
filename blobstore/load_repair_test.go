package blobstore

import (
	"io"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestLoadRepairsTruncatedBlob: loading an archive again over a store whose copy
// of one of its blobs (a layer, the config) was cut short from outside puts the
// archive's verified copy in its place, at its mode, so the image reads whole
// again. Before, load skipped every blob the store had, reported success and left
// the damaged blob, and the image failed to save until rmi and gc.
func TestLoadRepairsTruncatedBlob(t *testing.T) {
	for name, mk := range map[string]func(testing.TB, ...*testImage) []byte{"oci": ociArchive, "docker-classic": classicDockerArchive} {
		for _, which := range []string{"layer", "config"} {
			t.Run(name+"/"+which, func(t *testing.T) {
				ti := newTestImage(t, "repair", 2, Gzip, "repair:1")
				archive := mk(t, ti)
				s := newStore(t)
				load(t, s, archive)
				d := sha(ti.layers[1])
				if which == "config" {
					d = sha(ti.config)
				}
				if err := os.Truncate(s.BlobPath(d), 10); err != nil {
					t.Fatal(err)
				}
				load(t, s, archive)
				fi, err := os.Stat(s.BlobPath(d))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("repaired blob mode = %v, want 0644", fi.Mode().Perm())
				}
				if err := readWhole(s, d); err != nil {
					t.Fatalf("blob %s after the reload: %v", d, err)
				}
				img, err := s.Resolve("repair:1")
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range append([]digest.Digest{img.ManifestDigest, img.ID}, sha(ti.layers[0]), sha(ti.layers[1])) {
					if err := readWhole(s, l); err != nil {
						t.Errorf("blob %s after the reload: %v", l, err)
					}
				}
				save(t, s, FormatDocker, "repair:1")
			})
		}
	}
}

// readWhole reads blob d through the store's verifying reader.
func readWhole(s *Store, d digest.Digest) error {
	rc, err := s.Open(d)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}
