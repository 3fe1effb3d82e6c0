package mountcmd

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/layerfs/layerfs/build"
)

// TestDfSummary: shared layers count once, reclaimable is what inactive images
// hold alone, containers' reclaimable is the unmounted ones' (not the dead
// ones'), and build cache in use is not reclaimable.
func TestDfSummary(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	du := &diskUsage{
		images:     []dfImage{{containers: 1}, {}, {}},
		layers:     map[digest.Digest]int64{a: 1000, b: 3000, c: 6000},
		activeLyrs: map[digest.Digest]bool{a: true},
		containers: []dfContainer{
			{row: psRow{Mount: statusMounted}, size: 100, volumes: []containerVolume{{size: 7}}},
			{row: psRow{Mount: statusPaused}, size: 50},
			{row: psRow{Mount: statusDead}, size: 250},
			{row: psRow{Mount: statusUnmounted}, size: 600, volumes: []containerVolume{{size: 3}}},
		},
		cache: []build.CacheRecord{{Size: 2000, InUse: true}, {Size: 500}},
	}
	got := du.summary()
	want := []dfRow{
		{"Images", "3", "1", "10kB", "9kB (90%)"},
		{"Containers", "4", "2", "1kB", "600B (60%)"},
		{"Local Volumes", "2", "1", "10B", "3B (30%)"},
		{"Build Cache", "2", "1", "2.5kB", "500B"},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("summary()[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	var out bytes.Buffer
	if err := du.writeSummary(&out, ""); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) != 6 || strings.Join(strings.Fields(lines[0]), " ") != "TYPE TOTAL ACTIVE SIZE RECLAIMABLE" ||
		strings.Join(strings.Fields(lines[1]), " ") != "Images 3 1 10kB 9kB (90%)" {
		t.Errorf("system df =\n%s", out.String())
	}
	out.Reset()
	if err := du.writeSummary(&out, "json"); err != nil {
		t.Fatal(err)
	}
	var row map[string]string
	if err := json.Unmarshal([]byte(strings.SplitN(out.String(), "\n", 2)[0]), &row); err != nil || row["Type"] != "Images" || row["TotalCount"] != "3" || row["Reclaimable"] != "9kB (90%)" {
		t.Errorf("system df --format json = %q (%v)", out.String(), err)
	}
	out.Reset()
	if err := du.writeSummary(&out, "{{.Type}}={{.Active}}"); err != nil || out.String() != "Images=1\nContainers=2\nLocal Volumes=1\nBuild Cache=1\n" {
		t.Errorf("system df --format template = %q, %v", out.String(), err)
	}
}

func TestSystemPruneWarning(t *testing.T) {
	want := "WARNING! This will remove:\n  - all stopped containers\n  - all dangling images\n  - unused build cache\n"
	if got := systemPruneWarning(false, false); got != want {
		t.Errorf("systemPruneWarning(false) = %q, want %q", got, want)
	}
	if got := systemPruneWarning(true, false); !strings.Contains(got, "  - all images without at least one container associated to them\n  - all build cache\n") {
		t.Errorf("systemPruneWarning(true) = %q", got)
	}
	if got := systemPruneWarning(true, true); strings.Contains(got, "build cache") {
		t.Errorf("systemPruneWarning with a filter names the build cache it keeps: %q", got)
	}
}

// TestSystemPruneNoFUSE: an unmounted container and an unused cache mount go,
// "n" keeps everything, and the output has docker's sections.
func TestSystemPruneNoFUSE(t *testing.T) {
	root := t.TempDir()
	g := &globalOptions{root: root}
	goneID := idOf(t, makeContainer(t, root, "gone", 2000, nil))
	top := filepath.Join(build.CacheMountsDir(root), "x")
	os.MkdirAll(filepath.Join(top, "data"), 0o755)
	os.WriteFile(filepath.Join(top, "id"), []byte("mycache\n"), 0o644)
	os.WriteFile(filepath.Join(top, "data", "f"), make([]byte, 8192), 0o644)
	run := func(stdin string, args ...string) string {
		cmd := newSystemPruneCommand(g)
		var out bytes.Buffer
		cmd.SetIn(strings.NewReader(stdin))
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("system prune %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	if out := run("n\n"); strings.Contains(out, "Deleted") {
		t.Errorf("system prune answered n = %q", out)
	}
	if _, err := os.Stat(top); err != nil {
		t.Fatalf("cache mount after n: %v", err)
	}
	out := run("y\n")
	if !strings.Contains(out, "Deleted Containers:\n"+goneID+"\n\nDeleted build cache objects:\ncache mount mycache\n\nTotal reclaimed space: ") {
		t.Errorf("system prune = %q", out)
	}
	if ws, _ := listContainers(root); len(ws) != 0 {
		t.Errorf("containers after system prune: %d, want 0", len(ws))
	}
	if _, err := os.Stat(top); !os.IsNotExist(err) {
		t.Errorf("cache mount after system prune: stat = %v, want gone", err)
	}
}

// TestDfVerboseImageOnce: df -v lists an image once, under its first tag, as
// docker's ("Only show the first tag"), so sums over its rows count each image
// once and the row count is the summary's TOTAL. It had a row per tag.
func TestDfVerboseImageOnce(t *testing.T) {
	root := t.TempDir()
	importImage(t, root, "bb:1")
	if out, err := layerfs(t, root, "tag", "bb:1", "bb:2"); err != nil {
		t.Fatalf("tag: %v\n%s", err, out)
	}
	importImage(t, root, "other:1", "-m", "another image")
	out, err := layerfs(t, root, "system", "df", "-v", "--format", "{{range .Images}}{{.Repository}}:{{.Tag}} {{end}}")
	if err != nil || out != "other:1 bb:1 \n" {
		t.Errorf("system df -v images = %q, %v; want %q", out, err, "other:1 bb:1 \n")
	}
	out, err = layerfs(t, root, "system", "df", "-v")
	section, _, _ := strings.Cut(out, "\nContainers space usage:")
	if rows := strings.Split(strings.TrimSpace(section), "\n"); err != nil || len(rows) != 5 {
		t.Errorf("system df -v images section = %q, %v; want a title, a blank line, a header and a row per image", section, err)
	}
}

// TestDfSizeDigits: system df's summary, SHARED SIZE, UNIQUE SIZE and
// VirtualSize have docker's units.HumanSize, 4 significant digits (1.235MB),
// where SIZE columns have 3 (1.23MB); all had 3.
func TestDfSizeDigits(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tarFile(t, tw, "big", strings.Repeat("x", 1234567))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "big.tar")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if out, err := layerfs(t, root, "import", "-q", p, "big:1"); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"system", "df", "--format", "{{.Type}} {{.Size}} {{.Reclaimable}}"},
			"Images 1.235MB 1.235MB (100%)\nContainers 0B 0B\nLocal Volumes 0B 0B\nBuild Cache 0B 0B\n"},
		{[]string{"system", "df", "-v", "--format", "{{range .Images}}{{.Size}} {{.SharedSize}} {{.UniqueSize}} {{.VirtualSize}}{{end}}"},
			"1.23MB 0B 1.235MB 1.235MB\n"},
		{[]string{"images", "--format", "{{.Size}} {{.VirtualSize}}"}, "1.23MB 1.235MB\n"},
	} {
		if out, err := layerfs(t, root, tc.args...); err != nil || out != tc.want {
			t.Errorf("layerfs %s = %q, %v; want %q", strings.Join(tc.args, " "), out, err, tc.want)
		}
	}
}
