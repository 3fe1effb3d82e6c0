package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
)

// TestCacheUsage: CacheUsage sees what PruneCache would remove, marks a held cache
// mount in use and a step entry whose layer is gone dangling, creates nothing,
// and its sizes add up to what PruneCache then frees.
func TestCacheUsage(t *testing.T) {
	root := t.TempDir()
	s, err := blobstore.Open(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	mount := func(dir, id string, data int) string {
		top := filepath.Join(CacheMountsDir(root), dir)
		os.MkdirAll(filepath.Join(top, "data"), 0o755)
		os.WriteFile(filepath.Join(top, "id"), []byte(id+"\n"), 0o644)
		os.WriteFile(filepath.Join(top, "data", "f"), make([]byte, data), 0o644)
		return top
	}
	mount("aaa", "free", 10000)
	held := mount("bbb", "held", 5000)
	nolock := mount("ccc", "", 100)
	lock, err := lockCacheMount(context.Background(), held, unix.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	steps := filepath.Join(root, "build-cache")
	os.MkdirAll(steps, 0o700)
	live := strings.Repeat("1", 64)
	gone := strings.Repeat("2", 64)
	os.WriteFile(filepath.Join(steps, live+".json"), []byte(`{"config":{}}`), 0o600)
	os.WriteFile(filepath.Join(steps, gone+".json"), []byte(`{"config":{},"layer":{"mediaType":"x","digest":"sha256:`+strings.Repeat("3", 64)+`","size":1}}`), 0o600)
	os.WriteFile(filepath.Join(steps, ".tmp-1"), []byte("x"), 0o600)

	recs, err := CacheUsage(root, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id, typ         string
		inUse, dangling bool
	}{
		{"ccc", CacheTypeMount, false, true},
		{"free", CacheTypeMount, false, true},
		{"held", CacheTypeMount, true, false},
		{live[:12], CacheTypeRegular, false, false},
		{gone[:12], CacheTypeRegular, false, true},
	}
	if len(recs) != len(want) {
		t.Fatalf("CacheUsage = %+v, want %d records", recs, len(want))
	}
	var free int64
	for i, w := range want {
		r := recs[i]
		if r.ID != w.id || r.Type != w.typ || r.InUse != w.inUse || r.Dangling != w.dangling || r.Size <= 0 || r.LastUsed.IsZero() {
			t.Errorf("CacheUsage()[%d] = %+v, want %+v with a size and a time", i, r, w)
		}
		if !r.InUse {
			free += r.Size
		}
	}
	if _, err := os.Stat(filepath.Join(nolock, "lock")); !os.IsNotExist(err) {
		t.Errorf("CacheUsage made %s/lock (stat = %v)", nolock, err)
	}
	res, err := PruneCache(root, s, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Freed != free {
		t.Errorf("PruneCache -a freed %d, CacheUsage counted %d reclaimable", res.Freed, free)
	}
}
