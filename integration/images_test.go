package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/layerfs/layerfs/internal/testenv"
	godigest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var idRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func TestImagesImportTagRmi(t *testing.T) {
	id := importBusybox(t, "busybox:latest")
	if !idRE.MatchString(id) {
		t.Fatalf("import printed %q, want sha256:<64 hex>", id)
	}
	short := strings.TrimPrefix(id, "sha256:")[:12]
	out := mustRun(t, "images")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "REPOSITORY TAG IMAGE ID CREATED SIZE" {
		t.Fatalf("images =\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != "busybox" || f[1] != "latest" || f[2] != short {
		t.Fatalf("images row = %q, want busybox latest %s", lines[1], short)
	}
	if out := mustRun(t, "tag", "busybox", "chenwenj/httpd:v1"); out != "" {
		t.Fatalf("tag printed %q, want nothing", out)
	}
	mustRun(t, "tag", short[:6], "myregistry:5000/busybox/httpd:v0.1")
	out = mustRun(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	for _, want := range []string{"busybox:latest " + short, "chenwenj/httpd:v1 " + short, "myregistry:5000/busybox/httpd:v0.1 " + short} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("images --format missing %q in\n%s", want, out)
		}
	}
	if out := mustRun(t, "images", "-q"); out != strings.Repeat(short+"\n", 3) {
		t.Errorf("images -q = %q", out)
	}
	if out := mustRun(t, "images", "--no-trunc", "-q", "chenwenj/*"); out != id+"\n" {
		t.Errorf("images -q chenwenj/* = %q, want %s", out, id)
	}
	if out := mustRun(t, "images", "--filter", "reference=busybox", "--format", "json"); !strings.Contains(out, `"Repository":"busybox"`) || strings.Count(out, "\n") != 1 {
		t.Errorf("images --filter reference=busybox --format json = %q", out)
	}
	if out := mustRun(t, "images", "-f", "dangling=true", "-q"); out != "" {
		t.Errorf("dangling images = %q, want none", out)
	}
	if r := run(t, "images", "-f", "bogus=1"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid filter 'bogus'") {
		t.Errorf("images -f bogus=1 = %+v", r)
	}

	if out := mustRun(t, "rmi", "chenwenj/httpd:v1"); out != "Untagged: chenwenj/httpd:v1\n" {
		t.Errorf("rmi tag = %q", out)
	}
	r := run(t, "rmi", short)
	if want := "Error response from daemon: conflict: unable to delete " + short + " (must be forced) - image is referenced in multiple repositories\n"; r.Code != 1 || r.Stderr != want {
		t.Errorf("rmi id with 2 tags = %d %q, want exit 1 %q", r.Code, r.Stderr, want)
	}
	r = run(t, "rmi", "nosuch")
	if r.Code != 1 || r.Stderr != "Error response from daemon: No such image: nosuch:latest\n" {
		t.Errorf("rmi nosuch = %d %q", r.Code, r.Stderr)
	}
	if r := run(t, "rmi", "-f", "nosuch"); r.Code != 0 {
		t.Errorf("rmi -f nosuch = %+v, want exit 0", r)
	}
	out = mustRun(t, "rmi", "-f", short)
	if want := "Untagged: busybox:latest\nUntagged: myregistry:5000/busybox/httpd:v0.1\nDeleted: " + id + "\n"; out != want {
		t.Errorf("rmi -f id = %q, want %q", out, want)
	}
	if out := mustRun(t, "images", "-q"); out != "" {
		t.Errorf("images after rmi = %q", out)
	}
	if blobs := blobFiles(t, rootFor(t)); len(blobs) != 0 {
		t.Errorf("blobs after removing the only image: %v", blobs)
	}
}

func TestImagesInvalidReferences(t *testing.T) {
	importBusybox(t, "busybox")
	before := treeSnapshot(t, rootFor(t))
	for _, args := range [][]string{
		{"tag", "busybox", "BusyBox:latest"},
		{"tag", "busybox", strings.Repeat("ab", 32)},
		{"tag", "busybox", "busybox@sha256:" + strings.Repeat("a", 64)},
		{"import", busyboxRootfs(t), "Upper/Case"},
		{"load", "--tag", "UPPER", "-i", busyboxRootfs(t)},
		{"inspect", "Bad Ref"},
	} {
		r := run(t, args...)
		if r.Code == 0 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 || !strings.Contains(r.Stderr, "invalid reference format") {
			t.Errorf("layerfs %v = exit %d, stderr %q; want one invalid reference line", args, r.Code, r.Stderr)
		}
	}
	if d := diffTrees(before, treeSnapshot(t, rootFor(t))); d != "" {
		t.Errorf("store changed:\n%s", d)
	}
}

