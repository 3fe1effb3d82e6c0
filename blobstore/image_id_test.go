package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// indexEntries lists index.json as "manifest tag" lines (tag "-" when untagged),
// sorted.
func indexEntries(t *testing.T, s *Store) []string {
	t.Helper()
	idx, err := s.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range idx.Manifests {
		tag := refName(e)
		if tag == "" {
			tag = "-"
		}
		out = append(out, e.Digest.Encoded()[:12]+" "+FamiliarString(tag))
	}
	slices.Sort(out)
	return out
}

func entriesOf(md digest.Digest, tags ...string) []string {
	var out []string
	for _, t := range tags {
		out = append(out, md.Encoded()[:12]+" "+t)
	}
	slices.Sort(out)
	return out
}

// listed is what Images lists: "ID tag,tag" per image.
func listed(t *testing.T, s *Store) []string {
	t.Helper()
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, img := range imgs {
		var tags []string
		for _, tg := range img.Tags {
			tags = append(tags, FamiliarString(tg))
		}
		out = append(out, ShortID(img.ID)+" "+strings.Join(tags, ","))
	}
	return out
}

// bbImage builds the same image (one config, one ID) with its layers
// compressed with c, tagged tags.
func bbImage(t *testing.T, c Compression, tags ...string) *testImage {
	return newTestImage(t, "bb", 2, c, tags...)
}

// TestLoadSameIDOtherManifest: an image the store has, loaded again with other
// layer compression (another manifest, the same config: skopeo rewrites it),
// is one image, as in docker and podman: its tags go to the manifest the store
// has, the new manifest is not recorded, and the blobs only it brought are not
// kept (rev15-archive #1: a second entry listed as <none> with the same ID, and
// rmi of the tag said Deleted while it stayed).
func TestLoadSameIDOtherManifest(t *testing.T) {
	ctx := context.Background()
	first := bbImage(t, Gzip, "bb:1")
	md := sha(first.manifest())
	for _, tc := range []struct {
		name    string
		archive func(t *testing.T) []byte
		second  *testImage
		entries []string // tags on md, "-" for untagged
		tags    string   // what Images lists for the ID
	}{
		{"oci plain, other tag", nil, bbImage(t, None, "bb:2"), []string{"bb:1", "bb:2"}, "bb:1,bb:2"},
		{"oci zstd, untagged", nil, bbImage(t, Zstd), []string{"bb:1"}, "bb:1"},
		{"oci plain, same tag", nil, bbImage(t, None, "bb:1"), []string{"bb:1"}, "bb:1"},
		{"docker classic plain, other tag", func(t *testing.T) []byte {
			return classicDockerArchive(t, bbImage(t, None, "bb:3"))
		}, bbImage(t, None), []string{"bb:1", "bb:3"}, "bb:1,bb:3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			load(t, s, ociArchive(t, first))
			a := ociArchive(t, tc.second)
			if tc.archive != nil {
				a = tc.archive(t)
			}
			l := load(t, s, a)
			if len(l) != 1 || l[0].Image.ManifestDigest != md || l[0].Image.ID != sha(first.config) {
				t.Fatalf("Load = %+v, want the image stored already (manifest %s)", l, md)
			}
			if got, want := indexEntries(t, s), entriesOf(md, tc.entries...); !slices.Equal(got, want) {
				t.Errorf("index.json = %q, want %q", got, want)
			}
			if got, want := listed(t, s), []string{ShortID(sha(first.config)) + " " + tc.tags}; !slices.Equal(got, want) {
				t.Errorf("Images = %q, want %q", got, want)
			}
			for _, b := range append([][]byte{tc.second.manifest()}, tc.second.layers...) {
				if d := sha(b); s.Has(d) && !slices.ContainsFunc(first.layers, func(l []byte) bool { return bytes.Equal(l, b) }) {
					t.Errorf("blob %s of the second manifest was kept", d)
				}
			}
			if res, err := s.GC(ctx, true, nil); err != nil || len(res.Removed) != 0 {
				t.Errorf("GC dry run = %v, %v; want nothing to collect", res.Removed, err)
			}
		})
	}
}

