package integration

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	units "github.com/docker/go-units"
	"github.com/layerfs/layerfs/blobstore"
)

// contentSize is docker's size of a layer tar: the sum of its header sizes.
func contentSize(t testing.TB, tarPath string) int64 {
	t.Helper()
	var n int64
	for _, e := range readTarFile(t, tarPath) {
		if e.hdr.Typeflag != tar.TypeXGlobalHeader {
			n += e.hdr.Size
		}
	}
	return n
}

// TestParityImagesSize: images SIZE, inspect Size and history SIZE are the
// uncompressed content size, as docker shows them (1.22MB for busybox), not the
// gzip blob's size; also after the size record is lost (counted from the blob).
func TestParityImagesSize(t *testing.T) {
	importBusybox(t, "busybox")
	want := contentSize(t, busyboxRootfs(t))
	check := func(when string) {
		t.Helper()
		var got []struct{ Size int64 }
		if err := json.Unmarshal([]byte(mustRun(t, "inspect", "busybox")), &got); err != nil || len(got) != 1 || got[0].Size != want {
			t.Errorf("%s: inspect Size = %+v (%v), want %d", when, got, err, want)
		}
		human := units.HumanSizeWithPrecision(float64(want), 3)
		if out := mustRun(t, "images", "--format", "{{.Size}}"); out != human+"\n" {
			t.Errorf("%s: images SIZE = %q, want %s", when, out, human)
		}
		if out := mustRun(t, "history", "--format", "{{.Size}}", "busybox"); out != human+"\n" {
			t.Errorf("%s: history SIZE = %q, want %s", when, out, human)
		}
		if out := mustRun(t, "image", "history", "-H=false", "--format", "{{.Size}}", "busybox"); out != fmt.Sprintf("%d\n", want) {
			t.Errorf("%s: history -H=false SIZE = %q, want %d", when, out, want)
		}
	}
	check("after import")
	if err := os.Remove(filepath.Join(rootFor(t), "store", ".layerfs", "layersizes.json")); err != nil {
		t.Fatal(err)
	}
	check("without the size record")
}

// TestParityImagesDigests: --digests shows <none> for an image nothing pulled or
// pushed, the recorded digest of the row's repository otherwise; and name@digest
// resolves through a recorded (registry index) digest.
func TestParityImagesDigests(t *testing.T) {
	importBusybox(t, "busybox")
	mustRun(t, "tag", "busybox", "me/bb:v1")
	out := mustRun(t, "images", "--digests")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "REPOSITORY TAG DIGEST IMAGE ID CREATED SIZE" {
		t.Fatalf("images --digests =\n%s", out)
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); f[2] != "<none>" {
			t.Errorf("images --digests row %q: DIGEST %s, want <none>", l, f[2])
		}
	}
	if out := mustRun(t, "inspect", "--format", "{{json .RepoDigests}}", "busybox"); out != "[]\n" {
		t.Errorf("inspect RepoDigests of a local image = %q, want []", out)
	}
	st, err := blobstore.Open(filepath.Join(rootFor(t), "store"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Resolve("busybox")
	if err != nil {
		t.Fatal(err)
	}
	index := "sha256:" + strings.Repeat("ab", 32)
	if err := st.AddRepoDigest(context.Background(), img.ManifestDigest, "docker.io/library/busybox@"+index); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}")
	if want := "busybox:latest " + index + "\nme/bb:v1 <none>\n"; out != want {
		t.Errorf("images --digests with a recorded digest =\n%s\nwant\n%s", out, want)
	}
	if out := mustRun(t, "inspect", "--format", "{{json .RepoDigests}}", "busybox"); out != `["busybox@`+index+`"]`+"\n" {
		t.Errorf("inspect RepoDigests with a recorded digest = %q", out)
	}
	if out := mustRun(t, "inspect", "--format", "{{.Id}}", "busybox@"+index); strings.TrimSpace(out) != img.ID.String() {
		t.Errorf("inspect busybox@<recorded digest> = %q, want %s", out, img.ID)
	}
	if r := run(t, "inspect", "me/bb@"+index); r.Code == 0 {
		t.Errorf("inspect me/bb@<busybox's recorded digest> = %+v, want not found", r)
	}
}

