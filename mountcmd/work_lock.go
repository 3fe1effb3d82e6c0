package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockContainer takes the working container's flock (<root>/locks/work-<name>.lock),
// waiting until ctx is done. Every writer of the container's state holds it: mount,
// umount, rm, and commit around pause/rebase. The returned func releases it.
//
// rm deletes the lock file; a waiter that got the lock on the deleted file would
// race a newcomer on a fresh one, so the lock is retaken until the locked file is
// the one at the path.
func lockContainer(ctx context.Context, w *workContainer) (unlock func(), err error) {
	return lockFile(ctx, w.lockPath())
}

// lockAndLoad takes w's lock (see lockContainer) and reads its state under it. The
// caller calls unlock (set only when err is nil).
func lockAndLoad(ctx context.Context, w *workContainer) (st *workState, unlock func(), err error) {
	unlock, err = lockContainer(ctx, w)
	if err != nil {
		return nil, nil, err
	}
	if st, err = w.load(); err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// tryLockContainer is lockContainer that gives up at once: ok=false if it is held.
func tryLockContainer(w *workContainer) (unlock func(), ok bool, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	unlock, err = lockFile(ctx, w.lockPath())
	if errors.Is(err, context.Canceled) {
		return nil, false, nil
	}
	return unlock, err == nil, err
}

func lockFile(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	wait := 5 * time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			if sameFile(f, path) {
				return func() { f.Close() }, nil // closing the fd drops the flock
			}
			f.Close()
			continue
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(wait):
		}
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

// sameFile reports whether the open f is still the file at path.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	if err != nil {
		return false
	}
	return os.SameFile(a, b)
}
