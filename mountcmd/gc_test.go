package mountcmd

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// tryLease is a mount's Lease taken without waiting: ok=false while a gc holds the
// store's GC lock (a real mount would wait there until the gc is done).
func tryLease(t *testing.T, s *blobstore.Store) (release func(), ok bool) {
	t.Helper()
	f, err := os.Open(filepath.Join(s.Dir(), ".layerfs", "gc.lock"))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false
		}
		t.Fatal(err)
	}
	return func() { f.Close() }, true
}

// imageOfFile stores a one-layer image whose layer holds the file f with data.
func imageOfFile(t *testing.T, s *blobstore.Store, data string) *blobstore.Image {
	t.Helper()
	ctx := context.Background()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	d, n, err := s.Put(ctx, bytes.NewReader(layer.Bytes()), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{d}}}
	img, err := s.WriteImage(ctx, cfg, []ocispec.Descriptor{{MediaType: blobstore.LayerMediaType(blobstore.None), Digest: d, Size: n}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// claimFor writes a working container's state for img, as a mount does under its
// Lease once it resolved the image.
func claimFor(t testing.TB, g *globalOptions, name string, img *blobstore.Image, lowers []string) {
	t.Helper()
	w, err := newWorkContainer(g.root, name)
	if err != nil {
		t.Fatal(err)
	}
	st := &workState{ImageID: img.ID, ManifestDigest: img.ManifestDigest, Lowers: lowers}
	if err := w.create(st); err != nil {
		t.Fatal(err)
	}
}

func runReclaim(t *testing.T, g *globalOptions, s *blobstore.Store) {
	t.Helper()
	cmd := &cobra.Command{}
	cmd.SetContext(context.Background())
	if _, err := reclaim(cmd, g, s, false); err != nil {
		t.Fatalf("reclaim() = %v", err)
	}
}

// checkContainersWhole fails t if a working container names an image whose blobs
// are gone or a lower dir that is gone: it could not be mounted again.
func checkContainersWhole(t *testing.T, g *globalOptions, s *blobstore.Store) {
	t.Helper()
	ws, err := listContainers(g.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		st, err := w.load()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []digest.Digest{st.ManifestDigest, st.ImageID} {
			if !s.Has(d) {
				t.Errorf("container %s: blob %s of its image was collected", w.name, d)
			}
		}
		for _, l := range st.Lowers {
			if _, err := os.Stat(l); err != nil {
				t.Errorf("container %s: lower dir was pruned: %v", w.name, err)
			}
		}
	}
}

// A gc (or rmi's reclaim) reads the working containers' roots once every Lease is
// gone: a mount that resolved an image before an rmi dropped it, and wrote its
// state.json after the gc looked, kept the image's blobs. Before, the roots were
// read before the GC lock was taken, and such a container lost its image.
func TestReclaimRootsReadUnderGCLock(t *testing.T) {
	g, s, img := storeWithImage(t)
	ctx := context.Background()
	if _, err := s.Remove(ctx, "a:1", blobstore.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	orig := workingContainerRoots
	t.Cleanup(func() { workingContainerRoots = orig })
	workingContainerRoots = func(g *globalOptions) ([]digest.Digest, error) {
		roots, err := orig(g)
		// The racing mount holds its Lease (it resolved a:1 before the rmi) and
		// claims its container now, just after the gc read the roots.
		if release, ok := tryLease(t, s); ok {
			claimFor(t, g, "c1", img, nil)
			release()
		}
		return roots, err
	}
	runReclaim(t, g, s)
	checkContainersWhole(t, g, s)
}

// Unpacked layers are pruned under the GC lock as well: a mount (which holds a
// Lease while it unpacks) of an image stored after the gc computed what to keep
// lost its fresh layer dir to the prune before.
func TestReclaimPrunesLayersUnderGCLock(t *testing.T) {
	g, s, _ := storeWithImage(t)
	orig := pruneLayerDirs
	t.Cleanup(func() { pruneLayerDirs = orig })
	pruneLayerDirs = func(g *globalOptions, keep map[digest.Digest]bool, dryRun bool) (int64, error) {
		if release, ok := tryLease(t, s); ok {
			// load + mount of a new image, between the gc's keep set and its prune.
			img := imageOfFile(t, s, "new")
			if err := s.Tag(context.Background(), img, "b:1"); err != nil {
				t.Fatal(err)
			}
			cache := &cow.LayerCache{Dir: filepath.Join(g.root, "layers")}
			l := img.Manifest.Layers[0]
			dir, err := cache.Ensure(context.Background(), img.Config.RootFS.DiffIDs[0], func() (io.ReadCloser, error) { return s.OpenLayer(l) })
			if err != nil {
				t.Fatal(err)
			}
			claimFor(t, g, "c2", img, []string{dir})
			release()
		}
		return orig(g, keep, dryRun)
	}
	runReclaim(t, g, s)
	checkContainersWhole(t, g, s)
}

// A container whose image another tool took from the store (umoci rm and gc, a
// skopeo copy over its tag) keeps its unpacked layers: gc reached them only
// through the image's manifest, and removed them from under a live mount, which
// then showed the older layers' files without a word (review rev23-oci).
func TestReclaimKeepsLayersOfContainerWithoutImage(t *testing.T) {
	g, s, dir := containerWithoutImage(t, nil)
	runReclaim(t, g, s)
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the layer dir container c1 stacks was pruned: %v", err)
	}
	// Once the container is gone, the layer goes too.
	w, err := newWorkContainer(g.root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(w.Dir()); err != nil {
		t.Fatal(err)
	}
	runReclaim(t, g, s)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("layer dir of no image and no container kept: %v", err)
	}
}

// TestReadContainerWithoutImage: a container whose image another tool took
// from the store (umoci rm and gc) still diffs and exports from the layers it
// was last mounted with; before, both refused ("image of container c1: read
// manifest ...: not found"), and its work had to be dug out of its upper dir by
// hand (review rev23-oci).
func TestReadContainerWithoutImage(t *testing.T) {
	g, _, _ := containerWithoutImage(t, func(upper string) {
		if err := os.WriteFile(filepath.Join(upper, "new"), []byte("work\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if out, _, err := runOut(t, newDiffCommand(g), "c1"); err != nil || out != "A /new\n" {
		t.Errorf("diff c1 = %q, %v; want A /new", out, err)
	}
	tarPath := filepath.Join(t.TempDir(), "c1.tar")
	if _, _, err := runOut(t, newExportCommand(g), "-o", tarPath, "c1"); err != nil {
		t.Fatalf("export c1: %v", err)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[strings.TrimPrefix(h.Name, "./")] = true
	}
	if !names["f"] || !names["new"] {
		t.Errorf("export c1 holds %v, want the image's f and the container's new", names)
	}
}

// containerWithoutImage makes container c1 of an image, its layer unpacked at
// dir, lets edit change its upper dir (nil: none), and then takes the image
// from the store as umoci rm and umoci gc do: no index entry, no manifest.
func containerWithoutImage(t *testing.T, edit func(upper string)) (*globalOptions, *blobstore.Store, string) {
	t.Helper()
	g, s, img := storeWithImage(t)
	ctx := context.Background()
	cache := &cow.LayerCache{Dir: filepath.Join(g.root, "layers")}
	l := img.Manifest.Layers[0]
	dir, err := cache.Ensure(ctx, img.Config.RootFS.DiffIDs[0], func() (io.ReadCloser, error) { return s.OpenLayer(l) })
	if err != nil {
		t.Fatal(err)
	}
	claimFor(t, g, "c1", img, []string{dir})
	if edit != nil {
		w, err := newWorkContainer(g.root, "c1")
		if err != nil {
			t.Fatal(err)
		}
		st, err := w.load()
		if err != nil {
			t.Fatal(err)
		}
		edit(w.upperPath(st))
	}
	if _, err := s.Remove(ctx, "a:1", blobstore.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Dir(), "blobs", "sha256", img.ManifestDigest.Encoded())); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return g, s, dir
}