func TestImagesInspectHistory(t *testing.T) {
	id := importBusybox(t, "busybox")
	var got []struct {
		Id          string
		RepoTags    []string
		Os          string
		Size        int64
		Comment     string
		Config      struct{ Cmd []string }
		GraphDriver struct {
			Name string
			Data map[string]string
		}
		RootFS struct {
			Type   string
			Layers []string
		}
	}
	out := mustRun(t, "inspect", "busybox")
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		t.Fatalf("inspect = %v, %s", err, out)
	}
	g := got[0]
	if g.Id != id || len(g.RepoTags) != 1 || g.RepoTags[0] != "busybox:latest" || g.Os != "linux" || g.Comment != "Imported from -" || len(g.Config.Cmd) != 1 {
		t.Errorf("inspect = %+v", g)
	}
	if g.GraphDriver.Name != "layerfs" || len(g.RootFS.Layers) != 1 ||
		g.GraphDriver.Data["LowerDir"] != filepath.Join(rootFor(t), "layers", strings.TrimPrefix(g.RootFS.Layers[0], "sha256:")) {
		t.Errorf("inspect GraphDriver = %+v, RootFS = %+v", g.GraphDriver, g.RootFS)
	}
	if out := mustRun(t, "inspect", "--format", "{{.Id}} {{.RepoTags}}", "busybox"); out != id+" [busybox:latest]\n" {
		t.Errorf("inspect --format = %q", out)
	}
	r := run(t, "inspect", "nosuch")
	if r.Code != 1 || strings.TrimSpace(r.Stdout) != "[]" || r.Stderr != "Error: No such object: nosuch\n" {
		t.Errorf("inspect nosuch = %+v", r)
	}
	for _, args := range [][]string{{"image", "inspect", "nosuch"}, {"inspect", "--type", "image", "nosuch"}} {
		r = run(t, args...)
		if r.Code != 1 || strings.TrimSpace(r.Stdout) != "[]" || r.Stderr != "Error: No such image: nosuch\n" {
			t.Errorf("%v = %+v", args, r)
		}
	}
	out = mustRun(t, "history", "busybox")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "IMAGE CREATED CREATED BY SIZE COMMENT" ||
		!strings.HasPrefix(lines[1], strings.TrimPrefix(id, "sha256:")[:12]) || !strings.HasSuffix(lines[1], "Imported from -") {
		t.Errorf("history =\n%s", out)
	}
	if out := mustRun(t, "history", "-q", "--no-trunc", "busybox"); out != id+"\n" {
		t.Errorf("history -q --no-trunc = %q", out)
	}
	if r := run(t, "history", "nosuch"); r.Code != 1 || !strings.Contains(r.Stderr, "No such image: nosuch:latest") {
		t.Errorf("history nosuch = %+v", r)
	}
}

// digestsOf is "<manifest digest> <config digest>" of ref in root.
func digestsOf(t testing.TB, root, ref string) string {
	t.Helper()
	out := mustRunIn(t, root, "images", "-q", "--no-trunc", ref)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Fatalf("images %s in %s = %q, want one row", ref, root, out)
	}
	return strings.TrimSpace(mustRunIn(t, root, "inspect", "--format", "{{.Descriptor.Digest}} {{.Id}}", lines[0]))
}

