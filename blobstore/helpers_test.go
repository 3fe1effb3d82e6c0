package blobstore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/layerfs/layerfs/internal/treecmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarEntry is one file of a test tar; a Link makes a symlink, Type overrides.
type tarEntry struct {
	Name string
	Body string
	Link string
	Type byte
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: 0o644, Size: int64(len(e.Body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1, 0)}
		if e.Link != "" {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.Link, 0
		}
		if e.Type != 0 {
			h.Typeflag = e.Type
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compressBytes(t testing.TB, b []byte, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := compressor(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) digest.Digest { return digest.FromBytes(b) }

func hexOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// testImage is an image built in memory: its layers (as stored) and config.
type testImage struct {
	layers [][]byte // blobs, possibly compressed
	comps  []Compression
	config []byte
	tags   []string
	mt     []string // layer media types overriding the compression's
}

// newTestImage makes an image with n small layers compressed with c.
func newTestImage(t testing.TB, name string, n int, c Compression, tags ...string) *testImage {
	t.Helper()
	ti := &testImage{tags: tags}
	var diffIDs []digest.Digest
	var hist []ocispec.History
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := 0; i < n; i++ {
		raw := makeTar(t, tarEntry{Name: fmt.Sprintf("%s/file%d", name, i), Body: strings.Repeat(name, 100+i)})
		diffIDs = append(diffIDs, sha(raw))
		ti.layers = append(ti.layers, compressBytes(t, raw, c))
		ti.comps = append(ti.comps, c)
		hist = append(hist, ocispec.History{Created: &created, CreatedBy: fmt.Sprintf("/bin/sh -c #(nop) ADD file%d", i)})
	}
	cfg := ocispec.Image{Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Labels: map[string]string{"name": name}},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}, History: hist}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ti.config = b
	return ti
}

func (ti *testImage) manifest() []byte {
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: sha(ti.config), Size: int64(len(ti.config))}}
	m.SchemaVersion = 2
	for i, l := range ti.layers {
		mt := LayerMediaType(ti.comps[i])
		if i < len(ti.mt) {
			mt = ti.mt[i]
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: sha(l), Size: int64(len(l))})
	}
	b, _ := json.Marshal(m)
	return b
}

// classicDockerArchive is docker save's pre-25 layout: <id>/layer.tar, <hex>.json.
func classicDockerArchive(t testing.TB, imgs ...*testImage) []byte {
	t.Helper()
	var entries []tarEntry
	var manifest []map[string]any
	for _, ti := range imgs {
		var layers []string
		for i, l := range ti.layers {
			id := hexOf([]byte(fmt.Sprintf("v1-%s-%d", hexOf(ti.config), i)))
			entries = append(entries,
				tarEntry{Name: id + "/", Type: tar.TypeDir},
				tarEntry{Name: id + "/VERSION", Body: "1.0"},
				tarEntry{Name: id + "/json", Body: `{"id":"` + id + `"}`},
				tarEntry{Name: id + "/layer.tar", Body: string(l)})
			layers = append(layers, id+"/layer.tar")
		}
		entries = append(entries, tarEntry{Name: hexOf(ti.config) + ".json", Body: string(ti.config)})
		tags := ti.tags
		if tags == nil {
			tags = []string{}
		}
		manifest = append(manifest, map[string]any{"Config": hexOf(ti.config) + ".json", "RepoTags": tags, "Layers": layers})
	}
	mb, _ := json.Marshal(manifest)
	entries = append(entries, tarEntry{Name: "manifest.json", Body: string(mb)})
	return makeTar(t, entries...)
}

// ociArchive is an OCI image layout tar; tags go in ref.name as given.
func ociArchive(t testing.TB, imgs ...*testImage) []byte {
	t.Helper()
	return makeTar(t, ociEntries(imgs...)...)
}

// ociEntries are the entries of ociArchive, for tests that spoil them.
func ociEntries(imgs ...*testImage) []tarEntry {
	blobs := map[string][]byte{}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	for _, ti := range imgs {
		mb := ti.manifest()
		blobs[hexOf(mb)] = mb
		blobs[hexOf(ti.config)] = ti.config
		for _, l := range ti.layers {
			blobs[hexOf(l)] = l
		}
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: sha(mb), Size: int64(len(mb))}
		if len(ti.tags) == 0 {
			idx.Manifests = append(idx.Manifests, d)
		}
		for _, tag := range ti.tags {
			d := d
			d.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
			idx.Manifests = append(idx.Manifests, d)
		}
	}
	ib, _ := json.Marshal(idx)
	entries := []tarEntry{{Name: "oci-layout", Body: `{"imageLayoutVersion":"1.0.0"}`}, {Name: "index.json", Body: string(ib)}}
	var names []string
	for h := range blobs {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		entries = append(entries, tarEntry{Name: "blobs/sha256/" + h, Body: string(blobs[h])})
	}
	return entries
}

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapshotCmp: a store must be left exactly as it was, but for directory mtimes (a
// temp file made and removed again moves them).
var snapshotCmp = treecmp.Options{NoDirMtime: true}

// snapshot records everything under dir (type, mode, owner, content, xattrs, links,
// file mtimes).
func snapshot(t testing.TB, dir string) treecmp.Tree {
	t.Helper()
	tr, err := treecmp.Snapshot(dir, snapshotCmp)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// diffSnapshots lists what differs between two snapshots, one line each, sorted.
func diffSnapshots(a, b treecmp.Tree) string {
	return strings.Join(treecmp.Diff(a, b, snapshotCmp), "\n")
}

func load(t testing.TB, s *Store, archive []byte) []Loaded {
	t.Helper()
	l, err := s.Load(context.Background(), bytes.NewReader(archive), LoadOptions{})
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	return l
}

func save(t testing.TB, s *Store, format string, refs ...string) []byte {
	t.Helper()
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	var items []SaveItem
	for _, r := range refs {
		it, err := SaveItems(imgs, r)
		if err != nil {
			t.Fatalf("SaveItems(%q) = %v", r, err)
		}
		items = append(items, it...)
	}
	var buf bytes.Buffer
	if err := s.Save(context.Background(), &buf, items, SaveOptions{Format: format}); err != nil {
		t.Fatalf("Save = %v", err)
	}
	return buf.Bytes()
}

var _ = io.EOF

// compressor returns a single-stream compressor, for making test layers the way
// other tools (docker, skopeo) compress them.
func compressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case None:
		return nopWriteCloser{w}, nil
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	case Gzip, "":
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	}
	return nil, fmt.Errorf("compression %q: %w", c, ErrUnknownMediaType)
}