// TestParitySaveLoadSeveral: docker save of several references writes each shared
// layer once; loading that archive into a fresh root brings back every image with
// its tags and IDs, one "Loaded image:" line per tag.
func TestParitySaveLoadSeveral(t *testing.T) {
	a := importBusybox(t, "busybox")
	mustRun(t, "tag", "busybox", "me/bb:v1")
	b := strings.TrimSpace(mustRun(t, "import", "-q", "-c", "LABEL second=1", busyboxRootfs(t), "other:2"))
	archive := filepath.Join(t.TempDir(), "several.tar")
	mustRun(t, "save", "-q", "-o", archive, "busybox", "me/bb:v1", "other:2")
	entries := readTarFile(t, archive)
	var manifest []struct{ RepoTags, Layers []string }
	names := map[string]int{}
	for _, e := range entries {
		names[e.hdr.Name]++
		if e.hdr.Name == "manifest.json" {
			if err := json.Unmarshal(e.body, &manifest); err != nil {
				t.Fatal(err)
			}
		}
	}
	layerPaths := map[string]bool{}
	for _, m := range manifest {
		for _, l := range m.Layers {
			layerPaths[l] = true
		}
	}
	if len(manifest) != 2 || len(layerPaths) != 1 {
		t.Errorf("manifest.json = %+v, want 2 images over 1 shared layer", manifest)
	}
	for l := range layerPaths {
		if names[l] != 1 {
			t.Errorf("layer %s is %d times in the archive, want once", l, names[l])
		}
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	out := mustRunIn(t, fresh, "load", "-q", "-i", archive)
	for _, want := range []string{"Loaded image: busybox:latest\n", "Loaded image: me/bb:v1\n", "Loaded image: other:2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("load of the archive = %q, want a line %q", out, want)
		}
	}
	got := mustRunIn(t, fresh, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	for _, want := range []string{"busybox:latest " + a, "me/bb:v1 " + a, "other:2 " + b} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("images after load = %q, want %q", got, want)
		}
	}
}

// TestParityImagePrune: image prune asks first, removes dangling images only (all
// unused ones with -a), prints docker's lines and frees their blobs.
func TestParityImagePrune(t *testing.T) {
	old := importBusybox(t, "a:1")
	cur := strings.TrimSpace(mustRun(t, "import", "-q", "-c", "LABEL v=2", busyboxRootfs(t), "a:1"))
	before := treeSnapshot(t, rootFor(t))
	if r := runWith(t, cmdOpts{stdin: strings.NewReader("n\n")}, "image", "prune"); r.Code != 0 || !strings.Contains(r.Stdout, "Are you sure you want to continue? [y/N]") {
		t.Errorf("image prune answered n = %+v", r)
	}
	if d := diffTrees(before, treeSnapshot(t, rootFor(t))); d != "" {
		t.Errorf("image prune answered n changed the store:\n%s", d)
	}
	out := mustRun(t, "image", "prune", "-f")
	if !strings.HasPrefix(out, "Deleted Images:\ndeleted: "+old+"\n\nTotal reclaimed space: ") {
		t.Errorf("image prune -f =\n%s", out)
	}
	if ids := mustRun(t, "images", "-q", "--no-trunc"); ids != cur+"\n" {
		t.Errorf("images after prune = %q, want only %s", ids, cur)
	}
	if got, want := blobFiles(t, rootFor(t)), reachableBlobs(t, rootFor(t)); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("blobs after prune = %v, want the reachable %v", got, want)
	}
	out = mustRun(t, "image", "prune", "-a", "-f")
	if !strings.HasPrefix(out, "Deleted Images:\nuntagged: a:1\ndeleted: "+cur+"\n") {
		t.Errorf("image prune -a -f =\n%s", out)
	}
	if blobs := blobFiles(t, rootFor(t)); len(blobs) != 0 {
		t.Errorf("blobs after prune -a: %v", blobs)
	}
}
