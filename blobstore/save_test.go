package blobstore

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"
)

// tarFiles reads every regular file of an uncompressed tar, by name.
func tarFiles(t testing.TB, b []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			body, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = body
		}
	}
}

// TestSaveRepositories: the docker format has the legacy repositories file,
// as docker 25+ writes it: familiar name -> tag -> the image's top layer's
// diffID (hex), one JSON line; none for untagged images, none in the OCI format.
func TestSaveRepositories(t *testing.T) {
	s := newStore(t)
	a := newTestImage(t, "alpha", 2, Gzip, "docker.io/library/alpha:1", "docker.io/library/alpha:2", "localhost:5000/team/alpha:latest")
	b := newTestImage(t, "beta", 1, None, "docker.io/library/beta:latest")
	c := newTestImage(t, "gamma", 1, Zstd)
	load(t, s, ociArchive(t, a, b, c))
	top := func(ti *testImage) string {
		imgs, err := s.Images()
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs {
			if img.ID == sha(ti.config) {
				ids := img.Config.RootFS.DiffIDs
				return ids[len(ids)-1].Encoded()
			}
		}
		t.Fatalf("image %s not loaded", sha(ti.config))
		return ""
	}
	want := `{"alpha":{"1":"` + top(a) + `","2":"` + top(a) + `"},"beta":{"latest":"` + top(b) + `"},` +
		`"localhost:5000/team/alpha":{"latest":"` + top(a) + `"}}` + "\n"
	got := tarFiles(t, save(t, s, FormatDocker, "alpha", "localhost:5000/team/alpha:latest", "beta", sha(c.config).String()))
	if r, ok := got["repositories"]; !ok || string(r) != want {
		t.Errorf("repositories = %q (present %v), want %q", r, ok, want)
	}
	if r, ok := tarFiles(t, save(t, s, FormatDocker, sha(c.config).String()))["repositories"]; ok {
		t.Errorf("save of an untagged image wrote repositories %q, docker writes none", r)
	}
	if r, ok := tarFiles(t, save(t, s, FormatOCI, "alpha:1"))["repositories"]; ok {
		t.Errorf("save --format oci wrote repositories %q", r)
	}
}