// TestLoadSameIDOneArchive: two manifests of one image in one archive are one
// image too.
func TestLoadSameIDOneArchive(t *testing.T) {
	s := newStore(t)
	gz, plain := bbImage(t, Gzip, "bb:1"), bbImage(t, None, "bb:2")
	l := load(t, s, ociArchive(t, gz, plain))
	md := sha(gz.manifest())
	if len(l) != 2 || l[0].Image.ManifestDigest != md || l[1].Image.ManifestDigest != md {
		t.Fatalf("Load = %+v, want both as manifest %s", l, md)
	}
	if got, want := indexEntries(t, s), entriesOf(md, "bb:1", "bb:2"); !slices.Equal(got, want) {
		t.Errorf("index.json = %q, want %q", got, want)
	}
	if s.Has(sha(plain.manifest())) || s.Has(sha(plain.layers[0])) {
		t.Errorf("the second manifest's own blobs were kept")
	}
}

// TestLoadSameIDDamagedImage: an image whose blobs are not all there, or not
// whole (a truncated layer: rev15-sameid #4), is not one to record a reload's
// tags on: the load records its own manifest.
func TestLoadSameIDDamagedImage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(p string) error
	}{
		{"layer removed", os.Remove},
		{"layer truncated", func(p string) error { return os.Truncate(p, 10) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			gz, plain := bbImage(t, Gzip, "bb:1"), bbImage(t, None, "bb:2")
			load(t, s, ociArchive(t, gz))
			if err := tc.damage(s.BlobPath(sha(gz.layers[1]))); err != nil {
				t.Fatal(err)
			}
			l := load(t, s, ociArchive(t, plain))
			if md := sha(plain.manifest()); l[0].Image.ManifestDigest != md {
				t.Errorf("Load recorded %s, want its own manifest %s", l[0].Image.ManifestDigest, md)
			}
		})
	}
}

// TestWriteImageSameID: WriteImage of a config the store lists under another
// manifest tags that image.
func TestWriteImageSameID(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	ti := bbImage(t, Gzip)
	raw := makeTar(t, tarEntry{Name: "bb/file0", Body: strings.Repeat("bb", 100)})
	descs := func(b []byte, c Compression) []ocispec.Descriptor {
		d, n, err := s.Put(ctx, bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		return []ocispec.Descriptor{{MediaType: LayerMediaType(c), Digest: d, Size: n}}
	}
	cfg := []byte(fmt.Sprintf(`{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[%q]}}`, sha(raw)))
	a, err := s.WriteImageRaw(ctx, cfg, descs(ti.layers[0], Gzip), WithTags("w:1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.WriteImageRaw(ctx, cfg, descs(raw, None), WithTags("w:2"))
	if err != nil {
		t.Fatal(err)
	}
	if b.ManifestDigest != a.ManifestDigest || !slices.Equal(b.Tags, []string{"docker.io/library/w:1", "docker.io/library/w:2"}) {
		t.Errorf("WriteImage again = %s %q, want %s with both tags", b.ManifestDigest, b.Tags, a.ManifestDigest)
	}
	if got, want := indexEntries(t, s), entriesOf(a.ManifestDigest, "w:1", "w:2"); !slices.Equal(got, want) {
		t.Errorf("index.json = %q, want %q", got, want)
	}
}

// duplicateStore is a store that lists one image (bb) under two manifests, as a
// store written before load kept one image per ID (or by pull, which records the
// registry's manifest) does: gzip tagged tags1, plain tagged tags2.
func duplicateStore(t *testing.T, tags1, tags2 []string) (s *Store, id, m1, m2 digest.Digest) {
	t.Helper()
	ctx := context.Background()
	s = newStore(t)
	gz, plain := bbImage(t, Gzip, tags1...), bbImage(t, None)
	load(t, s, ociArchive(t, gz))
	for _, b := range append([][]byte{plain.manifest()}, plain.layers...) {
		if _, _, err := s.Put(ctx, bytes.NewReader(b), ""); err != nil {
			t.Fatal(err)
		}
	}
	mb := plain.manifest()
	if _, err := s.AddManifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: sha(mb), Size: int64(len(mb))}, tags2...); err != nil {
		t.Fatal(err)
	}
	if n := len(indexEntries(t, s)); n != max(len(tags1), 1)+max(len(tags2), 1) {
		t.Fatalf("index.json has %d entries: %q", n, indexEntries(t, s))
	}
	return s, sha(gz.config), sha(gz.manifest()), sha(mb)
}

// TestImagesSameIDDuplicates: Images lists an ID that index.json has under two
// manifests once, unless both are tagged (then as one image with several tags
// would show: a row per tag).
func TestImagesSameIDDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name         string
		tags1, tags2 []string
		want         []string
	}{
		{"tagged and untagged", []string{"bb:1"}, nil, []string{"bb:1"}},
		{"untagged and tagged", nil, []string{"bb:2"}, []string{"bb:2"}},
		{"both untagged", nil, nil, []string{""}},
		{"both tagged", []string{"bb:1"}, []string{"bb:2"}, []string{"bb:1", "bb:2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, id, _, _ := duplicateStore(t, tc.tags1, tc.tags2)
			var want []string
			for _, w := range tc.want {
				want = append(want, ShortID(id)+" "+w)
			}
			if got := listed(t, s); !slices.Equal(got, want) {
				t.Errorf("Images = %q, want %q", got, want)
			}
		})
	}
}

