package mountcmd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// runOut runs one verb's command with args and returns its stdout, stderr and
// error.
func runOut(t *testing.T, cmd *cobra.Command, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceErrors = true
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

// sameIDLayer is a one-file layer tar, and the same gzip-compressed.
func sameIDLayer(t *testing.T) (plain, gz []byte) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tw.WriteHeader(&tar.Header{Name: "etc/hi", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte("hi\n"))
	must(err)
	must(tw.Close())
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, err = zw.Write(b.Bytes())
	must(err)
	must(zw.Close())
	return b.Bytes(), z.Bytes()
}

// writeSameID writes, in store s, the image every call makes (one config), with
// its layer stored as blob under media type c, and returns it.
func writeSameID(t *testing.T, s *blobstore.Store, blob []byte, c blobstore.Compression) *blobstore.Image {
	t.Helper()
	ctx := context.Background()
	plain, _ := sameIDLayer(t)
	d, n, err := s.Put(ctx, bytes.NewReader(blob), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(plain)}}}
	img, err := s.WriteImage(ctx, cfg, []ocispec.Descriptor{{MediaType: blobstore.LayerMediaType(c), Digest: d, Size: n}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// sameIDArchive is docker save of that image, its layer stored as blob (c),
// tagged tag, and the store it was saved from.
func sameIDArchive(t *testing.T, blob []byte, c blobstore.Compression, tag string) (string, *blobstore.Store) {
	t.Helper()
	ctx := context.Background()
	s, err := blobstore.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	img := writeSameID(t, s, blob, c)
	if err := s.Tag(ctx, img, tag); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	items, err := blobstore.SaveItems(imgs, tag)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Save(ctx, f, items, blobstore.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return p, s
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imagesRows is `images -a` without its header, a row per line.
func imagesRows(t *testing.T, g *globalOptions) string {
	t.Helper()
	out, _, err := runOut(t, newImagesCommand(g), "-a", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	if err != nil {
		t.Fatalf("images: %v", err)
	}
	return out
}

// TestLoadSameImageOtherCompression is rev15-archive #1 through the verbs: the
// same image saved with gzip and with plain layers (as skopeo rewrites it) and
// loaded from both is one image, and rmi of its tag deletes it.
func TestLoadSameImageOtherCompression(t *testing.T) {
	plain, gz := sameIDLayer(t)
	a, _ := sameIDArchive(t, gz, blobstore.Gzip, "bb:1")
	b, _ := sameIDArchive(t, plain, blobstore.None, "bb:1")
	g := &globalOptions{root: t.TempDir()}
	var id string
	for i, p := range []string{a, b} {
		out, _, err := runOut(t, newLoadCommand(g), "-q", "-i", p)
		if err != nil || out != "Loaded image: bb:1\n" {
			t.Fatalf("load %s = %q, %v; want %q", p, out, err, "Loaded image: bb:1\n")
		}
		rows := imagesRows(t, g)
		if id == "" {
			id = strings.Fields(rows)[1]
		}
		if want := "bb:1 " + id + "\n"; rows != want {
			t.Errorf("images -a after load %d:\n%s\nwant:\n%s", i+1, rows, want)
		}
	}
	// the image is the one loaded first: it saves as that archive, byte for byte
	saved := filepath.Join(t.TempDir(), "saved.tar")
	if _, _, err := runOut(t, newSaveCommand(g), "-o", saved, "bb:1"); err != nil {
		t.Fatalf("save: %v", err)
	}
	if got, want := readFile(t, saved), readFile(t, a); !bytes.Equal(got, want) {
		t.Errorf("save bb:1 after both loads is not the first archive (%d bytes, want %d): the tag moved to the second manifest", len(got), len(want))
	}
	out, _, err := runOut(t, newRmiCommand(g), "bb:1")
	if err != nil || !strings.HasPrefix(out, "Untagged: bb:1\nDeleted: sha256:"+id) {
		t.Errorf("rmi bb:1 = %q, %v; want Untagged and Deleted", out, err)
	}
	if rows := imagesRows(t, g); rows != "" {
		t.Errorf("images -a after rmi bb:1:\n%s\nwant none", rows)
	}
}

// TestStoreWithSameIDTwice: a store that lists one image under two manifests (as
// one written before load kept an image per ID does, or a pull of an image
// loaded before) shows it once, image prune leaves it, and rmi of its last tag
// removes it whole.
func TestStoreWithSameIDTwice(t *testing.T) {
	g, s, first := sameIDStore(t, "bb:1")
	pulledSameID(t, s) // pull's way in: AddManifest records a manifest as it is
	want := "bb:1 " + blobstore.ShortID(first.ID) + "\n"
	if rows := imagesRows(t, g); rows != want {
		t.Errorf("images -a:\n%s\nwant:\n%s", rows, want)
	}
	if out, _, err := runOut(t, newImagePruneCommand(g), "-f"); err != nil || strings.Contains(out, "deleted") {
		t.Errorf("image prune -f = %q, %v; want nothing deleted", out, err)
	}
	if rows := imagesRows(t, g); rows != want {
		t.Errorf("images -a after image prune:\n%s\nwant:\n%s", rows, want)
	}
	out, _, err := runOut(t, newRmiCommand(g), "bb:1")
	if want := "Untagged: bb:1\nDeleted: " + first.ID.String() + "\n"; err != nil || out != want {
		t.Errorf("rmi bb:1 = %q, %v; want %q", out, err, want)
	}
	if rows := imagesRows(t, g); rows != "" {
		t.Errorf("images -a after rmi bb:1:\n%s\nwant none", rows)
	}
}

// TestInspectSameIDTags: inspect of an image the store lists under two
// manifests, each tagged (a pull of an image loaded before), shows the tags of
// both, as docker shows its one image's tags; it showed the first manifest's.
func TestInspectSameIDTags(t *testing.T) {
	g, s, _ := sameIDStore(t, "bb:1")
	pulledSameID(t, s, "x:2")
	for _, ref := range []string{"bb:1", "x:2"} {
		out, _, err := runOut(t, newInspectCommand(g), "-f", "{{json .RepoTags}}", ref)
		if want := `["bb:1","x:2"]` + "\n"; err != nil || (out != want && out != `["x:2","bb:1"]`+"\n") {
			t.Errorf("inspect %s RepoTags = %q, %v; want bb:1 and x:2", ref, out, err)
		}
	}
	// system df counts it once (it counted an image per tagged manifest).
	out, _, err := runOut(t, newSystemDfCommand(g), "--format", "{{.Type}} {{.TotalCount}}")
	if err != nil || !strings.Contains(out, "Images 1\n") {
		t.Errorf("system df = %q, %v; want Images 1", out, err)
	}
}
