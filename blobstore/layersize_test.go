package blobstore

import (
	"archive/tar"
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/tarhdr"
	"github.com/layerfs/layerfs/internal/tartest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarHeaderSizes is the reference: docker's sum of header sizes via archive/tar.
func tarHeaderSizes(b []byte) (int64, error) { return sumTarHeaders(bytes.NewReader(b)) }

func writeTar(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1, 0)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTarSizeCounter(t *testing.T) {
	long := strings.Repeat("d/", 80) + "file"
	cases := map[string][]byte{
		"empty":     writeTar(t),
		"one file":  writeTar(t, &tar.Header{Name: "a", Size: 1000, Typeflag: tar.TypeReg, Mode: 0o644}),
		"zero-size": writeTar(t, &tar.Header{Name: "a", Typeflag: tar.TypeReg}),
		"mixed": writeTar(t,
			&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
			&tar.Header{Name: "bin/busybox", Size: 4097, Typeflag: tar.TypeReg, Mode: 0o755},
			&tar.Header{Name: "bin/sh", Linkname: "bin/busybox", Typeflag: tar.TypeLink},
			&tar.Header{Name: "bin/ls", Linkname: "busybox", Typeflag: tar.TypeSymlink},
			&tar.Header{Name: "etc/.wh.passwd", Typeflag: tar.TypeReg},
			&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3},
			&tar.Header{Name: "fifo", Typeflag: tar.TypeFifo},
		),
		"pax long name": writeTar(t, &tar.Header{Name: long, Size: 513, Typeflag: tar.TypeReg, Format: tar.FormatPAX},
			&tar.Header{Name: "b", Size: 3, Typeflag: tar.TypeReg}),
		"pax xattr": writeTar(t, &tar.Header{Name: "x", Size: 10, Typeflag: tar.TypeReg,
			PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}}),
		"gnu long name": writeTar(t, &tar.Header{Name: long, Size: 700, Typeflag: tar.TypeReg, Format: tar.FormatGNU},
			&tar.Header{Name: "l", Linkname: long, Typeflag: tar.TypeSymlink, Format: tar.FormatGNU}),
		// archive/tar drops a local PAX header's records when a global one follows.
		"pax size, then global header": tartest.Cat(tartest.PAX(map[string]string{"size": "3"}),
			tartest.Entry(tartest.Header{Name: "g", Typeflag: 'g'}, tartest.PAXData(map[string]string{"comment": "x"})),
			tartest.Entry(tartest.Header{Name: "f", Typeflag: '0', Mode: 0o644}, nil), tartest.End()),
		"sparse real size, no version": tartest.Cat(tartest.PAX(map[string]string{"GNU.sparse.realsize": "999"}),
			tartest.Entry(tartest.Header{Name: "f", Typeflag: '0', Mode: 0o644}, []byte("abc")), tartest.End()),
		"sparse 1.0": tartest.Cat(tartest.PAX(map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "70000"}),
			tartest.Entry(tartest.Header{Name: "s", Typeflag: '0', Mode: 0o644}, append(tartest.Pad([]byte("1\n69997\n3\n")), "abc"...)), tartest.End()),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			want, err := tarHeaderSizes(b)
			if err != nil {
				t.Fatal(err)
			}
			for _, chunk := range []int{1, 7, 511, 512, 513, 1 << 20} {
				c := newTarSizeCounter()
				for p := b; len(p) > 0; {
					k := min(chunk, len(p))
					c.Write(p[:k])
					p = p[k:]
				}
				if !c.ok() || c.size() != want {
					t.Errorf("chunks of %d: counter = %d (ok %v), want %d", chunk, c.size(), c.ok(), want)
				}
			}
		})
	}
	for name, b := range map[string][]byte{"json": []byte(`{"architecture":"amd64"}`), "garbage": bytes.Repeat([]byte{'7'}, 2048)} {
		c := newTarSizeCounter()
		c.Write(b)
		if c.ok() {
			t.Errorf("%s: counter ok, want it to give up", name)
		}
	}
}

