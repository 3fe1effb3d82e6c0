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
// A load spools into tmp/load-*, a directory it holds an exclusive flock on while
// it runs; a killed load's flock goes with its process. Every load first removes
// the spools older than staleSpoolAge that nobody holds (GC clears them too).
//
// A load that fails after it moved blobs into blobs/ (index.json could not be
// written: a full disk) removes again those of them that nothing references (only
// the ones it renamed in itself, not those another writer placed first), when
// it can have gc.lock to itself: no other load, Put or GC runs then. When it
// cannot, the blobs stay, unreferenced, and the next GC removes them.

const (
	spoolPrefix = "load-"
	// staleSpoolAge: a spool younger than this is left alone even if unlocked
	// (it may be between its creation and its flock).
	staleSpoolAge = 5 * time.Minute
)

// newSpoolDir makes a load's spool dir in tmp/ and locks it. remove deletes the dir
// and only then releases the lock, so that the dir is never unlocked while it is
// there for another load's removeStaleSpools to take.
func (s *Store) newSpoolDir() (dir string, remove func(), err error) {
	dir, err = os.MkdirTemp(s.tmpDir(), spoolPrefix)
	if err != nil {
		return "", nil, err
	}
	d, err := os.Open(dir)
	if err == nil {
		err = flockRetry(d, unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			d.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, func() {
		removeSpoolDir(dir)
		d.Close()
	}, nil
}

// removeSpoolDir removes a spool dir; tests wrap it to look at the lock meanwhile.
var removeSpoolDir = os.RemoveAll

// removeStaleSpools removes the spool dirs of killed loads: older than
// staleSpoolAge and not locked. Best effort: a spool it cannot judge stays.
func (s *Store) removeStaleSpools() {
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), spoolPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < staleSpoolAge {
			continue
		}
		p := filepath.Join(s.tmpDir(), e.Name())
		d, err := os.Open(p)
		if err != nil {
			continue
		}
		if flockRetry(d, unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p) // the lock on the open dir stays ours until Close
		}
		d.Close()
	}
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