// TestRemoveSameIDDuplicates: rmi of an ID index.json has under two manifests,
// or of its last reference, removes both entries, and says Deleted only then.
func TestRemoveSameIDDuplicates(t *testing.T) {
	ctx := context.Background()
	type step struct {
		ref     string // %s: the ID's first 12 hex digits
		force   bool
		want    string // the lines, joined by "|"; %s: the ID
		wantErr string // in the error; "" for none
	}
	const conflict = "image is referenced in multiple repositories"
	for _, tc := range []struct {
		name         string
		tags1, tags2 []string
		steps        []step
	}{
		{"last tag", []string{"bb:1"}, nil, []step{{"bb:1", false, "Untagged: bb:1|Deleted: %s", ""}}},
		{"last tag on the second", nil, []string{"bb:2"}, []step{{"bb:2", false, "Untagged: bb:2|Deleted: %s", ""}}},
		{"by ID", []string{"bb:1"}, nil, []step{{"%s", false, "Untagged: bb:1|Deleted: %s", ""}}},
		{"by ID, untagged", nil, nil, []step{{"%s", false, "Deleted: %s", ""}}},
		{"tag of two", []string{"bb:1"}, []string{"bb:2"}, []step{
			{"bb:1", false, "Untagged: bb:1", ""},
			{"bb:2", false, "Untagged: bb:2|Deleted: %s", ""},
		}},
		{"by ID of two tags", []string{"bb:1"}, []string{"bb:2"}, []step{
			{"%s", false, "", conflict},
			{"%s", true, "Untagged: bb:1|Untagged: bb:2|Deleted: %s", ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, id, _, _ := duplicateStore(t, tc.tags1, tc.tags2)
			for _, st := range tc.steps {
				ref := strings.ReplaceAll(st.ref, "%s", id.Encoded()[:12])
				lines, err := s.Remove(ctx, ref, RemoveOptions{Force: st.force})
				var got []string
				for _, l := range lines {
					got = append(got, l.String())
				}
				want := strings.ReplaceAll(st.want, "%s", id.String())
				if g := strings.Join(got, "|"); g != want || (err == nil) != (st.wantErr == "") || err != nil && !strings.Contains(err.Error(), st.wantErr) {
					t.Fatalf("Remove(%s, force %v) = %q, %v; want %q, error %q", ref, st.force, g, err, want, st.wantErr)
				}
			}
			if got := indexEntries(t, s); len(got) != 0 {
				t.Errorf("index.json after the last rmi = %q, want no entry", got)
			}
		})
	}
}

// TestRemoveSameIDInUse: a container using the image through the manifest
// Images does not list is a user of the image all the same.
func TestRemoveSameIDInUse(t *testing.T) {
	ctx := context.Background()
	s, _, _, m2 := duplicateStore(t, []string{"bb:1"}, nil)
	before := indexEntries(t, s)
	inUse := func(img *Image) ([]string, error) {
		if img.ManifestDigest == m2 {
			return []string{"c1"}, nil
		}
		return nil, nil
	}
	for _, ref := range []string{"bb:1", ShortID(sha(bbImage(t, Gzip).config))} {
		_, err := s.Remove(ctx, ref, RemoveOptions{InUse: inUse})
		var c *ConflictError
		if !errors.As(err, &c) || !strings.Contains(c.Msg, "c1") {
			t.Errorf("Remove(%s) = %v, want a conflict naming container c1", ref, err)
		}
		if got := indexEntries(t, s); !slices.Equal(got, before) {
			t.Errorf("index.json after a refused rmi = %q, want %q", got, before)
		}
	}
}

// TestSameIDConcurrentWriters is rev15-sameid #3: a load (or WriteImage) that
// placed an image's config itself, while another writer of the same ID found
// the config there and recorded its manifest first, records its tags on that
// manifest too: one manifest per ID, whoever wrote the config.
func TestSameIDConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	raw := makeTar(t, tarEntry{Name: "bb/file0", Body: strings.Repeat("bb", 100)})
	cfg := []byte(fmt.Sprintf(`{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[%q]}}`, sha(raw)))
	for _, tc := range []struct {
		name string
		// first runs second inside it, once its blobs are in the store
		first, second func(t *testing.T, s *Store) digest.Digest // the manifest it recorded
	}{
		{"load", func(t *testing.T, s *Store) digest.Digest {
			return load(t, s, ociArchive(t, bbImage(t, Gzip, "bb:1")))[0].Image.ManifestDigest
		}, func(t *testing.T, s *Store) digest.Digest {
			return load(t, s, ociArchive(t, bbImage(t, None, "bb:2")))[0].Image.ManifestDigest
		}},
		{"WriteImage", func(t *testing.T, s *Store) digest.Digest {
			gz := bbImage(t, Gzip)
			d, n, err := s.Put(ctx, bytes.NewReader(gz.layers[0]), "")
			if err != nil {
				t.Fatal(err)
			}
			img, err := s.WriteImageRaw(ctx, cfg, []ocispec.Descriptor{{MediaType: LayerMediaType(Gzip), Digest: d, Size: n}}, WithTags("bb:1"))
			if err != nil {
				t.Fatal(err)
			}
			return img.ManifestDigest
		}, func(t *testing.T, s *Store) digest.Digest {
			d, n, err := s.Put(ctx, bytes.NewReader(raw), "")
			if err != nil {
				t.Fatal(err)
			}
			img, err := s.WriteImageRaw(ctx, cfg, []ocispec.Descriptor{{MediaType: LayerMediaType(None), Digest: d, Size: n}}, WithTags("bb:2"))
			if err != nil {
				t.Fatal(err)
			}
			return img.ManifestDigest
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			var second digest.Digest
			sameIDCommitHook = func() {
				if second == "" {
					second = "running"
					second = tc.second(t, s)
				}
			}
			t.Cleanup(func() { sameIDCommitHook = nil })
			first := tc.first(t, s)
			if second == "" || second == "running" {
				t.Fatal("the second writer did not run")
			}
			if first != second {
				t.Errorf("the first writer recorded %s, want the second's %s", first, second)
			}
			if got, want := indexEntries(t, s), entriesOf(second, "bb:1", "bb:2"); !slices.Equal(got, want) {
				t.Errorf("index.json = %q, want %q", got, want)
			}
			for _, img := range mustImages(t, s) {
				if err := s.hasBlobs(img); err != nil {
					t.Errorf("after both writers: %v", err)
				}
			}
		})
	}
}