// ociArchiveOf writes an OCI archive holding one image whose only layer is the
// busybox rootfs tar compressed with comp ("none", "gzip", "zstd"), tagged ref.
func ociArchiveOf(t testing.TB, ref, comp string) string {
	t.Helper()
	raw, err := os.ReadFile(busyboxRootfs(t))
	if err != nil {
		t.Fatal(err)
	}
	layer, mt := raw, ocispec.MediaTypeImageLayer
	var buf bytes.Buffer
	switch comp {
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		zw.Close()
		layer, mt = buf.Bytes(), ocispec.MediaTypeImageLayerGzip
	case "zstd":
		zw, _ := zstd.NewWriter(&buf)
		zw.Write(raw)
		zw.Close()
		layer, mt = buf.Bytes(), ocispec.MediaTypeImageLayerZstd
	}
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	cfg, _ := json.Marshal(ocispec.Image{
		Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:  ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []godigest.Digest{digestOf(raw)}},
		History: []ocispec.History{{Created: &created, CreatedBy: "/bin/sh -c #(nop) ADD file:rootfs.tar in / "}},
	})
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digestOf(cfg), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{{MediaType: mt, Digest: digestOf(layer), Size: int64(len(layer))}}}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digestOf(mb), Size: int64(len(mb)),
		Annotations: map[string]string{ocispec.AnnotationRefName: ref}}}}
	idx.SchemaVersion = 2
	ib, _ := json.Marshal(idx)
	reg := func(name string, b []byte) tarFileEntry {
		return tarFileEntry{hdr: &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg}, body: b}
	}
	archive := writeTarEntries(t, []tarFileEntry{
		reg("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)), reg("index.json", ib),
		reg("blobs/sha256/"+sha256Hex(mb), mb), reg("blobs/sha256/"+sha256Hex(cfg), cfg), reg("blobs/sha256/"+sha256Hex(layer), layer),
	})
	p := filepath.Join(t.TempDir(), comp+".tar")
	if err := os.WriteFile(p, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImagesLoadSaveLoad(t *testing.T) {
	testenv.RequireTool(t, "skopeo")
	src := filepath.Join(t.TempDir(), "src")
	mustRunIn(t, src, "import", "-q", busyboxRootfs(t), "busybox:latest")
	variants := map[string]string{ // image name -> OCI archive with that layer compression
		"plain": ociArchiveOf(t, "plain:latest", "none"),
		"zst":   ociArchiveOf(t, "zst:latest", "zstd"),
		"gz":    ociArchiveOf(t, "gz:latest", "gzip"),
	}
	for name, archive := range variants {
		t.Run(name, func(t *testing.T) {
			a := rootFor(t)
			out := mustRun(t, "load", "-q", "-i", archive)
			if out != "Loaded image: "+name+":latest\n" {
				t.Fatalf("load = %q", out)
			}
			want := digestsOf(t, a, name)
			dir := t.TempDir()
			for _, format := range []string{"docker", "oci"} {
				saved := filepath.Join(dir, format+".tar")
				mustRun(t, "save", "-q", "--format", format, "-o", saved, name)
				again := filepath.Join(dir, format+"-again.tar")
				mustRun(t, "save", "-q", "--format", format, "-o", again, name)
				if !sameFile(t, saved, again) {
					t.Errorf("save --format %s twice gave different bytes", format)
				}
				b := filepath.Join(dir, "root-"+format)
				out := mustRunIn(t, b, "load", "-i", saved)
				if !strings.HasSuffix(out, "Loaded image: "+name+":latest\n") {
					t.Errorf("load of our %s save = %q", format, out)
				}
				if got := digestsOf(t, b, name); got != want {
					t.Errorf("after %s save/load: %s, want %s", format, got, want)
				}
			}
			// skopeo reads the store and what we save
			manifest := strings.Fields(want)[0]
			var insp struct {
				Digest string
				Layers []string
			}
			raw, err := exec.Command("skopeo", "inspect", "oci:"+filepath.Join(a, "store")+":docker.io/library/"+name+":latest").Output()
			if err != nil || json.Unmarshal(raw, &insp) != nil || insp.Digest != manifest {
				t.Fatalf("skopeo inspect of the store = %v, %s; want digest %s", err, raw, manifest)
			}
			storeLayers := insp.Layers
			if out, err := exec.Command("skopeo", "inspect", "docker-archive:"+filepath.Join(dir, "docker.tar")).CombinedOutput(); err != nil {
				t.Errorf("skopeo inspect docker-archive: %v\n%s", err, out)
			}
			if out, err := exec.Command("skopeo", "inspect", "oci-archive:"+filepath.Join(dir, "oci.tar")+":docker.io/library/"+name+":latest").CombinedOutput(); err != nil {
				t.Errorf("skopeo inspect oci-archive: %v\n%s", err, out)
			}
			// skopeo copy docker-archive:<our save> oci:<dir> keeps the layers: the
			// blob digests for uncompressed layers, the diffIDs (what a docker-archive
			// names layers by) for compressed ones.
			oci := filepath.Join(dir, "skopeo-oci")
			if out, err := exec.Command("skopeo", "copy", "-q", "--dest-oci-accept-uncompressed-layers", "docker-archive:"+filepath.Join(dir, "docker.tar"), "oci:"+oci+":x").CombinedOutput(); err != nil {
				t.Fatalf("skopeo copy docker-archive: %v\n%s", err, out)
			}
			raw, err = exec.Command("skopeo", "inspect", "oci:"+oci+":x").Output()
			var copied struct{ Layers []string }
			if err != nil || json.Unmarshal(raw, &copied) != nil {
				t.Fatalf("skopeo inspect copy: %v", err)
			}
			var cfg struct {
				RootFS struct{ Layers []string }
			}
			var cfgs []json.RawMessage
			json.Unmarshal([]byte(mustRun(t, "inspect", name)), &cfgs)
			json.Unmarshal(cfgs[0], &cfg)
			wantLayers := cfg.RootFS.Layers
			if name == "plain" && strings.Join(storeLayers, ",") != strings.Join(wantLayers, ",") {
				t.Errorf("uncompressed layer digests %v != diffIDs %v", storeLayers, wantLayers)
			}
			if strings.Join(copied.Layers, ",") != strings.Join(wantLayers, ",") {
				t.Errorf("skopeo copy of our docker-archive has layers %v, want %v", copied.Layers, wantLayers)
			}
			var cidx ocispec.Index
			var cm ocispec.Manifest
			ib, _ := os.ReadFile(filepath.Join(oci, "index.json"))
			json.Unmarshal(ib, &cidx)
			mb, _ := os.ReadFile(filepath.Join(oci, "blobs", "sha256", cidx.Manifests[0].Digest.Encoded()))
			json.Unmarshal(mb, &cm)
			if id := strings.Fields(want)[1]; cm.Config.Digest.String() != id {
				t.Errorf("skopeo copy of our docker-archive has config %s, want %s", cm.Config.Digest, id)
			}
		})
	}
	t.Run("skopeo-docker-archive", func(t *testing.T) {
		// skopeo writes the classic docker-archive layout (no embedded OCI layout)
		archive := filepath.Join(t.TempDir(), "classic.tar")
		if out, err := exec.Command("skopeo", "copy", "-q", "oci:"+filepath.Join(src, "store")+":docker.io/library/busybox:latest", "docker-archive:"+archive+":docker.io/library/classic:1").CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		if out := mustRun(t, "load", "-i", archive); !strings.HasSuffix(out, "Loaded image: classic:1\n") {
			t.Fatalf("load classic = %q", out)
		}
		want := digestsOf(t, rootFor(t), "classic")
		if srcID := strings.Fields(digestsOf(t, src, "busybox"))[1]; strings.Fields(want)[1] != srcID {
			t.Errorf("config digest through skopeo's docker-archive = %s, want %s", strings.Fields(want)[1], srcID)
		}
		saved := filepath.Join(t.TempDir(), "s.tar")
		mustRun(t, "save", "-o", saved, "classic:1")
		b := filepath.Join(t.TempDir(), "b")
		mustRunIn(t, b, "load", "-i", saved)
		if got := digestsOf(t, b, "classic"); got != want {
			t.Errorf("classic save/load = %s, want %s", got, want)
		}
	})
	t.Run("umoci", func(t *testing.T) {
		testenv.RequireTool(t, "umoci")
		out, err := exec.Command("umoci", "ls", "--layout", filepath.Join(src, "store")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "docker.io/library/busybox:latest") {
			t.Errorf("umoci ls = %v\n%s", err, out)
		}
	})
}

func TestImagesConcurrentTags(t *testing.T) {
	importBusybox(t, "busybox")
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for p := 0; p < 2; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if r := run(t, "tag", "busybox", fmt.Sprintf("team/app:p%d-%d", p, i)); r.Code != 0 {
					errs <- r.Stderr
				}
			}
		}(p)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("tag failed: %s", e)
	}
	b, err := os.ReadFile(filepath.Join(rootFor(t), "store", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("index.json is not valid: %v", err)
	}
	names := map[string]bool{}
	for _, m := range idx.Manifests {
		names[m.Annotations[ocispec.AnnotationRefName]] = true
	}
	for p := 0; p < 2; p++ {
		for i := 0; i < 100; i++ {
			if n := fmt.Sprintf("docker.io/team/app:p%d-%d", p, i); !names[n] {
				t.Errorf("tag %s lost", n)
			}
		}
	}
	if len(idx.Manifests) != 201 {
		t.Errorf("index.json has %d entries, want 201", len(idx.Manifests))
	}
}

