package blobstore

import (
	"archive/tar"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestLayerCheck: the check sees the uncompressed tar whatever the blob's
// compression, decompressed by media type (sniffed when it is unknown), and its
// verdict comes back from Close.
func TestLayerCheck(t *testing.T) {
	raw := makeTar(t, tarEntry{Name: "etc/hostname", Body: strings.Repeat("layerfs\n", 1000)}, tarEntry{Name: "bin/sh", Body: "#!"})
	names := func(r io.Reader) ([]string, error) {
		var out []string
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				_, err = io.Copy(io.Discard, r)
				return out, err
			}
			if err != nil {
				return out, err
			}
			out = append(out, h.Name)
		}
	}
	for _, tc := range []struct {
		name      string
		c         Compression
		mediaType string
	}{
		{"gzip", Gzip, ocispec.MediaTypeImageLayerGzip},
		{"zstd", Zstd, ocispec.MediaTypeImageLayerZstd},
		{"none", None, MediaTypeDockerLayer},
		{"gzip sniffed", Gzip, "application/octet-stream"},
		{"zstd sniffed", Zstd, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob := compressBytes(t, raw, tc.c)
			var got []string
			lc := NewLayerCheck(tc.mediaType, func(r io.Reader) error {
				var err error
				got, err = names(r)
				return err
			})
			// small writes, as a download arrives
			for b := blob; len(b) > 0; {
				n := min(len(b), 777)
				if w, err := lc.Write(b[:n]); w != n || err != nil {
					t.Fatalf("Write = %d, %v", w, err)
				}
				b = b[n:]
			}
			if err := lc.Close(); err != nil {
				t.Fatalf("Close = %v", err)
			}
			if strings.Join(got, ",") != "etc/hostname,bin/sh" {
				t.Errorf("check saw %q, want etc/hostname,bin/sh", got)
			}
		})
	}

	refuse := errors.New("refused")
	lc := NewLayerCheck(ocispec.MediaTypeImageLayerGzip, func(r io.Reader) error {
		io.CopyN(io.Discard, r, 10)
		return refuse // an early verdict: the rest is dropped
	})
	lc.Write(compressBytes(t, raw, Gzip))
	if err := lc.Close(); !errors.Is(err, refuse) {
		t.Errorf("Close = %v, want the check's verdict", err)
	}

	// a blob that is not what its media type says fails the check
	lc = NewLayerCheck(ocispec.MediaTypeImageLayerGzip, func(r io.Reader) error { _, err := names(r); return err })
	lc.Write(raw)
	if err := lc.Close(); err == nil {
		t.Errorf("Close of an uncompressed blob said to be gzip = nil, want an error")
	}
	// a blob cut short ends the check too (Close does not hang)
	lc = NewLayerCheck(ocispec.MediaTypeImageLayerGzip, func(r io.Reader) error { _, err := names(r); return err })
	gz := compressBytes(t, raw, Gzip)
	lc.Write(gz[:len(gz)/2])
	if err := lc.Close(); err == nil {
		t.Errorf("Close of half a gzip blob = nil, want an error")
	}
}

// TestLayerCheckDiffID: DiffID is the sha256 of the whole uncompressed content,
// with or without a check, also when the check stops reading at the tar's end
// marker and leaves the padding after it; a failed check gives none.
func TestLayerCheckDiffID(t *testing.T) {
	raw := makeTar(t, tarEntry{Name: "etc/hostname", Body: strings.Repeat("layerfs\n", 1000)})
	raw = append(raw, make([]byte, 10240)...) // record padding a tar reader never reads
	want := digest.FromBytes(raw)
	firstEntry := func(r io.Reader) error {
		_, err := tar.NewReader(r).Next()
		return err
	}
	for _, c := range []Compression{Gzip, Zstd, None} {
		for _, check := range []struct {
			name string
			fn   func(io.Reader) error
		}{{"no check", nil}, {"check stops early", firstEntry}} {
			t.Run(string(c)+" "+check.name, func(t *testing.T) {
				lc := NewLayerCheck(LayerMediaType(c), check.fn)
				lc.Write(compressBytes(t, raw, c))
				if err := lc.Close(); err != nil {
					t.Fatalf("Close = %v", err)
				}
				if got := lc.DiffID(); got != want {
					t.Errorf("DiffID() = %s, want %s", got, want)
				}
			})
		}
	}

	lc := NewLayerCheck(ocispec.MediaTypeImageLayer, func(io.Reader) error { return errors.New("refused") })
	lc.Write(raw)
	if err := lc.Close(); err == nil || lc.DiffID() != "" {
		t.Errorf("refused layer: Close = %v, DiffID() = %q, want an error and no diffID", err, lc.DiffID())
	}
}
