package build

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
)

// Cache record types, buildkit's names (docker system df -v's CACHE TYPE).
const (
	CacheTypeMount   = "exec.cachemount" // a RUN --mount=type=cache dir
	CacheTypeRegular = "regular"         // a step cache entry
)

// CacheRecord is one thing PruneCache may remove, as `system df` shows it.
type CacheRecord struct {
	ID       string    // the cache mount's id, or the step key's first 12 hex digits
	Type     string    // CacheTypeMount or CacheTypeRegular
	Size     int64     // bytes, counted as PruneCache counts what it frees
	LastUsed time.Time // mtime of the record's dir or file
	// InUse: a build holds the cache mount's lock now; PruneCache keeps it.
	InUse bool
	// Dangling: PruneCache without all removes it (an unused cache mount, a step
	// entry whose layer is gone); with all, every record not InUse goes.
	Dangling bool
}

// CacheUsage lists the build cache under stateDir: what PruneCache looks at,
// measured without removing or creating anything. Cache mounts come first, then
// step entries, each sorted by ID. Safe beside builds: a cache mount's lock is
// only tried (never waited on) and released at once.
func CacheUsage(stateDir string, s *blobstore.Store) ([]CacheRecord, error) {
	var recs []CacheRecord
	mounts := CacheMountsDir(stateDir)
	ents, err := os.ReadDir(mounts)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue // .new-* dirs are a cache being seeded
		}
		top := filepath.Join(mounts, e.Name())
		r := CacheRecord{ID: e.Name(), Type: CacheTypeMount, Size: duSize(top), InUse: cacheMountInUse(top)}
		r.Dangling = !r.InUse
		if id, err := os.ReadFile(filepath.Join(top, "id")); err == nil && strings.TrimSpace(string(id)) != "" {
			r.ID = strings.TrimSpace(string(id))
		}
		if fi, err := os.Stat(filepath.Join(top, "data")); err == nil {
			r.LastUsed = fi.ModTime()
		} else if fi, err := e.Info(); err == nil {
			r.LastUsed = fi.ModTime()
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	nMounts := len(recs)
	c := &stepCache{dir: filepath.Join(stateDir, "build-cache"), store: s}
	ents, err = os.ReadDir(c.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		key, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(c.dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			continue // removed meanwhile
		}
		_, live := c.getPath(p)
		recs = append(recs, CacheRecord{ID: key[:min(12, len(key))], Type: CacheTypeRegular,
			Size: fi.Size(), LastUsed: fi.ModTime(), Dangling: !live})
	}
	steps := recs[nMounts:]
	sort.Slice(steps, func(i, j int) bool { return steps[i].ID < steps[j].ID })
	return recs, nil
}

// cacheMountInUse reports whether a build holds the lock of the cache mount
// dir top (PruneCache's test, without creating the lock file).
func cacheMountInUse(top string) bool {
	f, err := os.OpenFile(filepath.Join(top, "lock"), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if flockRetry(f, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return true
	}
	flockRetry(f, unix.LOCK_UN)
	return false
}