// TestImagesRmiGCReachable checks that after rmi and gc the blobs are exactly what
// index.json reaches, computed here independently of blobstore.
func TestImagesRmiGCReachable(t *testing.T) {
	testenv.RequireTool(t, "skopeo")
	root := rootFor(t)
	importBusybox(t, "busybox")
	mustRun(t, "load", "-q", "-i", ociArchiveOf(t, "zst:latest", "zstd"))
	mustRun(t, "load", "-q", "-i", ociArchiveOf(t, "plain:latest", "none"))
	mustRun(t, "tag", "zst", "zst:two")
	check := func(stage string) {
		t.Helper()
		got, want := blobFiles(t, root), reachableBlobs(t, root)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: blobs\n%v\nwant exactly the reachable\n%v", stage, got, want)
		}
	}
	mustRun(t, "rmi", "zst")
	check("rmi of one of two tags")
	mustRun(t, "rmi", "zst:two", "plain")
	check("rmi of two images")
	// an orphan blob and a dead load's temp file: gc reclaims both
	orphan := []byte("orphan blob")
	h := sha256.Sum256(orphan)
	os.WriteFile(filepath.Join(root, "store", "blobs", "sha256", hex.EncodeToString(h[:])), orphan, 0o644)
	tmp := filepath.Join(root, "store", ".layerfs", "tmp", "load-dead")
	os.MkdirAll(tmp, 0o700)
	os.WriteFile(filepath.Join(tmp, "part-1"), bytes.Repeat([]byte("x"), 1000), 0o600)
	// unpacked layers: busybox's stays, an unreferenced one goes
	var insp []struct{ RootFS struct{ Layers []string } }
	json.Unmarshal([]byte(mustRun(t, "inspect", "busybox")), &insp)
	keepLayer := filepath.Join(root, "layers", strings.TrimPrefix(insp[0].RootFS.Layers[0], "sha256:"))
	goneLayer := filepath.Join(root, "layers", strings.Repeat("ab", 32))
	for _, d := range []string{keepLayer, goneLayer} {
		os.MkdirAll(filepath.Join(d, "etc"), 0o755)
		os.WriteFile(filepath.Join(d, "etc", "f"), []byte("layer file"), 0o644)
	}
	out := mustRun(t, "gc", "--dry-run")
	if !strings.Contains(out, "Would delete: sha256:"+hex.EncodeToString(h[:])) || !strings.Contains(out, "Total reclaimable space: 1.02kB") {
		t.Errorf("gc --dry-run = %q", out)
	}
	out = mustRun(t, "gc")
	if !strings.Contains(out, "Deleted: sha256:"+hex.EncodeToString(h[:])) || !strings.Contains(out, "Total reclaimed space: 1.02kB") {
		t.Errorf("gc = %q", out)
	}
	if _, err := os.Stat(goneLayer); !os.IsNotExist(err) {
		t.Errorf("unreferenced layer dir survived gc: %v", err)
	}
	if _, err := os.Stat(keepLayer); err != nil {
		t.Errorf("busybox's layer dir removed by gc: %v", err)
	}
	check("gc")
	if ents, _ := os.ReadDir(filepath.Dir(tmp)); len(ents) != 0 {
		t.Errorf("temp files left after gc: %v", ents)
	}
	if out := mustRun(t, "images", "--format", "{{.Repository}}"); out != "busybox\n" {
		t.Errorf("images after rmi = %q", out)
	}
}