func mustImages(t *testing.T, s *Store) []*Image {
	t.Helper()
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

// TestGCSameIDLeftovers is rev15-sameid #2: an entry of an ID that Images hides
// for good (no tag, no repo digest, another entry of the ID stays) goes with
// GC, and the blobs only it named with it; one a working container uses stays,
// as does one whose sibling is damaged.
func TestGCSameIDLeftovers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name         string
		tags1, tags2 []string
		root2        bool // a container uses the second manifest
		damage1      bool // a layer of the first is truncated
		wantGone     bool // the second manifest's entry and blobs go
	}{
		{"untagged beside tagged", []string{"bb:1"}, nil, false, false, true},
		{"tagged beside untagged", nil, []string{"bb:2"}, false, false, false}, // the first goes: checked below
		{"both untagged", nil, nil, false, false, true},
		{"both tagged", []string{"bb:1"}, []string{"bb:2"}, false, false, false},
		{"container on it", []string{"bb:1"}, nil, true, false, false},
		{"sibling damaged", []string{"bb:1"}, nil, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, m1, m2 := duplicateStore(t, tc.tags1, tc.tags2)
			if tc.damage1 {
				if err := os.Truncate(s.BlobPath(sha(bbImage(t, Gzip).layers[1])), 10); err != nil {
					t.Fatal(err)
				}
			}
			var roots []digest.Digest
			if tc.root2 {
				roots = []digest.Digest{m2}
			}
			before := listed(t, s)
			dry, err := s.GC(ctx, true, roots)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.GC(ctx, false, roots)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(dry.Removed, res.Removed) {
				t.Errorf("GC dry run would remove %q, GC removed %q", dry.Removed, res.Removed)
			}
			gone, stays := m2, m1
			if len(tc.tags1) == 0 && len(tc.tags2) > 0 {
				gone, stays = m1, m2
			}
			wantGone := tc.wantGone || len(tc.tags1) == 0 && len(tc.tags2) > 0
			idx := strings.Join(indexEntries(t, s), " ")
			if strings.Contains(idx, gone.Encoded()[:12]) == wantGone || s.Has(gone) == wantGone {
				t.Errorf("after GC: index.json %q, blob %s there %v; want gone %v", idx, gone.Encoded()[:12], s.Has(gone), wantGone)
			}
			if !strings.Contains(idx, stays.Encoded()[:12]) {
				t.Errorf("after GC: index.json %q lost %s", idx, stays.Encoded()[:12])
			}
			if got := listed(t, s); !slices.Equal(got, before) {
				t.Errorf("Images after GC = %q, want %q as before", got, before)
			}
			if !tc.damage1 {
				for _, img := range mustImages(t, s) {
					if err := s.hasBlobs(img); err != nil {
						t.Errorf("after GC: %v", err)
					}
				}
			}
		})
	}
}

// TestGCKeepsOtherToolsTags: an entry named by a ref.name that is an OCI tag
// but no docker reference ("Stable", "v1.0+build": skopeo and umoci write
// them; Images does not show them) is another tool's tag, not a leftover: GC
// dropped it, and umoci lost the tag (a code review).
func TestGCKeepsOtherToolsTags(t *testing.T) {
	for _, name := range []string{"Stable", "v1.0+build"} {
		t.Run(name, func(t *testing.T) {
			s, _, _, m2 := duplicateStore(t, []string{"bb:1"}, nil)
			annotateEntries(t, s, m2, map[string]string{ocispec.AnnotationRefName: name})
			if _, err := s.GC(context.Background(), false, nil); err != nil {
				t.Fatal(err)
			}
			idx, err := s.readIndex()
			if err != nil {
				t.Fatal(err)
			}
			kept := false
			for _, e := range idx.Manifests {
				kept = kept || e.Digest == m2 && e.Annotations[ocispec.AnnotationRefName] == name
			}
			if !kept || !s.Has(m2) {
				t.Errorf("GC dropped the entry another tool named %q (blob there: %v)", name, s.Has(m2))
			}
		})
	}
}
