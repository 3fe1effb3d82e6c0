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
	if out := mustRun(t, "inspect", "--format", "{{.Id}}", "busybox@"+index); strings.TrimSpace(out) != img.ID.String() {
		t.Errorf("inspect busybox@<recorded digest> = %q, want %s", out, img.ID)
	}
	if r := run(t, "inspect", "me/bb@"+index); r.Code == 0 {
		t.Errorf("inspect me/bb@<busybox's recorded digest> = %+v, want not found", r)
	}
}
