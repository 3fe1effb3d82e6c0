package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func lines(ls []RemoveLine) string {
	var out []string
	for _, l := range ls {
		out = append(out, l.String())
	}
	return strings.Join(out, "\n")
}

// childOf writes an image on top of parent's layers plus one more, with parent set.
func childOf(t *testing.T, s *Store, parent *Image, name string, tags ...string) *Image {
	t.Helper()
	ctx := context.Background()
	ti := newTestImage(t, name, 1, Gzip)
	d, n, err := s.Put(ctx, strings.NewReader(string(ti.layers[0])), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := parent.Config
	cfg.RootFS.DiffIDs = append(append([]digest.Digest(nil), cfg.RootFS.DiffIDs...), sha(makeTar(t, tarEntry{Name: name + "/file0", Body: strings.Repeat(name, 100)})))
	layers := append(append([]ocispec.Descriptor(nil), parent.Manifest.Layers...), ocispec.Descriptor{MediaType: LayerMediaType(Gzip), Digest: d, Size: n})
	img, err := s.WriteImage(ctx, cfg, layers, WithParent(parent))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		if err := s.Tag(ctx, img, tag); err != nil {
			t.Fatal(err)
		}
	}
	img, _ = s.reload(img.ManifestDigest)
	return img
}

func TestRemoveRules(t *testing.T) {
	ctx := context.Background()
	t.Run("untag-one-of-two", func(t *testing.T) {
		s := newStore(t)
		img := writeTestImage(t, s, newTestImage(t, "a", 1, Gzip, "chenwenj/httpd:v2", "chenwenj/httpd:latest"))
		got, err := s.Remove(ctx, "chenwenj/httpd:latest", RemoveOptions{})
		if err != nil || lines(got) != "Untagged: chenwenj/httpd:latest" {
			t.Fatalf("Remove = %q, %v", lines(got), err)
		}
		if again, _ := s.Resolve(img.ID.String()); again == nil || len(again.Tags) != 1 {
			t.Fatalf("image after untag = %v, want it kept with one tag", again)
		}
	})
	t.Run("id-with-two-tags-needs-force", func(t *testing.T) {
		s := newStore(t)
		img := writeTestImage(t, s, newTestImage(t, "a", 1, Gzip, "nginx:V1", "nginx:entrypoint"))
		_, err := s.Remove(ctx, ShortID(img.ID), RemoveOptions{})
		var c *ConflictError
		if !errors.As(err, &c) || c.Msg != "conflict: unable to delete "+ShortID(img.ID)+" (must be forced) - image is referenced in multiple repositories" {
			t.Fatalf("Remove(id) = %v, want docker's multiple-repositories conflict", err)
		}
		got, err := s.Remove(ctx, ShortID(img.ID), RemoveOptions{Force: true})
		want := "Untagged: nginx:V1\nUntagged: nginx:entrypoint\nDeleted: " + img.ID.String()
		if err != nil || lines(got) != want {
			t.Fatalf("Remove(id, -f) = %q, %v; want %q", lines(got), err, want)
		}
		if imgs, _ := s.Images(); len(imgs) != 0 {
			t.Fatalf("images left: %d", len(imgs))
		}
	})
	t.Run("last-tag-deletes", func(t *testing.T) {
		s := newStore(t)
		img := writeTestImage(t, s, newTestImage(t, "a", 1, Gzip, "busybox"))
		got, err := s.Remove(ctx, "busybox", RemoveOptions{})
		want := "Untagged: busybox:latest\nDeleted: " + img.ID.String()
		if err != nil || lines(got) != want {
			t.Fatalf("Remove = %q, %v; want %q", lines(got), err, want)
		}
	})
	t.Run("child-is-hard-conflict", func(t *testing.T) {
		s := newStore(t)
		parent := writeTestImage(t, s, newTestImage(t, "p", 1, Gzip))
		child := childOf(t, s, parent, "c", "child:latest")
		for _, force := range []bool{false, true} {
			_, err := s.Remove(ctx, parent.ID.Encoded(), RemoveOptions{Force: force})
			var c *ConflictError
			if !errors.As(err, &c) || !c.Hard || !strings.Contains(c.Msg, "(cannot be forced) - image has dependent child images") {
				t.Fatalf("Remove(parent, force=%v) = %v, want a hard child conflict", force, err)
			}
		}
		// removing the child prunes the untagged parent too
		got, err := s.Remove(ctx, "child", RemoveOptions{})
		want := "Untagged: child:latest\nDeleted: " + child.ID.String() + "\nDeleted: " + parent.ID.String()
		if err != nil || lines(got) != want {
			t.Fatalf("Remove(child) = %q, %v; want %q", lines(got), err, want)
		}
	})
	t.Run("no-prune-keeps-parent", func(t *testing.T) {
		s := newStore(t)
		parent := writeTestImage(t, s, newTestImage(t, "p", 1, Gzip))
		childOf(t, s, parent, "c", "child:latest")
		if _, err := s.Remove(ctx, "child", RemoveOptions{NoPrune: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Resolve(parent.ID.String()); err != nil {
			t.Fatalf("parent gone with --no-prune: %v", err)
		}
	})
	t.Run("in-use", func(t *testing.T) {
		s := newStore(t)
		img := writeTestImage(t, s, newTestImage(t, "a", 1, Gzip, "busybox"))
		inUse := func(*Image) ([]string, error) { return []string{"busy1"}, nil }
		_, err := s.Remove(ctx, "busybox", RemoveOptions{InUse: inUse})
		want := `conflict: unable to remove repository reference "busybox" (must force) - container busy1 is using its referenced image ` + ShortID(img.ID)
		if err == nil || err.Error() != want {
			t.Fatalf("Remove(in use) = %v, want %q", err, want)
		}
		_, err = s.Remove(ctx, img.ID.String(), RemoveOptions{InUse: inUse})
		if err == nil || !strings.Contains(err.Error(), "(must be forced) - image is being used by stopped container busy1") {
			t.Fatalf("Remove(in use, by id) = %v", err)
		}
		if _, err := s.Remove(ctx, "busybox", RemoveOptions{InUse: inUse, Force: true}); err != nil {
			t.Fatalf("Remove(in use, -f) = %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Remove(ctx, "nosuch", RemoveOptions{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Remove(missing) = %v, want ErrNotFound", err)
		}
	})
}

func blobSet(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Dir(), "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, "sha256:"+e.Name())
	}
	sort.Strings(out)
	return out
}

func reachableSet(t *testing.T, s *Store, roots []digest.Digest) []string {
	t.Helper()
	keep, err := s.Reachable(roots)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for d := range keep {
		if s.Has(d) {
			out = append(out, d.String())
		}
	}
	sort.Strings(out)
	return out
}

func TestGCLeavesExactlyReachable(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := writeTestImage(t, s, newTestImage(t, "a", 2, Gzip, "a:latest"))
	b := writeTestImage(t, s, newTestImage(t, "b", 2, Zstd, "b:latest"))
	c := writeTestImage(t, s, newTestImage(t, "c", 1, None, "c:latest"))
	// junk: an orphan blob and a killed writer's temp file
	if _, _, err := s.Put(ctx, strings.NewReader("orphan"), ""); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.tmpDir(), "blob-killed"), []byte("partial"), 0o600)
	os.MkdirAll(filepath.Join(s.tmpDir(), "load-killed"), 0o700)
	os.WriteFile(filepath.Join(s.tmpDir(), "load-killed", "part-1"), []byte("partial"), 0o600)

	if _, err := s.Remove(ctx, "a", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, "c", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	before := blobSet(t, s)
	dry, err := s.GC(ctx, true, []digest.Digest{c.ManifestDigest})
	if err != nil {
		t.Fatal(err)
	}
	if got := blobSet(t, s); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("dry run removed blobs")
	}
	res, err := s.GC(ctx, false, []digest.Digest{c.ManifestDigest}) // c is used by a working container
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != len(dry.Removed) || res.Freed != dry.Freed {
		t.Errorf("GC = %+v, dry run said %+v", res, dry)
	}
	if res.TempFiles != 2 {
		t.Errorf("TempFiles = %d, want 2", res.TempFiles)
	}
	got, want := blobSet(t, s), reachableSet(t, s, []digest.Digest{c.ManifestDigest})
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("blobs after GC = %v, want exactly the reachable %v", got, want)
	}
	if s.Has(a.ManifestDigest) || !s.Has(c.ManifestDigest) || !s.Has(b.Manifest.Layers[1].Digest) {
		t.Fatalf("GC kept/removed the wrong images")
	}
	if len(got) != 3+2+2 { // b: manifest, config, 2 layers; c: manifest, config, 1 layer
		t.Fatalf("blobs after GC = %d, want 7", len(got))
	}
	if ents, _ := os.ReadDir(s.tmpDir()); len(ents) != 0 {
		t.Fatalf("temp files after GC: %v", ents)
	}
	ids, err := s.DiffIDs(nil)
	if err != nil || len(ids) != 2 {
		t.Fatalf("DiffIDs = %v, %v; want b's 2", ids, err)
	}
}

