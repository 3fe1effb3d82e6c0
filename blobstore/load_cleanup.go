package blobstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// What a failed or killed load leaves behind, and who clears it.
//
// A load spools into tmp/load-*, a directory it holds an exclusive flock on for as
// long as the directory has that name: it is made as tmp/mkload-*, locked, and
// only then renamed to load-* (the lock is on the directory, not its name). So a
// load-* dir that nobody holds locked is a killed load's, and every load first
// removes those at once (GC clears them too): the retry of a load killed on a
// nearly full disk finds the space its spool took. An mkload-* dir is empty; one
// older than staleSpoolAge and unlocked is a load killed before its rename.
//
// A load that fails after it moved blobs into blobs/ (index.json could not be
// written: a full disk) removes again those of them that nothing references (only
// the ones it renamed in itself, not those another writer placed first), when
// it can have gc.lock to itself: no other load, Put or GC runs then. When it
// cannot, the blobs stay, unreferenced, and the next GC removes them.

const (
	spoolPrefix = "load-"
	// newSpoolPrefix names a spool dir between its mkdir and its flock.
	newSpoolPrefix = "mkload-"
	// staleSpoolAge: an mkload-* dir younger than this is left alone even if
	// unlocked (it may be between its creation and its flock).
	staleSpoolAge = 5 * time.Minute
)

// newSpoolDir makes a load's spool dir in tmp/, locked before it has its load-*
// name. remove deletes the dir and only then releases the lock, so that the dir is
// never unlocked while it is there for another load's removeStaleSpools to take.
func (s *Store) newSpoolDir() (dir string, remove func(), err error) {
	for {
		tmp, err := os.MkdirTemp(s.tmpDir(), newSpoolPrefix)
		if err != nil {
			return "", nil, err
		}
		d, err := os.Open(tmp)
		if err == nil {
			if err = flockRetry(d, unix.LOCK_EX|unix.LOCK_NB); err != nil {
				d.Close()
			}
		}
		if err != nil {
			os.RemoveAll(tmp)
			return "", nil, err
		}
		dir = filepath.Join(s.tmpDir(), spoolPrefix+strings.TrimPrefix(filepath.Base(tmp), newSpoolPrefix))
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// a filesystem without RENAME_NOREPLACE: the name is MkdirTemp's
			// random one, and a load-* dir of that name is a rare leftover
			if _, serr := os.Lstat(dir); errors.Is(serr, os.ErrNotExist) {
				err = os.Rename(tmp, dir)
			} else {
				err = unix.EEXIST
			}
		}
		if err != nil {
			os.RemoveAll(tmp)
			d.Close()
			if errors.Is(err, unix.EEXIST) {
				continue // that load-* name is taken: another one
			}
			return "", nil, err
		}
		return dir, func() {
			removeSpoolDir(dir)
			d.Close()
		}, nil
	}
}

// removeSpoolDir removes a spool dir; tests wrap it to look at the lock meanwhile.
var removeSpoolDir = os.RemoveAll

// removeStaleSpools removes the spool dirs of killed loads: every load-* dir not
// locked, and mkload-* dirs older than staleSpoolAge and not locked. Best effort:
// a spool it cannot judge stays.
func (s *Store) removeStaleSpools() {
	for _, p := range s.deadSpools() {
		d, err := os.Open(p)
		if err != nil {
			continue
		}
		if flockRetry(d, unix.LOCK_EX|unix.LOCK_NB) == nil && sameFile(d, p) {
			os.RemoveAll(p) // the lock on the open dir stays ours until Close
		}
		d.Close()
	}
}

// deadSpools lists the spool dirs in tmp/ that no live load holds (as seen a
// moment ago: removeStaleSpools judges each again under the lock).
func (s *Store) deadSpools() []string {
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil
	}
	var dead []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		switch {
		case strings.HasPrefix(e.Name(), spoolPrefix):
		case strings.HasPrefix(e.Name(), newSpoolPrefix):
			fi, err := e.Info()
			if err != nil || time.Since(fi.ModTime()) < staleSpoolAge {
				continue
			}
		default:
			continue
		}
		p := filepath.Join(s.tmpDir(), e.Name())
		d, err := os.Open(p)
		if err != nil {
			continue
		}
		// a shared lock, taken and let go: it fails while an owner holds its
		// exclusive one, and never keeps an owner from its own
		if flockRetry(d, unix.LOCK_SH|unix.LOCK_NB) == nil {
			dead = append(dead, p)
		}
		d.Close()
	}
	return dead
}

// sameFile reports whether the open f is still what path names: a spool dir
// locked after its load removed it, and another load's made under its name, are
// not the same.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}

// dropPlaced removes the blobs of placed (moved in by a load that then failed)
// that nothing in index.json or roots reaches, if no Lease is held (gc.lock taken
// without waiting). roots (LoadOptions.Roots, may be nil) are the working
// containers' images, read under the lock as GCWith reads them: a container made
// meanwhile from another image with one of these blobs, and kept after rmi -f,
// still names it. If roots fails nothing is removed. Best effort: what it leaves,
// GC removes.
func (s *Store) dropPlaced(placed []digest.Digest, roots func() ([]digest.Digest, error)) {
	f, err := os.OpenFile(filepath.Join(s.dir, privDir, gcLockName), os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	if flockRetry(f, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return // another writer is at work: leave the blobs to GC
	}
	var extra []digest.Digest
	if roots != nil {
		if extra, err = roots(); err != nil {
			return
		}
	}
	keep, err := s.Reachable(extra)
	if err != nil {
		return
	}
	removed := false
	for _, d := range placed {
		if !keep[d] && os.Remove(s.BlobPath(d)) == nil {
			removed = true
		}
	}
	if removed {
		syncDir(filepath.Join(s.dir, "blobs", "sha256")) //nolint:errcheck // best effort
	}
}

// flockRetry is flock(2) on f, retried on EINTR.
func flockRetry(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