// TestImagesBadInput feeds load spoiled archives: each must fail with one line,
// exit non-zero and leave the root byte for byte as it was.
func TestImagesBadInput(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	mustRunIn(t, src, "import", "-q", busyboxRootfs(t), "busybox:latest")
	good := filepath.Join(t.TempDir(), "good.tar")
	mustRunIn(t, src, "save", "-q", "--format", "oci", "-o", good, "busybox")
	entries := readTarFile(t, good)
	var m ocispec.Manifest
	var mName, cName, lName string
	for _, e := range entries {
		if e.hdr.Name == "index.json" {
			var idx ocispec.Index
			json.Unmarshal(e.body, &idx)
			mName = "blobs/sha256/" + idx.Manifests[0].Digest.Encoded()
		}
	}
	for _, e := range entries {
		if e.hdr.Name == mName {
			json.Unmarshal(e.body, &m)
		}
	}
	cName, lName = "blobs/sha256/"+m.Config.Digest.Encoded(), "blobs/sha256/"+m.Layers[0].Digest.Encoded()
	// rewrite replaces entry name's body with f(body) and fixes the manifest's
	// and index's digests so only the intended fault remains.
	rewriteBlob := func(name string, body []byte) []tarFileEntry {
		out := cloneEntries(entries)
		newName := "blobs/sha256/" + sha256Hex(body)
		for i := range out {
			if out[i].hdr.Name == name {
				out[i].hdr.Name, out[i].body = newName, body
			}
		}
		if name == cName {
			m2 := m
			m2.Config.Digest, m2.Config.Size = digestOf(body), int64(len(body))
			out = replaceManifest(out, mName, m2)
		}
		return out
	}
	goodBytes, _ := os.ReadFile(good)
	layerTar := readLayer(t, entries, lName)
	cases := map[string][]byte{
		"truncated":             goodBytes[:len(goodBytes)/2],
		"blob-digest-mismatch":  writeTarEntries(t, mutate(entries, lName, func(b []byte) []byte { b = append([]byte(nil), b...); b[len(b)/2] ^= 0xff; return b })),
		"manifest-missing-blob": writeTarEntries(t, drop(entries, lName)),
		"absolute-path":         writeTarEntries(t, append(cloneEntries(entries), tarFileEntry{hdr: &tar.Header{Name: "/etc/evil", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}, body: []byte("x")})),
		"dotdot-path":           writeTarEntries(t, append(cloneEntries(entries), tarFileEntry{hdr: &tar.Header{Name: "blobs/../../evil", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}, body: []byte("x")})),
		"config-not-json":       writeTarEntries(t, rewriteBlob(cName, []byte("{this is not json"))),
		"unknown-media-type": writeTarEntries(t, func() []tarFileEntry {
			m2 := m
			m2.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
			m2.Layers[0].MediaType = "application/vnd.example.unknown"
			return replaceManifest(cloneEntries(entries), mName, m2)
		}()),
		"hostile-layer": writeTarEntries(t, func() []tarFileEntry {
			// Digests and diffIDs all right, but no mount could unpack it.
			evil := writeTarEntries(t, []tarFileEntry{{hdr: &tar.Header{Name: "../evil", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}, body: []byte("x")}})
			var cfg map[string]any
			for _, e := range entries {
				if e.hdr.Name == cName {
					json.Unmarshal(e.body, &cfg)
				}
			}
			cfg["rootfs"] = map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + sha256Hex(evil)}}
			cb, _ := json.Marshal(cfg)
			out := cloneEntries(entries)
			for i := range out {
				switch out[i].hdr.Name {
				case lName:
					out[i].hdr.Name, out[i].body = "blobs/sha256/"+sha256Hex(evil), evil
				case cName:
					out[i].hdr.Name, out[i].body = "blobs/sha256/"+sha256Hex(cb), cb
				}
			}
			m2 := m
			m2.Config.Digest, m2.Config.Size = digestOf(cb), int64(len(cb))
			m2.Layers = []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: digestOf(evil), Size: int64(len(evil))}}
			return replaceManifest(out, mName, m2)
		}()),
		"layer-not-matching-diffid": writeTarEntries(t, func() []tarFileEntry {
			other := append([]byte(nil), layerTar...)
			other = append(other, make([]byte, 1024)...) // same files, different stream
			out := rewriteBlob(lName, other)
			m2 := m
			m2.Layers = []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: digestOf(other), Size: int64(len(other))}}
			return replaceManifest(out, mName, m2)
		}()),
	}
	root := rootFor(t)
	importBusybox(t, "base:latest")
	for name, archive := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name+".tar")
			os.WriteFile(path, archive, 0o644)
			before := treeSnapshot(t, root)
			r := runWith(t, cmdOpts{root: root}, "load", "-q", "-i", path)
			if r.Code == 0 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "Error: load "+path+": ") || strings.Count(r.Stderr, "\n") != 1 {
				t.Errorf("load = exit %d, stdout %q, stderr %q; want one error line", r.Code, r.Stdout, r.Stderr)
			}
			t.Logf("%s: %s", name, strings.TrimSpace(r.Stderr))
			if d := diffTrees(before, treeSnapshot(t, root)); d != "" {
				t.Errorf("root changed by a failed load:\n%s", d)
			}
		})
	}
}