func TestTarNumber(t *testing.T) {
	for _, tc := range []struct {
		f    []byte
		want int64
		ok   bool
	}{
		{[]byte("00000001750\x00"), 1000, true},
		{[]byte("     1750 \x00\x00"), 1000, true},
		{append([]byte{0x80, 0, 0, 0}, 0, 0, 0, 2, 0, 0, 0, 0), 2 << 32, true}, // base-256: 8 GiB
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0, false},
		{[]byte("12x"), 0, false},
	} {
		got, ok := tarhdr.Number(tc.f)
		if got != tc.want || ok != tc.ok {
			t.Errorf("tarhdr.Number(%q) = %d, %v, want %d, %v", tc.f, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		recs       map[string]string
		size, real int64
	}{
		{map[string]string{"size": "1234567", "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "99999"}, 1234567, 99999},
		{map[string]string{"GNU.sparse.map": "0,3", "GNU.sparse.size": "7", "GNU.sparse.realsize": "99999"}, -1, 7},
		{map[string]string{"GNU.sparse.offset": "0", "GNU.sparse.numbytes": "3", "GNU.sparse.size": "7"}, -1, 7},
		// What archive/tar does not read as a sparse file has no real size (the
		// counter used it: found checking it against archive/tar for this change).
		{map[string]string{"size": "5", "GNU.sparse.realsize": "99999"}, 5, -1},
		{map[string]string{"GNU.sparse.major": "2", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "99999"}, -1, -1},
	} {
		if size, real := paxSizes(tartest.PAXData(tc.recs)); size != tc.size || real != tc.real {
			t.Errorf("paxSizes(%v) = %d, %d, want %d, %d", tc.recs, size, real, tc.size, tc.real)
		}
	}
}

// FuzzTarSizeCounter: whenever archive/tar reads a stream to its end, the counter
// agrees with it or gives up (it never reports a different size as ok), however
// the stream is cut into writes. Header checksums are repaired first
// (tartest.FixChecksums): the counter checks them as archive/tar does, and a
// mutation that breaks one only tests that both give up.
func FuzzTarSizeCounter(f *testing.F) {
	f.Add(uint16(0), writeTar(f, &tar.Header{Name: "a", Size: 5, Typeflag: tar.TypeReg}))
	f.Add(uint16(7), writeTar(f, &tar.Header{Name: strings.Repeat("n", 200), Size: 600, Typeflag: tar.TypeReg, Format: tar.FormatPAX}))
	f.Add(uint16(511), writeTar(f, &tar.Header{Name: strings.Repeat("g", 120), Size: 5, Typeflag: tar.TypeReg, Format: tar.FormatGNU},
		&tar.Header{Name: "l", Linkname: strings.Repeat("t", 120), Typeflag: tar.TypeSymlink, Format: tar.FormatGNU},
		&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Size: 0}))
	f.Add(uint16(100), tartest.Cat(
		tartest.PAX(map[string]string{"size": "3"}),
		tartest.Entry(tartest.Header{Name: "g", Typeflag: 'g'}, tartest.PAXData(map[string]string{"comment": "x"})),
		writeTar(f, &tar.Header{Name: "x", Size: 10, Typeflag: tar.TypeReg, PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}})))
	f.Add(uint16(1), tartest.Cat(
		tartest.PAX(map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s", "GNU.sparse.realsize": "70000"}),
		tartest.Entry(tartest.Header{Name: "s", Typeflag: '0', Mode: 0o644}, append(tartest.Pad([]byte("1\n69997\n3\n")), "abc"...)),
		tartest.End()))
	f.Add(uint16(3), tartest.Cat(
		tartest.PAX(map[string]string{"GNU.sparse.map": "0,3", "GNU.sparse.numblocks": "1", "GNU.sparse.size": "9000"}),
		tartest.Entry(tartest.Header{Name: "s", Typeflag: '0', Mode: 0o644}, []byte("abc")),
		tartest.PAX(map[string]string{"size": "3"}),
		tartest.Entry(tartest.Header{Name: "p", Typeflag: '0', Mode: 0o644, Size: 9}, []byte("xyz")),
		tartest.End()))
	f.Add(uint16(2), tartest.Cat(
		tartest.Header{Name: "huge", Typeflag: '0', SizeField: []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}}.Bytes(),
		tartest.Pad([]byte("abc")), tartest.End()))
	f.Fuzz(func(t *testing.T, chunk uint16, b []byte) {
		b = tartest.FixChecksums(b)
		want, err := tarHeaderSizes(b)
		c := newTarSizeCounter()
		n := max(1, int(chunk))
		for p := b; len(p) > 0; {
			k := min(n, len(p))
			c.Write(p[:k])
			p = p[k:]
		}
		if err == nil && c.ok() && c.size() != want {
			t.Errorf("counter = %d, archive/tar = %d", c.size(), want)
		}
	})
}

func TestLayerSizesRecorded(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	raw := writeTar(t, &tar.Header{Name: "big", Size: 300000, Typeflag: tar.TypeReg},
		&tar.Header{Name: "small", Size: 1234, Typeflag: tar.TypeReg})
	want, _ := tarHeaderSizes(raw)
	desc, diffID, err := s.AppendLayer(ctx, bytes.NewReader(raw), Gzip)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Size >= want {
		t.Fatalf("compressed layer is %d bytes, content %d: test needs compressible data", desc.Size, want)
	}
	rec := map[digest.Digest]int64{}
	if err := s.readMeta(layerSizesFile, &rec); err != nil || rec[diffID] != want {
		t.Fatalf("recorded size of %s = %d (%v), want %d", diffID, rec[diffID], err, want)
	}
	cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}}
	img, err := s.WriteImage(ctx, cfg, []ocispec.Descriptor{desc})
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := s.LayerSizes(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if got := img.ContentSize(sizes); got != want {
		t.Errorf("ContentSize = %d, want %d (compressed %d)", got, want, img.Size())
	}

	// A layer that arrived without a record (a pull) is counted once, then recorded.
	if err := os.Remove(filepath.Join(s.Dir(), privDir, layerSizesFile)); err != nil {
		t.Fatal(err)
	}
	sizes, err = s.LayerSizes(ctx, img)
	if err != nil || img.ContentSize(sizes) != want {
		t.Fatalf("LayerSizes without record = %v (%v), want %d", sizes, err, want)
	}
	rec = map[digest.Digest]int64{}
	if err := s.readMeta(layerSizesFile, &rec); err != nil || rec[diffID] != want {
		t.Errorf("after counting, recorded size = %d (%v), want %d", rec[diffID], err, want)
	}
}

