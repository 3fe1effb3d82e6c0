package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Scratch dirs: each build step (and each COPY --from image) mounts a union under
// <StateDir>/tmp/<prefix>XXX/rootfs. The builder holds a flock on the dir's lock
// file for as long as the dir is in use; a dir whose lock is free belongs to a
// builder that died (SIGKILL, a crash) and left its mount behind, dead. Build and
// gc clear those (RemoveStaleScratch).

const (
	scratchLock = "lock"
	// scratchGrace: a dir without its lock file is left alone while this young
	// (a builder between making the dir and its lock).
	scratchGrace = time.Minute
)

var scratchPrefixes = []string{"step-", "from-"}

// newScratchDir makes a dir in tmpRoot named prefix+random, holding its lock. The
// caller calls release once the dir is gone or no longer used.
func newScratchDir(tmpRoot, prefix string) (dir string, release func(), err error) {
	if err := os.MkdirAll(tmpRoot, 0o700); err != nil {
		return "", nil, err
	}
	for {
		dir, err := os.MkdirTemp(tmpRoot, prefix)
		if err != nil {
			return "", nil, err
		}
		p := filepath.Join(dir, scratchLock)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			continue // swept before it was locked: make another
		}
		if err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
		if err := flockRetry(f, unix.LOCK_EX); err != nil {
			f.Close()
			os.RemoveAll(dir)
			return "", nil, err
		}
		if a, err := f.Stat(); err == nil {
			if b, err := os.Stat(p); err == nil && os.SameFile(a, b) {
				return dir, func() { f.Close() }, nil
			}
		}
		f.Close() // a sweeper took it meanwhile
	}
}

func flockRetry(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// RemoveStaleScratch removes the scratch dirs under stateDir/tmp whose builder
// died, first lazily unmounting the dead mount it left there; with dryRun it only
// counts them. A dir still mounted after that is left alone. Safe to run beside
// builds: a live builder's dirs are locked.
func RemoveStaleScratch(stateDir string, dryRun bool) (removed int, err error) {
	tmpRoot := filepath.Join(stateDir, "tmp")
	ents, err := os.ReadDir(tmpRoot)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("remove stale build dirs: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || !hasScratchPrefix(e.Name()) {
			continue
		}
		dir := filepath.Join(tmpRoot, e.Name())
		ok, err := removeIfStale(dir, dryRun)
		if err != nil {
			return removed, fmt.Errorf("remove stale build dir %s: %w", dir, err)
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

func hasScratchPrefix(name string) bool {
	for _, p := range scratchPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func removeIfStale(dir string, dryRun bool) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, scratchLock), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		fi, serr := os.Lstat(dir)
		if serr != nil || time.Since(fi.ModTime()) < scratchGrace {
			return false, nil
		}
	} else if err != nil {
		return false, err
	} else {
		defer f.Close()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			if errors.Is(err, unix.EWOULDBLOCK) {
				return false, nil // in use
			}
			return false, err
		}
	}
	if dryRun {
		return true, nil
	}
	mnt := filepath.Join(dir, "rootfs")
	if !sameDevice(dir, mnt) {
		unix.Unmount(mnt, unix.MNT_DETACH)
		if !sameDevice(dir, mnt) {
			return false, nil // still mounted: never remove through a mount
		}
	}
	return true, os.RemoveAll(dir)
}

// sameDevice reports whether p is on dir's filesystem (not a mount point), or
// missing. A dead FUSE mount fails to stat (ENOTCONN): not the same.
func sameDevice(dir, p string) bool {
	var a, b unix.Stat_t
	if err := unix.Lstat(dir, &a); err != nil {
		return false
	}
	if err := unix.Lstat(p, &b); err != nil {
		return errors.Is(err, unix.ENOENT)
	}
	return a.Dev == b.Dev
}