// TestImagesKillDuringLoad kills a load mid-stream: the next command works, nothing
// became visible, and gc reclaims the partial files.
func TestImagesKillDuringLoad(t *testing.T) {
	// a big archive: a rootfs with 24MB of incompressible data
	rootfs := t.TempDir()
	big := make([]byte, 24<<20)
	rand.New(rand.NewSource(1)).Read(big)
	os.WriteFile(filepath.Join(rootfs, "big"), big, 0o644)
	tarPath := filepath.Join(t.TempDir(), "big-rootfs.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	src := filepath.Join(t.TempDir(), "src")
	mustRunIn(t, src, "import", "-q", tarPath, "big:1")
	archive := filepath.Join(t.TempDir(), "big.tar")
	mustRunIn(t, src, "save", "-q", "-o", archive, "big:1")
	data, _ := os.ReadFile(archive)

	root := rootFor(t)
	importBusybox(t, "busybox")
	before := treeSnapshot(t, root)
	cmd := exec.Command(layerfsBin, "--root", root, "load", "-q")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Write(data[:len(data)/2])
	tmp := filepath.Join(root, "store", ".layerfs", "tmp")
	deadline := time.Now().Add(20 * time.Second)
	for !hasPartialFile(tmp) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !hasPartialFile(tmp) {
		t.Fatalf("load never spooled anything into %s", tmp)
	}
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()
	stdin.Close()

	after := treeSnapshot(t, root)
	for k := range after {
		if strings.HasPrefix(k, "store/.layerfs/tmp/") {
			delete(after, k)
		}
	}
	if d := diffTrees(before, after); d != "" {
		t.Fatalf("killed load changed the store:\n%s", d)
	}
	if out := mustRun(t, "images", "--format", "{{.Repository}}"); out != "busybox\n" {
		t.Errorf("images after a killed load = %q", out)
	}
	if out := mustRun(t, "gc"); !strings.Contains(out, "leftover temporary file") {
		t.Errorf("gc after a killed load = %q, want it to reclaim the partial files", out)
	}
	if d := diffTrees(before, treeSnapshot(t, root)); d != "" {
		t.Errorf("after gc the root differs from before the load:\n%s", d)
	}
	// and the archive still loads
	if out := mustRun(t, "load", "-q", "-i", archive); out != "Loaded image: big:1\n" {
		t.Errorf("load after the kill = %q", out)
	}
}

func hasPartialFile(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() > 1<<20 {
				found = true
			}
		}
		return nil
	})
	return found
}

