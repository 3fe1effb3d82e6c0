package blobstore

import (
	"archive/tar"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/tartest"
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

// TestLayerCheckContentSize: ContentSize is the size LayerSizes counts from the
// stored blob (archive/tar's sum of header sizes), learnt in the one pass, in every
// compression, with and without a check; unknown (left to LayerSizes) for content
// the counter beside a check gives up on, for what archive/tar cannot read, and
// for a refused layer.
func TestLayerCheckContentSize(t *testing.T) {
	files := writeTar(t,
		&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "bin/busybox", Size: 70001, Typeflag: tar.TypeReg, Mode: 0o755},
		&tar.Header{Name: "bin/sh", Linkname: "bin/busybox", Typeflag: tar.TypeLink},
		&tar.Header{Name: "bin/ls", Linkname: "busybox", Typeflag: tar.TypeSymlink},
		&tar.Header{Name: strings.Repeat("d/", 80) + "f", Size: 513, Typeflag: tar.TypeReg, Format: tar.FormatPAX},
		&tar.Header{Name: "etc/.wh.passwd", Typeflag: tar.TypeReg},
	)
	// an old GNU sparse file: archive/tar reads its real size, the counter gives up
	sparse := tartest.Cat(tartest.Entry(tartest.Header{Name: "s", Typeflag: 'S', Mode: 0o644, Size: 3, Magic: tartest.GNUMagic,
		Sparse: [][2]int64{{0, 3}}, RealSize: 9000}, []byte("abc")), tartest.End())
	// one zero block, then a header: the counter stops at the zero block,
	// archive/tar refuses what follows
	afterEnd := tartest.Cat(writeTar(t, &tar.Header{Name: "a", Size: 5, Typeflag: tar.TypeReg})[:2*tarBlock],
		make([]byte, tarBlock), tartest.Entry(tartest.Header{Name: "b", Typeflag: '0', Mode: 0o644}, nil))
	sc := newTarSizeCounter()
	sc.Write(afterEnd)
	if _, err := tarHeaderSizes(afterEnd); !sc.ok() || err == nil {
		t.Fatalf("header after the end: counter ok %v, archive/tar %v; want the counter to sum it and archive/tar to refuse it", sc.ok(), err)
	}
	// readTar checks as cow.CheckLayer does: archive/tar to its end
	readTar := func(r io.Reader) error { _, err := sumTarHeaders(r); return err }
	for _, tc := range []struct {
		name  string
		raw   []byte
		check func(io.Reader) error
		known bool // else unknown
	}{
		{"files, no check", files, nil, true},
		{"files, check", files, readTar, true},
		{"old GNU sparse, no check", sparse, nil, true},
		{"old GNU sparse, check", sparse, readTar, false},
		{"header after the end, no check", afterEnd, nil, false},
		{"not a tar, no check", []byte(`{"architecture":"amd64"}`), nil, false},
	} {
		for _, c := range []Compression{Gzip, Zstd, None} {
			t.Run(tc.name+" "+string(c), func(t *testing.T) {
				lc := NewLayerCheck(LayerMediaType(c), tc.check)
				lc.Write(compressBytes(t, tc.raw, c))
				if err := lc.Close(); err != nil {
					t.Fatalf("Close = %v", err)
				}
				got, ok := lc.ContentSize()
				want, err := tarHeaderSizes(tc.raw)
				if !tc.known {
					if ok {
						t.Errorf("ContentSize() = %d, true, want it unknown (archive/tar: %d, %v)", got, want, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !ok || got != want {
					t.Errorf("ContentSize() = %d, %v, want %d, true", got, ok, want)
				}
			})
		}
	}

	lc := NewLayerCheck(ocispec.MediaTypeImageLayer, func(io.Reader) error { return errors.New("refused") })
	lc.Write(files)
	if err := lc.Close(); err == nil {
		t.Fatal("Close = nil, want the refusal")
	}
	if n, ok := lc.ContentSize(); ok {
		t.Errorf("refused layer: ContentSize() = %d, true, want it unknown", n)
	}
}
