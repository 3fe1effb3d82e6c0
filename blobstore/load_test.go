package blobstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

type digests struct{ manifest, config digest.Digest }

func imageDigests(t testing.TB, s *Store) map[string]digests {
	t.Helper()
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]digests{}
	for _, img := range imgs {
		key := strings.Join(img.Tags, ",")
		if key == "" {
			key = "<none>" + img.ID.String()
		}
		out[key] = digests{img.ManifestDigest, img.ID}
	}
	return out
}

func TestLoadSaveLoadRoundTrip(t *testing.T) {
	type archiver func(testing.TB, ...*testImage) []byte
	kinds := map[string]archiver{"docker-classic": classicDockerArchive, "oci": ociArchive}
	for kind, mk := range kinds {
		for _, c := range []Compression{None, Gzip, Zstd} {
			for _, whole := range []Compression{None, Gzip, Zstd} {
				name := kind + "/layers-" + string(c) + "/archive-" + string(whole)
				t.Run(name, func(t *testing.T) {
					a := newTestImage(t, "alpha", 2, c, "docker.io/library/alpha:1", "localhost:5000/team/alpha:latest")
					b := newTestImage(t, "beta", 1, c, "docker.io/library/beta:latest")
					archive := mk(t, a, b)
					if whole != None {
						archive = compressBytes(t, archive, whole)
					}
					s1 := newStore(t)
					loaded := load(t, s1, archive)
					if len(loaded) != 2 {
						t.Fatalf("Load = %d images, want 2", len(loaded))
					}
					want := imageDigests(t, s1)
					// layers are kept as they came
					img, err := s1.Resolve("alpha:1")
					if err != nil {
						t.Fatal(err)
					}
					for i, l := range img.Manifest.Layers {
						if l.Digest != sha(a.layers[i]) {
							t.Errorf("layer %d digest = %s, want the archive's %s", i, l.Digest, sha(a.layers[i]))
						}
					}
					if img.ID != sha(a.config) {
						t.Errorf("ID = %s, want config digest %s", img.ID, sha(a.config))
					}
					for _, format := range []string{FormatDocker, FormatOCI} {
						out := save(t, s1, format, "alpha:1", "localhost:5000/team/alpha", "beta")
						if again := save(t, s1, format, "alpha:1", "localhost:5000/team/alpha", "beta"); !bytes.Equal(out, again) {
							t.Errorf("Save %s twice gave different bytes", format)
						}
						s2 := newStore(t)
						load(t, s2, out)
						got := imageDigests(t, s2)
						if len(got) != len(want) {
							t.Fatalf("after %s save/load: %v, want %v", format, got, want)
						}
						for k, w := range want {
							if got[k] != w {
								t.Errorf("after %s save/load %s = %+v, want %+v", format, k, got[k], w)
							}
						}
					}
				})
			}
		}
	}
}

func TestLoadDockerClassicLinksAndMoves(t *testing.T) {
	s := newStore(t)
	a := newTestImage(t, "one", 1, None, "app:v1")
	load(t, s, classicDockerArchive(t, a))
	// a second image takes the tag: Moved names the first image's ID
	b := newTestImage(t, "two", 1, None, "app:v1")
	l := load(t, s, classicDockerArchive(t, b))
	if got := l[0].Moved["docker.io/library/app:v1"]; got != sha(a.config) {
		t.Fatalf("Moved = %v, want app:v1 from %s", l[0].Moved, sha(a.config))
	}
	imgs, _ := s.Images()
	if len(imgs) != 2 {
		t.Fatalf("Images = %d, want 2 (old one dangling)", len(imgs))
	}
	// docker's duplicate layers are symlinks to another layer.tar
	c := newTestImage(t, "three", 1, None, "three:latest")
	layer := string(c.layers[0])
	entries := []tarEntry{
		{Name: "aaa/layer.tar", Body: layer},
		{Name: "bbb/layer.tar", Link: "../aaa/layer.tar"},
		{Name: hexOf(c.config) + ".json", Body: string(c.config)},
		{Name: "manifest.json", Body: `[{"Config":"` + hexOf(c.config) + `.json","RepoTags":["three:latest"],"Layers":["bbb/layer.tar"]}]`},
	}
	load(t, s, makeTar(t, entries...))
	if _, err := s.Resolve("three"); err != nil {
		t.Fatalf("Resolve(three) after a symlinked layer = %v", err)
	}
	// --tag names an untagged image
	d := newTestImage(t, "four", 1, Gzip)
	if _, err := s.Load(context.Background(), bytes.NewReader(ociArchive(t, d)), LoadOptions{Tag: "four:x"}); err != nil {
		t.Fatal(err)
	}
	if img, err := s.Resolve("four:x"); err != nil || img.ID != sha(d.config) {
		t.Fatalf("Resolve(four:x) = %v, %v", img, err)
	}
}