func TestLoadRecordsLayerSizes(t *testing.T) {
	for _, c := range []Compression{Gzip, Zstd, None} {
		t.Run(string(c), func(t *testing.T) {
			s := newStore(t)
			ti := newTestImage(t, "sz", 2, c, "sz:1")
			load(t, s, ociArchive(t, ti))
			rec := map[digest.Digest]int64{}
			if err := s.readMeta(layerSizesFile, &rec); err != nil {
				t.Fatal(err)
			}
			img, err := s.Resolve("sz:1")
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range img.Config.RootFS.DiffIDs {
				want := int64(len(strings.Repeat("sz", 100+i)))
				if rec[id] != want {
					t.Errorf("layer %d: recorded size %d, want %d", i, rec[id], want)
				}
			}
		})
	}
}

// TestTarSizeCounterMutations is FuzzTarSizeCounter's property over a fixed set of
// corrupted tars (cheap enough for every run).
func TestTarSizeCounterMutations(t *testing.T) {
	base := writeTar(t,
		&tar.Header{Name: strings.Repeat("p/", 60) + "f", Size: 700, Typeflag: tar.TypeReg, Format: tar.FormatPAX},
		&tar.Header{Name: "d/", Typeflag: tar.TypeDir},
		&tar.Header{Name: "l", Linkname: "d", Typeflag: tar.TypeSymlink},
		&tar.Header{Name: strings.Repeat("g", 120), Size: 5, Typeflag: tar.TypeReg, Format: tar.FormatGNU},
	)
	rng := rand.New(rand.NewPCG(1, 2))
	agreed := 0
	for i := range 3000 {
		b := bytes.Clone(base)
		for range 1 + rng.IntN(3) {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		want, err := tarHeaderSizes(b)
		c := newTarSizeCounter()
		c.Write(b)
		if err == nil && c.ok() {
			if c.size() != want {
				t.Fatalf("mutation %d: counter = %d, archive/tar = %d", i, c.size(), want)
			}
			agreed++
		}
	}
	if agreed < 100 {
		t.Errorf("only %d of 3000 mutations parsed both ways: the test checks too little", agreed)
	}
}

func TestGCPrunesLayerSizes(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	keep := writeTestImage(t, s, newTestImage(t, "keep", 1, Gzip, "keep:1"))
	gone := writeTestImage(t, s, newTestImage(t, "gone", 1, Gzip, "gone:1"))
	if _, err := s.LayerSizes(ctx, keep, gone); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImage(ctx, gone.ManifestDigest); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx, false, nil); err != nil {
		t.Fatal(err)
	}
	rec := map[digest.Digest]int64{}
	if err := s.readMeta(layerSizesFile, &rec); err != nil {
		t.Fatal(err)
	}
	k, g := keep.Config.RootFS.DiffIDs[0], gone.Config.RootFS.DiffIDs[0]
	if _, ok := rec[k]; !ok || len(rec) != 1 {
		t.Errorf("sizes after gc = %v, want only %s (not %s)", rec, k, g)
	}
}

// TestRecordLayerSizes: sizes learnt elsewhere (a pull's LayerCheck pass) are
// recorded, a size recorded already is left as it is, and a call with nothing new
// does not rewrite the record.
func TestRecordLayerSizes(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	x, y := digest.FromString("x"), digest.FromString("y")
	if err := s.RecordLayerSizes(ctx, nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Dir(), privDir, layerSizesFile)
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("RecordLayerSizes(nil) wrote %s (%v)", layerSizesFile, err)
	}
	if err := s.RecordLayerSizes(ctx, map[digest.Digest]int64{x: 1}); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordLayerSizes(ctx, map[digest.Digest]int64{x: 2}); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(p); err != nil || !os.SameFile(before, after) {
		t.Errorf("RecordLayerSizes with nothing new replaced the record (%v)", err)
	}
	if err := s.RecordLayerSizes(ctx, map[digest.Digest]int64{x: 3, y: 4}); err != nil {
		t.Fatal(err)
	}
	rec := map[digest.Digest]int64{}
	if err := s.readMeta(layerSizesFile, &rec); err != nil || len(rec) != 2 || rec[x] != 1 || rec[y] != 4 {
		t.Errorf("record = %v (%v), want %s: 1, %s: 4", rec, err, x, y)
	}
}
