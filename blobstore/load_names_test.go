package blobstore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// zeros reads as endless zero bytes and counts them.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	clear(p)
	z.n += int64(len(p))
	return len(p), nil
}

// TestLoadMetadataErrorsNameMembers: load's errors about a metadata file name the
// archive member (manifest.json, index.json, blobs/sha256/<hex>) rather than the
// spool's digest of it, which appears nowhere in the archive; a well-known
// metadata member declared larger than 16 MiB is refused from its tar header,
// before its content is read (a 10 GiB manifest.json was spooled to disk whole
// first); and an input that is not a tar at all is named by LoadOptions.Name.
func TestLoadMetadataErrorsNameMembers(t *testing.T) {
	ctx := context.Background()
	for _, member := range []string{"manifest.json", "index.json", "repositories", "oci-layout"} {
		t.Run("header/"+member, func(t *testing.T) {
			var hdr bytes.Buffer
			tw := tar.NewWriter(&hdr)
			if err := tw.WriteHeader(&tar.Header{Name: member, Mode: 0o644, Size: 10 << 30, Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			tw.Flush()
			body := &zeros{}
			s := newStore(t)
			_, err := s.Load(ctx, io.MultiReader(&hdr, io.LimitReader(body, 11<<30)), LoadOptions{})
			want := "load: invalid archive: " + member + " larger than 16777216 bytes"
			if err == nil || err.Error() != want || !errors.Is(err, ErrInvalidArchive) {
				t.Fatalf("Load = %v, want %q", err, want)
			}
			if body.n > 1<<20 {
				t.Errorf("Load read %d bytes of a member its header refuses", body.n)
			}
		})
	}

	// a config over the cap, named by the member the archive keeps it in
	big := newTestImage(t, "big", 1, None, "big:1")
	var cfg map[string]any
	if err := json.Unmarshal(big.config, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["config"].(map[string]any)["Labels"] = map[string]string{"pad": strings.Repeat("x", 17<<20)}
	big.config, _ = json.Marshal(cfg)
	for kind, mk := range map[string]func(testing.TB, ...*testImage) []byte{"oci": ociArchive, "docker-classic": classicDockerArchive} {
		t.Run("config/"+kind, func(t *testing.T) {
			s := newStore(t)
			_, err := s.Load(ctx, bytes.NewReader(mk(t, big)), LoadOptions{})
			member := "blobs/sha256/" + hexOf(big.config)
			if kind == "docker-classic" {
				member = hexOf(big.config) + ".json"
			}
			want := "load: invalid archive: " + member + " larger than 16777216 bytes"
			if err == nil || err.Error() != want {
				t.Fatalf("Load = %v, want %q", err, want)
			}
		})
	}

	// an empty or cut-short archive names its file too
	good := ociArchive(t, newTestImage(t, "good", 1, None, "good:1"))
	for name, in := range map[string][]byte{"empty": nil, "truncated": good[:len(good)/2]} {
		t.Run(name, func(t *testing.T) {
			_, err := newStore(t).Load(ctx, bytes.NewReader(in), LoadOptions{Name: "in.tar"})
			if err == nil || !strings.HasPrefix(err.Error(), "load in.tar: ") {
				t.Fatalf("Load of an %s archive = %v, want it to name in.tar", name, err)
			}
		})
	}

	t.Run("not-a-tar", func(t *testing.T) {
		s := newStore(t)
		script := strings.Repeat("#!/usr/bin/env python3\nprint('not a tar')\n", 40)
		_, err := s.Load(ctx, strings.NewReader(script), LoadOptions{Name: "mk.py"})
		want := "load mk.py: not a tar archive: archive/tar: invalid tar header"
		if err == nil || err.Error() != want || !errors.Is(err, ErrInvalidArchive) {
			t.Fatalf("Load = %v, want %q", err, want)
		}
	})
}
