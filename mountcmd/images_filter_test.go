package mountcmd

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// imageCreatedAt stores an image of one layer (a file holding tag) whose config
// says it was created at created, tagged tag, in the store under root: a build
// or load of a reproducible image records such a time.
func imageCreatedAt(t *testing.T, root, tag string, created time.Time) {
	t.Helper()
	ctx := context.Background()
	s, err := openStore(&globalOptions{root: root})
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tarFile(t, tw, "f", tag)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	d, n, err := s.Put(ctx, bytes.NewReader(layer.Bytes()), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ocispec.Image{Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{d}}}
	img, err := s.WriteImage(ctx, cfg, []ocispec.Descriptor{{MediaType: blobstore.LayerMediaType(blobstore.None), Digest: d, Size: n}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(ctx, img, tag); err != nil {
		t.Fatal(err)
	}
}

// lines runs layerfs args under root and returns its output's lines.
func lines(t *testing.T, root string, args ...string) []string {
	t.Helper()
	out, err := layerfs(t, root, args...)
	if err != nil {
		t.Fatalf("layerfs %s = %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.Fields(out)
}

// TestImagesDanglingFalseKeepsDigestOnly: an image pulled by digest has a repo
// digest and no tag; docker's dangling=false drops only images with neither
// (moby's image_list.go), so it is listed. layerfs left it out: it looked at the
// tags alone. dangling=true lists it too, as moby's graphdriver store does.
func TestImagesDanglingFalseKeepsDigestOnly(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(reg.Host + "/t/r:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	lines(t, root, "pull", "-q", reg.Host+"/t/r@"+d.String())
	importImage(t, root, "local:1")

	byDigest := lines(t, root, "images", "-q", "--filter", "reference="+reg.Host+"/t/r")
	local := lines(t, root, "images", "-q", "local")
	if len(byDigest) != 1 || len(local) != 1 {
		t.Fatalf("images -q: pulled by digest %q, local %q; want one each", byDigest, local)
	}
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"dangling=false", []string{local[0], byDigest[0]}},
		{"dangling=true", byDigest},
	} {
		got := lines(t, root, "images", "-q", "-f", tc.filter)
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("images -q -f %s = %q, want %q", tc.filter, got, tc.want)
		}
	}
}

// TestImagesBeforeSinceAll: several before= (since=) filters all hold, as
// docker's (moby resolves them to the oldest before= and the newest since=
// image). The last one given won, so the answer hung on the flags' order and
// before=o2 before=o4 listed o2 itself.
func TestImagesBeforeSinceAll(t *testing.T) {
	root := t.TempDir()
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for i, n := range []string{"o1", "o2", "o3", "o4"} {
		imageCreatedAt(t, root, n+":1", base.Add(time.Duration(i)*time.Hour))
	}
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{[]string{"before=o2:1", "before=o4:1"}, "o1"},
		{[]string{"before=o4:1", "before=o2:1"}, "o1"},
		{[]string{"since=o3:1", "since=o1:1"}, "o4"},
		{[]string{"since=o1:1", "since=o3:1"}, "o4"},
		{[]string{"since=o1:1", "before=o4:1"}, "o3 o2"},
		{[]string{"since=o2:1", "before=o3:1"}, ""},
	} {
		args := []string{"images", "--format", "{{.Repository}}"}
		for _, f := range tc.filters {
			args = append(args, "-f", f)
		}
		if got := strings.Join(lines(t, root, args...), " "); got != tc.want {
			t.Errorf("images -f %s = %q, want %q", strings.Join(tc.filters, " -f "), got, tc.want)
		}
	}
}