// TestGCWaitsForLoad: a GC that starts while a load streams waits for it, so the
// load's blobs (not yet named by index.json) survive.
func TestGCWaitsForLoad(t *testing.T) {
	s := newStore(t)
	archive := ociArchive(t, newTestImage(t, "slow", 2, Gzip, "slow:latest"))
	pr, pw := io.Pipe()
	loadDone := make(chan error, 1)
	go func() {
		_, err := s.Load(context.Background(), pr, LoadOptions{})
		loadDone <- err
	}()
	pw.Write(archive[:len(archive)/2])
	gcDone := make(chan error, 1)
	go func() {
		_, err := s.GC(context.Background(), false, nil)
		gcDone <- err
	}()
	select {
	case err := <-gcDone:
		t.Fatalf("GC returned (%v) while a load was in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	pw.Write(archive[len(archive)/2:])
	pw.Close()
	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	img, err := s.Resolve("slow")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range img.Manifest.Layers {
		rc, err := s.OpenLayer(l)
		if err != nil {
			t.Fatalf("layer %s gone after GC: %v", l.Digest, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Two entries of one tag in two spellings: skopeo copied "foo:1" into a store
// where layerfs had written "docker.io/library/foo:1" (review rev23-oci). The
// later entry has the tag, as docker load moves a tag to the image it loads;
// rmi of the tag deletes that image and leaves the other untagged. Before,
// both listed as foo:1, run took the older, and rmi dropped both entries,
// printing a line for one.
func TestTagWrittenTwiceByTwoTools(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	old := writeTestImage(t, s, newTestImage(t, "old", 1, Gzip, "foo:1"))
	nw := writeTestImage(t, s, newTestImage(t, "new", 1, Gzip))
	idx, err := s.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range idx.Manifests {
		if e.Digest == nw.ManifestDigest {
			idx.Manifests[i].Annotations = map[string]string{ocispec.AnnotationRefName: "foo:1"}
			idx.Manifests = append(append(idx.Manifests[:i:i], idx.Manifests[i+1:]...), idx.Manifests[i]) // last
			break
		}
	}
	if err := s.writeIndex(idx); err != nil {
		t.Fatal(err)
	}
	got, err := s.Resolve("foo:1")
	if err != nil || got.ID != nw.ID {
		t.Fatalf("Resolve(foo:1) = %v, %v; want the later entry's image %s", got, err, nw.ID)
	}
	for _, img := range mustImages(t, s) {
		if img.ID == old.ID && len(img.Tags) > 0 {
			t.Errorf("the earlier entry's image still lists %v", img.Tags)
		}
	}
	rm, err := s.Remove(ctx, "foo:1", RemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "Untagged: foo:1\nDeleted: " + nw.ID.String(); lines(rm) != want {
		t.Errorf("rmi foo:1:\n%s\nwant\n%s", lines(rm), want)
	}
	imgs := mustImages(t, s)
	if len(imgs) != 1 || imgs[0].ID != old.ID || len(imgs[0].Tags) != 0 {
		t.Errorf("after rmi foo:1: %d images (%v), want the earlier one, untagged", len(imgs), imgs)
	}
	// And by ID, the earlier image goes without taking the tag's later owner.
	s2 := newStore(t)
	old2 := writeTestImage(t, s2, newTestImage(t, "old", 1, Gzip, "foo:1"))
	nw2 := writeTestImage(t, s2, newTestImage(t, "new", 1, Gzip))
	idx, _ = s2.readIndex()
	idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: nw2.Descriptor.MediaType, Digest: nw2.ManifestDigest, Size: nw2.Descriptor.Size,
		Annotations: map[string]string{ocispec.AnnotationRefName: "foo:1"}})
	if err := s2.writeIndex(idx); err != nil {
		t.Fatal(err)
	}
	rm, err = s2.Remove(ctx, old2.ID.String(), RemoveOptions{})
	if err != nil {
		t.Fatalf("rmi of the earlier image by ID: %v", err)
	}
	if want := "Deleted: " + old2.ID.String(); lines(rm) != want {
		t.Errorf("rmi <earlier ID>:\n%s\nwant\n%s", lines(rm), want)
	}
	if got, err := s2.Resolve("foo:1"); err != nil || got.ID != nw2.ID {
		t.Errorf("foo:1 after rmi of the earlier image = %v, %v", got, err)
	}
}

// TestReadIndexWhileRewrittenInPlace: skopeo rewrites index.json in place
// (truncate, then write); a command that read it in between failed with
// "read index.json: unexpected end of JSON input" (review rev23-oci). It reads
// again before it calls the file damaged; one that stays damaged still fails.
func TestReadIndexWhileRewrittenInPlace(t *testing.T) {
	s := newStore(t)
	writeTestImage(t, s, newTestImage(t, "a", 1, Gzip, "a:1"))
	p := filepath.Join(s.Dir(), "index.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		time.Sleep(2 * indexReadWait)
		done <- os.WriteFile(p, b, 0o644)
	}()
	img, err := s.Resolve("a:1")
	if werr := <-done; werr != nil {
		t.Fatal(werr)
	}
	if err != nil || img == nil {
		t.Errorf("Resolve(a:1) while index.json was being rewritten: %v", err)
	}
	if err := os.WriteFile(p, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Images(); err == nil || !strings.Contains(err.Error(), "index.json") {
		t.Errorf("Images() of a damaged index.json = %v, want an error naming index.json", err)
	}
}

// TestResolveArtifact: an index.json entry another tool wrote that is no
// container image (a helm chart) is not listed, and resolving its tag says what
// it is; before, run took it for a missing image and went to a registry for it
// (review rev23-oci).
func TestResolveArtifact(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	writeTestImage(t, s, newTestImage(t, "a", 1, Gzip, "a:1"))
	cfg, cn, err := s.Put(ctx, strings.NewReader(`{"name":"chart"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":%q,"size":%d},"layers":[]}`, cfg, cn)
	md, mn, err := s.Put(ctx, strings.NewReader(m), "")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := s.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: mn,
		Annotations: map[string]string{ocispec.AnnotationRefName: "chart:1"}})
	if err := s.writeIndex(idx); err != nil {
		t.Fatal(err)
	}
	_, err = s.Resolve("chart:1")
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not a container image") || !strings.Contains(err.Error(), "helm") {
		t.Errorf("Resolve(chart:1) = %v, want it named no container image, with its config's media type", err)
	}
	if imgs := mustImages(t, s); len(imgs) != 1 {
		t.Errorf("Images() = %d images, want a:1 alone", len(imgs))
	}
	if _, err := s.Remove(ctx, "chart:1", RemoveOptions{}); err != nil {
		t.Errorf("rmi chart:1: %v", err)
	}
	if _, err := s.Resolve("chart:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(chart:1) after its rmi = %v, want not found", err)
	}
}

// TestRefNameDockerSaveForm: an entry in docker save's form, ref.name the tag
// alone and the containerd name the whole reference, is that reference; it
// listed as 1:latest (review rev23-oci). rmi of the reference removes it.
func TestRefNameDockerSaveForm(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := writeTestImage(t, s, newTestImage(t, "a", 1, Gzip))
	annotateEntries(t, s, img.ManifestDigest, map[string]string{ocispec.AnnotationRefName: "1", annotationContainerdName: "docker.io/library/ctrd:1"})
	imgs := mustImages(t, s)
	if len(imgs) != 1 || len(imgs[0].Tags) != 1 || imgs[0].Tags[0] != "docker.io/library/ctrd:1" {
		t.Fatalf("images: %v, want one tagged docker.io/library/ctrd:1", imgs[0].Tags)
	}
	if rm, err := s.Remove(ctx, "ctrd:1", RemoveOptions{}); err != nil || !strings.Contains(lines(rm), "Untagged: ctrd:1") {
		t.Errorf("rmi ctrd:1 = %q, %v", lines(rm), err)
	}
	// A ref.name that is a whole reference of its own stays what it says.
	if got := refName(ocispec.Descriptor{Annotations: map[string]string{ocispec.AnnotationRefName: "foo:2", annotationContainerdName: "docker.io/library/ctrd:1"}}); got != "docker.io/library/foo:2" {
		t.Errorf("refName of ref.name foo:2 = %q", got)
	}
}

// TestOpenMissingForeignLayer: a foreign layer whose blob the store lacks (save
// and registries leave them out) says so, with where to get it; the error only
// named the missing blob (review rev23-oci).
func TestOpenMissingForeignLayer(t *testing.T) {
	s := newStore(t)
	d := digest.FromString("not stored")
	_, err := s.OpenLayer(ocispec.Descriptor{MediaType: MediaTypeDockerForeignGzip, Digest: d, Size: 10, URLs: []string{"https://example.com/layer"}})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "foreign, non-distributable layer") || !strings.Contains(err.Error(), "https://example.com/layer") {
		t.Errorf("OpenLayer of a missing foreign layer = %v", err)
	}
	_, err = s.OpenLayer(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: 10})
	if !errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "foreign") {
		t.Errorf("OpenLayer of a missing layer = %v", err)
	}
}

// annotateEntries gives every index.json entry of manifest d the annotations
// ann, as another tool writes them, and nothing else.
func annotateEntries(t *testing.T, s *Store, d digest.Digest, ann map[string]string) {
	t.Helper()
	idx, err := s.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range idx.Manifests {
		if e.Digest == d {
			idx.Manifests[i].Annotations = ann
		}
	}
	if err := s.writeIndex(idx); err != nil {
		t.Fatal(err)
	}
}
