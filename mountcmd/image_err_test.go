package mountcmd

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// storeWithImage makes a store under a new --root with one image of one
// uncompressed layer, tagged a:1.
func storeWithImage(t testing.TB) (*globalOptions, *blobstore.Store, *blobstore.Image) {
	t.Helper()
	ctx := context.Background()
	g := &globalOptions{root: t.TempDir()}
	s, err := openStore(g)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("x")); err != nil {
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
	if err := s.Tag(ctx, img, "a:1"); err != nil {
		t.Fatal(err)
	}
	return g, s, img
}

// runVerb runs one verb's command with args and returns its stderr and error.
func runVerb(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceErrors = true
	err := cmd.Execute()
	return errOut.String(), err
}

// An image index.json lists but that lacks a blob is not "No such image": the
// message names what is missing, on one line. A name index.json does not have
// still gets docker's "No such image".
func TestImageErrSaysWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		missing func(img *blobstore.Image) digest.Digest // blob deleted ("" none)
		verb    func(g *globalOptions) *cobra.Command
		args    []string
		want    string // the stderr line, with %c for the missing blob's digest
	}{
		{"tag-config-missing", configOf, newTagCommand, []string{"a:1", "z:1"},
			"Error response from daemon: image a:1: read config %c: blob %c: not found"},
		{"tag-layer-missing", layerOf, newTagCommand, []string{"a:1", "z:1"},
			"Error response from daemon: image %s: layer blob %c: not found"},
		{"tag-not-listed", nil, newTagCommand, []string{"nosuch:1", "z:1"},
			"Error response from daemon: No such image: nosuch:1"},
		{"tag-not-listed-blob-missing", configOf, newTagCommand, []string{"nosuch:1", "z:1"},
			"Error response from daemon: No such image: nosuch:1"},
		{"image-inspect-config-missing", configOf, newImageInspectCommand, []string{"a:1"},
			"Error: image a:1: read config %c: blob %c: not found"},
		{"save-config-missing", configOf, newSaveCommand, []string{"-o", "/dev/null", "a:1"},
			"Error response from daemon: image a:1: read config %c: blob %c: not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, s, img := storeWithImage(t)
			var gone digest.Digest
			if tc.missing != nil {
				gone = tc.missing(img)
				if err := os.Remove(s.BlobPath(gone)); err != nil {
					t.Fatal(err)
				}
			}
			stderr, err := runVerb(t, tc.verb(g), tc.args...)
			want := strings.NewReplacer("%c", gone.String(), "%s", blobstore.ShortID(img.ID)).Replace(tc.want) + "\n"
			if err == nil || stderr != want {
				t.Fatalf("%v: stderr %q, err %v; want %q and an error", tc.args, stderr, err, want)
			}
		})
	}
}

func configOf(img *blobstore.Image) digest.Digest { return img.ID }
func layerOf(img *blobstore.Image) digest.Digest  { return img.Manifest.Layers[0].Digest }

// Docker's messages and exit for a few refusals: rmi -f of a missing image says
// so on stderr and exits 0; image inspect names the argument as given; a tag
// whose repository is "sha256" is refused by the daemon.
func TestImageVerbMessages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		verb    func(g *globalOptions) *cobra.Command
		args    []string
		want    string // stderr
		wantErr bool
	}{
		{"rmi-f-missing", newRmiCommand, []string{"-f", "nosuch"},
			"Error response from daemon: No such image: nosuch:latest\n", false},
		{"rmi-missing", newRmiCommand, []string{"nosuch"},
			"Error response from daemon: No such image: nosuch:latest\n", true},
		{"image-inspect-missing", newImageInspectCommand, []string{"nosuch"},
			"Error: No such image: nosuch\n", true},
		// a name that could be an ID prefix is still a name, with its tag
		{"tag-hex-name-missing", newTagCommand, []string{"a", "z:1"},
			"Error response from daemon: No such image: a:latest\n", true},
		{"rmi-hex-name-missing", newRmiCommand, []string{"bb"},
			"Error response from daemon: No such image: bb:latest\n", true},
		{"tag-sha256", newTagCommand, []string{"a:1", "sha256:abc"},
			"Error response from daemon: refusing to create an ambiguous tag using digest algorithm as name\n", true},
		{"tag-sha256-full", newTagCommand, []string{"a:1", "docker.io/library/sha256:abc"},
			"Error response from daemon: refusing to create an ambiguous tag using digest algorithm as name\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _, _ := storeWithImage(t)
			stderr, err := runVerb(t, tc.verb(g), tc.args...)
			if stderr != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("%v: stderr %q, err %v; want %q, error %v", tc.args, stderr, err, tc.want, tc.wantErr)
			}
		})
	}
}