func TestImagesSaveRefusesTerminal(t *testing.T) {
	importBusybox(t, "busybox")
	pts := openTestPty(t)
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "save", "busybox")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = pts, &stderr
	err := cmd.Run()
	if err == nil || stderr.String() != "Error: cowardly refusing to save to a terminal. Use the -o flag or redirect\n" {
		t.Errorf("save to a terminal = %v, %q", err, stderr.String())
	}
}

// --- image-test helpers ---

func mutate(in []tarFileEntry, name string, f func([]byte) []byte) []tarFileEntry {
	out := cloneEntries(in)
	for i := range out {
		if out[i].hdr.Name == name {
			out[i].body = f(out[i].body)
		}
	}
	return out
}

func drop(in []tarFileEntry, name string) []tarFileEntry {
	var out []tarFileEntry
	for _, e := range cloneEntries(in) {
		if e.hdr.Name != name {
			out = append(out, e)
		}
	}
	return out
}

// replaceManifest writes m as the manifest blob and points index.json at it.
func replaceManifest(in []tarFileEntry, oldName string, m ocispec.Manifest) []tarFileEntry {
	mb, _ := json.Marshal(m)
	out := cloneEntries(in)
	for i := range out {
		if out[i].hdr.Name == oldName {
			out[i].hdr.Name, out[i].body = "blobs/sha256/"+sha256Hex(mb), mb
		}
	}
	for i := range out {
		if out[i].hdr.Name == "index.json" {
			var idx ocispec.Index
			json.Unmarshal(out[i].body, &idx)
			for j := range idx.Manifests {
				idx.Manifests[j].Digest, idx.Manifests[j].Size = digestOf(mb), int64(len(mb))
			}
			out[i].body, _ = json.Marshal(idx)
		}
	}
	return out
}

// readLayer decompresses the layer blob name of an archive.
func readLayer(t testing.TB, entries []tarFileEntry, name string) []byte {
	t.Helper()
	for _, e := range entries {
		if e.hdr.Name == name {
			cmd := exec.Command("gzip", "-dc")
			cmd.Stdin = bytes.NewReader(e.body)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("gunzip layer: %v", err)
			}
			return out
		}
	}
	t.Fatalf("no %s in archive", name)
	return nil
}

