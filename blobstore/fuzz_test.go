package blobstore

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/tartest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// FuzzLoad feeds Load archive bytes (header checksums repaired first, see
// tartest.FixChecksums, or almost every mutation stops at archive/tar's check).
// checkLoad says what must hold.
func FuzzLoad(f *testing.F) {
	img := newTestImage(f, "fz", 1, Gzip, "fz:latest")
	two := newTestImage(f, "two", 2, None, "two:1", "two:2")
	f.Add(ociArchive(f, img))
	f.Add(classicDockerArchive(f, img))
	f.Add(classicDockerArchive(f, img, two))
	f.Add(makeTar(f, aliasEntries(f, img, tar.TypeSymlink, true)...))
	f.Add(makeTar(f, tarEntry{Name: "../x", Body: "y"}))
	f.Add(makeTar(f, tarEntry{Name: "manifest.json", Body: `[{"Config":"c","Layers":["l","l"]}]`},
		tarEntry{Name: "c", Link: "l"}, tarEntry{Name: "l", Link: "c"}))
	f.Add(compressBytes(f, ociArchive(f, two), Zstd))
	f.Add([]byte{0x1f, 0x8b, 0x08})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			t.Skip()
		}
		checkLoad(t, tartest.FixChecksums(data), LoadOptions{})
	})
}

// fuzzBase is the image every fuzz store holds before the load: a failed load
// must leave it (and its blobs, which the archives share) alone.
var fuzzBase = sync1(func(t testing.TB) []byte {
	return classicDockerArchive(t, newTestImage(t, "fz", 1, Gzip, "fz:latest"))
})

// checkLoad loads archive into a store holding fuzzBase, and checks: a failed
// load leaves the store exactly as it was; a load that succeeds leaves only blobs
// that hash to their names, every image it reports complete and listed, and no
// spool behind; nothing is written outside the store either way.
func checkLoad(t *testing.T, archive []byte, opts LoadOptions) ([]Loaded, error) {
	t.Helper()
	parent := fastTempDir(t)
	s, err := Open(filepath.Join(parent, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(context.Background(), bytes.NewReader(fuzzBase(t)), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s.Dir())
	loaded, err := s.Load(context.Background(), bytes.NewReader(archive), opts)
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Fatalf("load wrote outside the store: %v", ents)
	}
	if ents, _ := os.ReadDir(s.tmpDir()); len(ents) != 0 {
		t.Errorf("load (%v) left %d entries in %s", err, len(ents), s.tmpDir())
	}
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q is not one line", err)
		}
		if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
			t.Fatalf("failed load (%v) changed the store:\n%s", err, d)
		}
		return nil, err
	}
	checkBlobs(t, s)
	imgs, err := s.Images()
	if err != nil {
		t.Fatalf("Images after a load: %v", err)
	}
	listed := map[digest.Digest]bool{}
	for _, img := range imgs {
		listed[img.ManifestDigest] = true
	}
	for _, l := range loaded {
		if l.Image == nil || !listed[l.Image.ManifestDigest] {
			t.Fatalf("Load reported %+v, which Images does not list", l)
		}
		for _, d := range append([]digest.Digest{l.Image.ManifestDigest, l.Image.Manifest.Config.Digest}, layerDigests(l.Image)...) {
			if !s.Has(d) {
				t.Errorf("image %s: blob %s missing after the load", l.Image.ManifestDigest, d)
			}
		}
		checkLayersOpen(t, s, l.Image)
	}
	if _, err := s.Resolve("fz:latest"); err != nil {
		t.Errorf("a load lost the store's tag: %v", err)
	}
	return loaded, nil
}

// checkLayersOpen: the descriptors of a loaded image say the sizes of the blobs
// stored, and every layer opens as a mount opens it (by its media type) and
// decompresses to the diffID its config names.
func checkLayersOpen(t *testing.T, s *Store, img *Image) {
	t.Helper()
	for _, d := range append([]ocispec.Descriptor{img.Manifest.Config}, img.Manifest.Layers...) {
		if n, err := s.Size(d.Digest); err != nil || n != d.Size {
			t.Errorf("image %s: blob %s has %d bytes (%v), its descriptor says %d", img.ManifestDigest, d.Digest, n, err, d.Size)
		}
	}
	for i, l := range img.Manifest.Layers {
		rc, err := s.OpenLayer(l)
		if err != nil {
			t.Errorf("image %s: layer %d: %v", img.ManifestDigest, i, err)
			continue
		}
		d, err := digest.SHA256.FromReader(rc)
		rc.Close()
		if want := img.Config.RootFS.DiffIDs[i]; err != nil || d != want {
			t.Errorf("image %s: layer %d (%s) reads as %s (%v), config diff_id %s", img.ManifestDigest, i, l.MediaType, d, err, want)
		}
	}
}

func layerDigests(img *Image) []digest.Digest {
	var ds []digest.Digest
	for _, l := range img.Manifest.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

// checkBlobs hashes every blob in the store against its name.
func checkBlobs(t *testing.T, s *Store) {
	t.Helper()
	dir := filepath.Join(s.Dir(), "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		d, err := digest.SHA256.FromReader(f)
		f.Close()
		if err != nil || d.Encoded() != e.Name() {
			t.Errorf("blob %s holds content %s (%v)", e.Name(), d, err)
		}
	}
}

// fastTempDir is t.TempDir on tmpfs (/dev/shm) when there is one: every fuzz run
// makes a store, and on ext4 the churn of dirs made and removed makes mkdir slow.
func fastTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp(shmDir, "layerfs-fuzz-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// shmDir is /dev/shm if it is a tmpfs we may write, else "" (the default temp dir).
var shmDir = func() string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC && unix.Access("/dev/shm", unix.W_OK) == nil {
		return "/dev/shm"
	}
	return ""
}()

// sync1 memoises a test fixture (fuzz runs share it).
func sync1(make func(testing.TB) []byte) func(testing.TB) []byte {
	var b []byte
	return func(t testing.TB) []byte {
		if b == nil {
			b = make(t)
		}
		return b
	}
}

// FuzzParseReference: whatever parses is normalised (parsing it again is a no-op)
// and never upper case.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/a/b:1", "a@sha256:" + strings.Repeat("0", 64), "UPPER", strings.Repeat("f", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseReference(s)
		if err != nil {
			return
		}
		again, err := ParseReference(n.String())
		if err != nil || again.String() != n.String() {
			t.Fatalf("ParseReference(%q) = %s, which reparses as %v, %v", s, n, again, err)
		}
	})
}
