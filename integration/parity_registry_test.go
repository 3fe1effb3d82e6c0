package integration

import (
	"archive/tar"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrmutate "github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// regPushIndex pushes a two-platform (linux/amd64, linux/arm64) OCI index to reg
// as multi/app:1 and returns its reference, its digest and the manifest digest per
// architecture.
func regPushIndex(t *testing.T, reg *registrytest.Server) (string, v1.Hash, map[string]string) {
	t.Helper()
	idx := ggcrmutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	want := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf.OS, cf.Architecture = "linux", arch
		img, _ = ggcrmutate.ConfigFile(img, cf)
		d, _ := img.Digest()
		want[arch] = d.String()
		idx = ggcrmutate.AppendManifests(idx, ggcrmutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	ref := reg.Host + "/multi/app:1"
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	return ref, idxDigest, want
}

// TestParityPulledDigest: after a multi-platform pull, name@<index digest> names
// the image for every verb, images --digests shows that digest, and rmi untags it
// as docker does.
func TestParityPulledDigest(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, idxDigest, want := regPushIndex(t, reg)
	e := newRegEnv(t)
	e.ok("pull", "--platform", "linux/arm64", ref)
	byDigest := reg.Host + "/multi/app@" + idxDigest.String()
	img, err := e.store().Resolve(ref)
	if err != nil || img.ManifestDigest.String() != want["arm64"] {
		t.Fatalf("pull = %v, %v", img, err)
	}
	if out := e.ok("inspect", "--format", "{{.Id}}", byDigest); strings.TrimSpace(out) != img.ID.String() {
		t.Errorf("inspect %s = %q, want %s", byDigest, out, img.ID)
	}
	if out := e.ok("images", "--digests", "--format", "{{.Tag}} {{.Digest}}"); out != "1 "+idxDigest.String()+"\n" {
		t.Errorf("images --digests = %q, want the index digest", out)
	}
	// docker: the digest goes, the tag (and so the image) stays
	if out := e.ok("rmi", byDigest); out != "Untagged: "+byDigest+"\n" {
		t.Errorf("rmi %s =\n%s", byDigest, out)
	}
	if out := e.ok("images", "--digests", "--format", "{{.Tag}} {{.Digest}}"); out != "1 <none>\n" {
		t.Errorf("images --digests after rmi %s = %q, want the tag without digest", byDigest, out)
	}
	if out := e.ok("rmi", ref); out != "Untagged: "+ref+"\nDeleted: "+img.ID.String()+"\n" {
		t.Errorf("rmi %s =\n%s", ref, out)
	}
}

// TestParityRmiRepoDigest: rmi REPO@digest removes exactly that repo digest and
// keeps the image's tags; removing a repository's last tag takes its digest
// along (docker's ImageDelete, both).
func TestParityRmiRepoDigest(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	e := newRegEnv(t)
	img := e.addImage("busybox:latest", map[string]string{"f": "x"})
	repo := reg.Host + "/bb"
	e.ok("tag", "busybox", repo+":latest")
	e.ok("push", "-q", repo+":latest")
	e.ok("tag", "busybox", repo+":v2")
	rd := strings.TrimSpace(e.ok("inspect", "-f", "{{index .RepoDigests 0}}", "busybox"))
	if !strings.HasPrefix(rd, repo+"@sha256:") {
		t.Fatalf("RepoDigests[0] = %q, want %s@sha256:...", rd, repo)
	}
	// images REPO@digest and reference=REPO@digest: the REPO <none> row of that
	// digest (docker matches each reference on its own)
	row := "{{.Repository}} {{.Tag}} {{.Digest}}"
	wantRow := repo + " <none> " + strings.TrimPrefix(rd, repo+"@") + "\n"
	if out := e.ok("images", "--digests", "--format", row, rd); out != wantRow {
		t.Errorf("images %s = %q, want %q", rd, out, wantRow)
	}
	if out := e.ok("images", "--format", row, "-f", "reference="+rd); out != wantRow {
		t.Errorf("images -f reference=%s = %q, want %q", rd, out, wantRow)
	}
	if out := e.ok("images", "--format", row, repo+":v2"); out != repo+" v2 <none>\n" {
		t.Errorf("images %s:v2 = %q, want the tag alone", repo, out)
	}
	if out := e.ok("rmi", rd); out != "Untagged: "+rd+"\n" {
		t.Errorf("rmi %s =\n%s", rd, out)
	}
	tags := "{{.Repository}}:{{.Tag}} {{.Digest}}"
	want := repo + ":latest <none>\n" + repo + ":v2 <none>\nbusybox:latest <none>\n"
	if out := e.ok("images", "--digests", "--format", tags); sortLines(out) != want {
		t.Errorf("images after rmi %s =\n%s\nwant\n%s", rd, out, want)
	}

	// push again: the digest is back; then the repository's tags go one by one
	e.ok("push", "-q", repo+":latest")
	if out := e.ok("rmi", repo+":v2"); out != "Untagged: "+repo+":v2\n" {
		t.Errorf("rmi %s:v2 =\n%s", repo, out)
	}
	if out := e.ok("rmi", repo+":latest"); out != "Untagged: "+repo+":latest\nUntagged: "+rd+"\n" {
		t.Errorf("rmi %s:latest (the repository's last tag) =\n%s", repo, out)
	}
	if out := e.ok("images", "--digests", "--format", tags); out != "busybox:latest <none>\n" {
		t.Errorf("images after the repository's last tag went =\n%s", out)
	}
	if out := e.ok("inspect", "-f", "{{.RepoDigests}}", "busybox"); out != "[]\n" {
		t.Errorf("RepoDigests after the repository's last tag went = %q, want []", out)
	}

	// the digest as the only reference: rmi by it deletes the image
	e.ok("pull", "-q", rd)
	if out := e.ok("rmi", "busybox"); out != "Untagged: busybox:latest\n" {
		t.Errorf("rmi busybox (a digest of %s left) =\n%s", repo, out)
	}
	if out := e.ok("rmi", rd); out != "Untagged: "+rd+"\nDeleted: "+img.ID.String()+"\n" {
		t.Errorf("rmi %s (its only reference) =\n%s", rd, out)
	}

	// image prune: an image a repo digest names is not dangling; -a removes
	// it, digest and all (it kept it as a REPO <none> row)
	e.ok("pull", "-q", rd)
	e.ok("image", "prune", "-f")
	if out := e.ok("images", "-q"); out == "" {
		t.Errorf("image prune removed an image a repo digest names")
	}
	e.ok("image", "prune", "-a", "-f")
	if out := e.ok("images", "-qa"); out != "" {
		t.Errorf("images after image prune -a =\n%s", out)
	}
}

// sortLines sorts out's lines (each ending in a newline).
func sortLines(out string) string {
	l := strings.SplitAfter(out, "\n")
	slices.Sort(l)
	return strings.Join(l, "")
}

// TestParityImagesDanglingHeads: images -a -f dangling=true lists only untagged
// images without children (docker's imageStore.Heads()), so that the cleanup
// idiom rmi $(images -qa -f dangling=true) never meets a parent.
func TestParityImagesDanglingHeads(t *testing.T) {
	e := newRegEnv(t)
	ctx := context.Background()
	base := e.addImage("base:1", map[string]string{"a": "1"})
	st := e.store()
	d, diffID, err := st.AppendLayer(ctx, strings.NewReader(tarOf(t, "b", "2")), "gzip")
	if err != nil {
		t.Fatal(err)
	}
	cfg := base.Config
	cfg.RootFS.DiffIDs = append(slices.Clone(cfg.RootFS.DiffIDs), diffID)
	top, err := st.WriteImage(ctx, cfg, append(slices.Clone(base.Manifest.Layers), d), blobstore.WithParent(base))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Tag(ctx, top, "top:1"); err != nil {
		t.Fatal(err)
	}
	lone := e.addImage("lone:1", map[string]string{"l": "1"})
	e.addImage("lone:1", map[string]string{"l": "2"}) // takes the tag: lone dangles
	e.ok("rmi", "base:1")                             // untagged, kept: top's parent
	if out := e.ok("images", "-qa", "--no-trunc"); strings.Count(out, "\n") != 4 {
		t.Errorf("images -qa =\n%s\nwant 4 images", out)
	}
	for _, args := range [][]string{{"-qa"}, {"-q"}} {
		args = append(args, "--no-trunc", "-f", "dangling=true")
		if out := e.ok(append([]string{"images"}, args...)...); out != lone.ID.String()+"\n" {
			t.Errorf("images %s = %q, want only %s (not the parent %s)", strings.Join(args, " "), out, lone.ID, base.ID)
		}
	}
	if out := e.ok("rmi", lone.ID.String()); out != "Deleted: "+lone.ID.String()+"\n" {
		t.Errorf("rmi of the dangling image = %q", out)
	}
}

// tarOf is a tar holding one file name with content c.
func tarOf(t *testing.T, name, c string) string {
	t.Helper()
	var b strings.Builder
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(c))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
