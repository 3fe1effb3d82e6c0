package build

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/internal/testenv"
)

// TestPruneCache: builder prune removes cache mounts nobody holds (a build's
// next run starts them empty), keeps one in use, keeps step entries whose layer
// is there unless all, and drops those whose layer is gone.
func TestPruneCache(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	df := func(n string) string {
		return "FROM base\nRUN --mount=type=cache,id=a,target=/a --mount=type=cache,id=b,target=/b \\\n" +
			"    echo " + n + " >> /a/log && echo " + n + " >> /b/log && cp /a/log /got\n"
	}
	if _, out, err := buildWith(t, root, s, ctxDir, df("1"), nil); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// "b" is in use: a build holds its lock.
	sum := cacheTop(t, root, "b")
	held, err := lockCacheMount(context.Background(), sum, unix.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	res, err := PruneCache(root, s, false)
	held.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.Removed, "cache mount a") || slices.Contains(res.Removed, "cache mount b") || res.Freed <= 0 {
		t.Errorf("prune removed %v (%d bytes), want cache mount a and not b", res.Removed, res.Freed)
	}
	for _, r := range res.Removed {
		if r[:4] == "step" {
			t.Errorf("prune without all removed %s, whose layer is there", r)
		}
	}
	// The next build (another step) starts "a" empty and finds "b" as it was.
	_, out, err := buildWith(t, root, s, ctxDir, df("2")+"RUN test \"$(cat /got)\" = 2\n", nil)
	if err != nil {
		t.Fatalf("build after prune: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(cacheTop(t, root, "b"), "data/log")); err != nil || string(b) != "1\n2\n" {
		t.Errorf("cache b after prune = %q, %v; want it kept", b, err)
	}
	res, err = PruneCache(root, s, true)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, r := range res.Removed {
		if r[:4] == "step" {
			steps++
		}
	}
	if steps == 0 {
		t.Errorf("prune -a removed %v, want the step entries too", res.Removed)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "build-cache")); len(ents) != 0 {
		t.Errorf("after prune -a the step cache holds %d entries", len(ents))
	}
	if ents, _ := os.ReadDir(CacheMountsDir(root)); len(ents) != 0 {
		t.Errorf("after prune -a %d cache mounts are left", len(ents))
	}
}

// cacheTop is the dir of cache mount id (no from=) under root.
func cacheTop(t *testing.T, root, id string) string {
	t.Helper()
	ents, _ := os.ReadDir(CacheMountsDir(root))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(CacheMountsDir(root), e.Name(), "id"))
		if string(b) == id+"\n" {
			return filepath.Join(CacheMountsDir(root), e.Name())
		}
	}
	t.Fatalf("no cache mount %s", id)
	return ""
}