func TestLoadBadInput(t *testing.T) {
	good := newTestImage(t, "good", 2, Gzip, "good:latest")
	ociGood := ociEntries(good)
	spoil := func(f func([]tarEntry) []tarEntry) []byte {
		e := append([]tarEntry(nil), ociGood...)
		return makeTar(t, f(e)...)
	}
	layerName := "blobs/sha256/" + hexOf(good.layers[0])
	notJSON := newTestImage(t, "nj", 1, None, "nj:latest")
	notJSON.config = []byte("{not json")
	badMT := newTestImage(t, "mt", 1, Gzip, "mt:latest")
	badMT.mt = []string{"application/vnd.example.bogus"}
	badDiff := newTestImage(t, "bd", 1, None, "bd:latest")
	badDiff.layers[0] = makeTar(t, tarEntry{Name: "other", Body: "x"})
	full := ociArchive(t, good)
	for _, tc := range []struct {
		name    string
		archive []byte
		opts    LoadOptions
		want    error
	}{
		{"truncated", full[:len(full)/2+100], LoadOptions{}, ErrTruncated},
		{"truncated-gzip", compressBytes(t, full, Gzip)[:200], LoadOptions{}, ErrTruncated},
		{"empty", nil, LoadOptions{}, ErrInvalidArchive},
		{"not-a-tar", bytes.Repeat([]byte("garbage!"), 200), LoadOptions{}, ErrInvalidArchive},
		{"blob-digest-mismatch", spoil(func(e []tarEntry) []tarEntry {
			for i := range e {
				if e[i].Name == layerName {
					b := []byte(e[i].Body)
					b[len(b)-5] ^= 0xff
					e[i].Body = string(b)
				}
			}
			return e
		}), LoadOptions{}, ErrDigestMismatch},
		{"missing-blob", spoil(func(e []tarEntry) []tarEntry {
			var out []tarEntry
			for _, x := range e {
				if x.Name != layerName {
					out = append(out, x)
				}
			}
			return out
		}), LoadOptions{}, ErrMissingBlob},
		{"absolute-path", spoil(func(e []tarEntry) []tarEntry { return append(e, tarEntry{Name: "/etc/evil", Body: "x"}) }), LoadOptions{}, ErrUnsafeEntry},
		{"dotdot-path", spoil(func(e []tarEntry) []tarEntry { return append(e, tarEntry{Name: "blobs/../../evil", Body: "x"}) }), LoadOptions{}, ErrUnsafeEntry},
		{"dotdot-symlink", spoil(func(e []tarEntry) []tarEntry { return append(e, tarEntry{Name: "x/link", Link: "../../etc/passwd"}) }), LoadOptions{}, ErrUnsafeEntry},
		{"config-not-json-oci", ociArchive(t, notJSON), LoadOptions{}, ErrInvalidConfig},
		{"config-not-json-docker", classicDockerArchive(t, notJSON), LoadOptions{}, ErrInvalidConfig},
		{"unknown-media-type", ociArchive(t, badMT), LoadOptions{}, ErrUnknownMediaType},
		{"diffid-mismatch", classicDockerArchive(t, badDiff), LoadOptions{}, ErrDigestMismatch},
		{"invalid-reference-repotag", classicDockerArchive(t, newTestImage(t, "up", 1, None, "BusyBox:latest")), LoadOptions{}, ErrInvalidReference},
		{"repotag-without-tag", classicDockerArchive(t, newTestImage(t, "nt", 1, None, "busybox")), LoadOptions{}, ErrInvalidReference},
		{"invalid-reference-64hex", classicDockerArchive(t, newTestImage(t, "hx", 1, None, strings.Repeat("ab", 32))), LoadOptions{}, ErrInvalidReference},
		{"invalid-reference-tag-flag", ociArchive(t, newTestImage(t, "tf", 1, None)), LoadOptions{Tag: "Upper:case"}, ErrInvalidReference},
		{"no-manifest", makeTar(t, tarEntry{Name: "hello", Body: "x"}), LoadOptions{}, ErrInvalidArchive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			load(t, s, classicDockerArchive(t, newTestImage(t, "base", 1, None, "base:latest")))
			before := snapshot(t, s.Dir())
			_, err := s.Load(context.Background(), bytes.NewReader(tc.archive), tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Load = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
			if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
				t.Fatalf("store changed by a failed load:\n%s", d)
			}
		})
	}
}

