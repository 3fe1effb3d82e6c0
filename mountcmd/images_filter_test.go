package mountcmd

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/layerfs/layerfs/registry/registrytest"
)

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