// reachableBlobs walks index.json -> manifests -> config and layers.
func reachableBlobs(t testing.TB, root string) []string {
	t.Helper()
	store := filepath.Join(root, "store")
	b, err := os.ReadFile(filepath.Join(store, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, d := range idx.Manifests {
		set[d.Digest.String()] = true
		mb, err := os.ReadFile(filepath.Join(store, "blobs", "sha256", d.Digest.Encoded()))
		if err != nil {
			t.Fatalf("manifest %s: %v", d.Digest, err)
		}
		var m ocispec.Manifest
		json.Unmarshal(mb, &m)
		set[m.Config.Digest.String()] = true
		for _, l := range m.Layers {
			set[l.Digest.String()] = true
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestImagesLoadCompressedStream pipes save through gzip and zstd into load's stdin.
func TestImagesLoadCompressedStream(t *testing.T) {
	id := importBusybox(t, "busybox")
	saved := filepath.Join(t.TempDir(), "bb.tar")
	mustRun(t, "save", "-q", "-o", saved, "busybox")
	for _, tool := range []string{"gzip", "zstd"} {
		t.Run(tool, func(t *testing.T) {
			testenv.RequireTool(t, tool)
			c := exec.Command(tool, "-c", saved)
			z, err := c.Output()
			if err != nil {
				t.Fatalf("%s: %v", tool, err)
			}
			root := filepath.Join(t.TempDir(), "r")
			r := runWith(t, cmdOpts{root: root, stdin: bytes.NewReader(z)}, "load")
			if r.Code != 0 || r.Stdout != "Loaded image: busybox:latest\n" {
				t.Fatalf("load of a %s stream = %+v", tool, r)
			}
			if got := strings.TrimSpace(mustRunIn(t, root, "images", "-q", "--no-trunc")); got != id {
				t.Errorf("loaded ID = %s, want %s", got, id)
			}
		})
	}
}

// TestImagesLoadTakesTag: a load that takes a tag from another image says so, as
// docker does, and the other image stays as <none>.
func TestImagesLoadTakesTag(t *testing.T) {
	a := importBusybox(t, "x:1")
	saved := filepath.Join(t.TempDir(), "a.tar")
	mustRun(t, "save", "-q", "-o", saved, "x:1")
	b := strings.TrimSpace(mustRun(t, "import", "-q", "-m", "second", busyboxRootfs(t), "x:1"))
	if a == b {
		t.Fatalf("two imports gave the same ID %s", a)
	}
	out := mustRun(t, "load", "-q", "-i", saved)
	want := "The image x:1 already exists, renaming the old one with ID " + b + " to empty string\nLoaded image: x:1\n"
	if out != want {
		t.Errorf("load = %q, want %q", out, want)
	}
	if out := mustRun(t, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"); !strings.Contains(out, "x:1 "+a+"\n") || !strings.Contains(out, "<none>:<none> "+b+"\n") {
		t.Errorf("images = %q", out)
	}
	if out := mustRun(t, "images", "-q", "--no-trunc", "-f", "dangling=true"); out != b+"\n" {
		t.Errorf("dangling = %q, want %s", out, b)
	}
}

// TestImportChanges: import -c goes through the same change parser as commit and
// build, so docker's import instructions, ONBUILD included, land in the config.
func TestImportChanges(t *testing.T) {
	root := rootFor(t)
	mustRunIn(t, root, "import", "-q",
		"-c", "ENV A=1 B=two", "-c", `CMD ["/bin/httpd","-f"]`, "-c", "ONBUILD RUN echo hi",
		"-c", "WORKDIR /srv", "-c", "EXPOSE 80",
		busyboxRootfs(t), "imp:1")
	got := strings.TrimSpace(mustRunIn(t, root, "inspect", "--format",
		"{{json .Config.Env}} {{json .Config.Cmd}} {{json .Config.OnBuild}} {{.Config.WorkingDir}} {{json .Config.ExposedPorts}}", "imp:1"))
	want := `["A=1","B=two"] ["/bin/httpd","-f"] ["RUN echo hi"] /srv {"80/tcp":{}}`
	if got != want {
		t.Errorf("inspect imp:1 config = %s, want %s", got, want)
	}
	if r := runWith(t, cmdOpts{root: root}, "import", "-c", "RUN echo no", busyboxRootfs(t), "imp:2"); r.Code == 0 {
		t.Errorf("import -c 'RUN echo no' succeeded, want a refusal")
	}
}

// TestImportBadInput: a rootfs tar that could never be unpacked (an entry Apply
// refuses) or that is no tar at all fails the import with one error line naming the
// input and the entry, and the store is left as it was, as docker import fails on a tar it cannot
// extract.
func TestImportBadInput(t *testing.T) {
	reg := func(name string) tarFileEntry {
		return tarFileEntry{hdr: &tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}, body: []byte("x")}
	}
	link := func(name, target string, typ byte) tarFileEntry {
		return tarFileEntry{hdr: &tar.Header{Name: name, Linkname: target, Mode: 0o777, Typeflag: typ}}
	}
	cases := map[string]struct {
		archive []byte
		want    string
	}{
		"dotdot":          {writeTarEntries(t, []tarFileEntry{reg("ok"), reg("../escape")}), "../escape: unsafe path"},
		"absolute-dotdot": {writeTarEntries(t, []tarFileEntry{reg("/../etc/evil")}), "/../etc/evil: unsafe path"},
		"through-symlink": {writeTarEntries(t, []tarFileEntry{link("evil", "/etc", tar.TypeSymlink), reg("evil/owned")}), "evil/owned: unsafe path"},
		"hardlink-out":    {writeTarEntries(t, []tarFileEntry{link("hl", "../../etc/shadow", tar.TypeLink)}), "hl: hard link target"},
		"not-a-tar":       {bytes.Repeat([]byte("not a tar "), 200), "not a tar archive"},
	}
	root := rootFor(t)
	importBusybox(t, "base:latest")
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name+".tar")
			if err := os.WriteFile(path, c.archive, 0o644); err != nil {
				t.Fatal(err)
			}
			before := treeSnapshot(t, root)
			r := runWith(t, cmdOpts{root: root}, "import", "-q", path, "bad:1")
			if r.Code == 0 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "Error: import "+path+": ") ||
				strings.Count(r.Stderr, "\n") != 1 || !strings.Contains(r.Stderr, c.want) {
				t.Errorf("import = exit %d, stdout %q, stderr %q; want one error line with %q", r.Code, r.Stdout, r.Stderr, c.want)
			}
			if d := diffTrees(before, treeSnapshot(t, root)); d != "" {
				t.Errorf("root changed by a failed import:\n%s", d)
			}
		})
	}
}