// Loaded blobs get the mode Put gives blobs (0644), whatever the spool's temp
// files had, in both archive formats.
func TestLoadBlobMode(t *testing.T) {
	for name, mk := range map[string]func(testing.TB, ...*testImage) []byte{"oci": ociArchive, "docker-classic": classicDockerArchive} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			load(t, s, mk(t, newTestImage(t, "mode", 2, Gzip, "mode:1")))
			img, err := s.Resolve("mode:1")
			if err != nil {
				t.Fatal(err)
			}
			blobs := []digest.Digest{img.ManifestDigest, img.ID}
			for _, l := range img.Manifest.Layers {
				blobs = append(blobs, l.Digest)
			}
			for _, d := range blobs {
				fi, err := os.Stat(s.BlobPath(d))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("blob %s mode = %v, want 0644", d, fi.Mode().Perm())
				}
			}
		})
	}
}

// TestLoadLegacyCompressedLayers: a docker-archive's layer tars may be bzip2 or
// xz (docker load decompresses each with DecompressStream); they are stored
// plain. Before, their compressed bytes were taken for the content and the load
// failed on a diff_id "mismatch". A gzip layer that does not decompress says so.
func TestLoadLegacyCompressedLayers(t *testing.T) {
	for _, tool := range []string{"bzip2", "xz"} {
		t.Run(tool, func(t *testing.T) {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("no %s", tool)
			}
			s := newStore(t)
			ti := newTestImage(t, tool, 2, None, tool+":1")
			plain := append([][]byte(nil), ti.layers...)
			for i, l := range ti.layers {
				c := exec.Command(tool, "-c")
				c.Stdin = bytes.NewReader(l)
				out, err := c.Output()
				if err != nil {
					t.Fatal(err)
				}
				ti.layers[i] = out
			}
			load(t, s, classicDockerArchive(t, ti))
			img, err := s.Resolve(tool + ":1")
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range img.Manifest.Layers {
				if l.Digest != sha(plain[i]) || l.MediaType != ocispec.MediaTypeImageLayer {
					t.Errorf("layer %d = %s %s, want the plain tar %s", i, l.MediaType, l.Digest, sha(plain[i]))
				}
				if !s.Has(l.Digest) {
					t.Errorf("layer %d's blob is not stored", i)
				}
			}
		})
	}
	t.Run("gzip-trailing-garbage", func(t *testing.T) {
		s := newStore(t)
		ti := newTestImage(t, "gt", 1, Gzip, "gt:1")
		ti.layers[0] = append(ti.layers[0][:len(ti.layers[0])-4], "GARBAGE"...)
		_, err := s.Load(context.Background(), bytes.NewReader(classicDockerArchive(t, ti)), LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), "gzip stream does not decompress") {
			t.Errorf("Load of a broken gzip layer = %v", err)
		}
	})
}

// recordProgress keeps the names Load tracks.
type recordProgress struct {
	mu    sync.Mutex
	names []string
}

func (p *recordProgress) Track(name string, _ int64) ProgressTracker {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names = append(p.names, name)
	return nopTracker{}
}

// Load's progress shows the layers, as docker's "Loading layer" lines, not the
// archive's metadata files: it showed "Loading index.json", "Loading
// oci-layout" and a config's json as if they were layers (found by a review).
func TestLoadProgressShowsLayers(t *testing.T) {
	a := newTestImage(t, "alpha", 2, Gzip, "docker.io/library/alpha:1")
	// An OCI archive (and layerfs's own docker-archive) keeps the manifest and
	// config under blobs/sha256/ too, with no .json to tell them.
	for kind, archive := range map[string][]byte{"docker": classicDockerArchive(t, a), "oci": ociArchive(t, a)} {
		p := &recordProgress{}
		if _, err := newStore(t).Load(context.Background(), bytes.NewReader(archive), LoadOptions{Progress: p}); err != nil {
			t.Fatal(err)
		}
		if len(p.names) != 2 {
			t.Errorf("%s: Load tracked %q, want the 2 layers alone", kind, p.names)
		}
		for _, n := range p.names {
			if archiveMetadata(n) {
				t.Errorf("%s: Load tracked metadata file %s", kind, n)
			}
		}
	}
}
