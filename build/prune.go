package build

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
)

// PruneResult is what PruneCache removed.
type PruneResult struct {
	Removed []string // cache mount ids and step keys
	Freed   int64    // bytes
}

// PruneCache is docker's `builder prune`: it removes the RUN cache mounts no
// build uses now and the step cache entries whose layer is gone (with all,
// every step entry: the next build reruns every step). A cache mount in use
// (its lock held) is kept.
func PruneCache(stateDir string, s *blobstore.Store, all bool) (PruneResult, error) {
	var res PruneResult
	mounts := CacheMountsDir(stateDir)
	ents, err := os.ReadDir(mounts)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		top := filepath.Join(mounts, e.Name())
		lock, err := os.OpenFile(filepath.Join(top, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return res, err
		}
		if flockRetry(lock, unix.LOCK_EX|unix.LOCK_NB) != nil {
			lock.Close() // in use
			continue
		}
		id, _ := os.ReadFile(filepath.Join(top, "id"))
		size := duSize(top)
		// The lock file goes last: a build waiting on it then finds it unlinked
		// and makes a new cache (lockCacheMount).
		err = removeAllBut(top, "lock")
		if err == nil {
			err = os.RemoveAll(top)
		}
		lock.Close()
		if err != nil {
			return res, err
		}
		name := strings.TrimSpace(string(id))
		if name == "" {
			name = e.Name()
		}
		res.Removed = append(res.Removed, "cache mount "+name)
		res.Freed += size
	}
	c := &stepCache{dir: filepath.Join(stateDir, "build-cache"), store: s}
	ents, err = os.ReadDir(c.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	for _, e := range ents {
		key, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(c.dir, e.Name())
		if !all {
			if _, live := c.getPath(p); live {
				continue
			}
		}
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
		res.Removed = append(res.Removed, "step "+key[:min(12, len(key))])
		res.Freed += fi.Size()
	}
	return res, nil
}

// removeAllBut removes everything in dir but the entry named keep.
func removeAllBut(dir, keep string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// duSize is the bytes the files under dir hold (their blocks), as du counts.
func duSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
