package fs

import (
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Refilling dropped listings (see relist.go).
//
// A dropped listing makes the next walk of its directory send two READDIRPLUS and a
// GETATTR of the directory: cheaper than a GETATTR per stale child, but still most of
// what a second grep -r over a tree costs over kernel overlayfs (1.5x-1.9x). So once
// listings are dropped, this process lists those directories again itself, through
// the mount, while nobody waits on them: the kernel refills its cached listings and
// every child's attributes, and the next walk finds them fresh.
//
// It lists through a private clone of the mount (open_tree(OPEN_TREE_CLONE)), never
// through the mountpoint: an open directory there would make a umount(2) in that
// moment fail with EBUSY. The clone pins only itself; a umount of the mountpoint
// goes through, and the filesystem goes away once the clone is closed, at the end of
// the batch. Paths resolve beneath the clone's root without following symlinks.
// Needs CAP_SYS_ADMIN (root); without it, or on a kernel without open_tree, the
// listings are only dropped.
type refresher struct {
	mu  sync.Mutex // one batch at a time
	dir string     // the mountpoint
	dev uint64     // the mount's st_dev
	off bool       // open_tree is not allowed here
}

// refillHook, when set (tests), runs while a refill holds a directory open.
var refillHook atomic.Pointer[func()]

// refresh lists the directories dirs again through a clone of the mount, on a
// thread of its own that runs only on an otherwise idle CPU (SCHED_IDLE): a walk
// still going on (a single grep -r reads on while its first directories are
// dropped) keeps the CPUs. The thread ends with the batch.
func (r *refresher) refresh(dirs []*node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0)
		r.list(dirs)
	}()
	<-done
}

func (r *refresher) list(dirs []*node) {
	cfd, err := unix.OpenTree(unix.AT_FDCWD, r.dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		if err == unix.EPERM || err == unix.ENOSYS {
			r.off = true
		}
		return
	}
	defer unix.Close(cfd)
	var st unix.Stat_t
	if unix.Fstat(cfd, &st) != nil || st.Dev != r.dev || st.Ino != 1 {
		return // the mountpoint shows something else now
	}
	buf := make([]byte, 32<<10)
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	for _, d := range dirs {
		rel := d.rel()
		if rel == "" {
			rel = "."
		}
		fd, err := unix.Openat2(cfd, rel, &how)
		if err != nil {
			continue
		}
		if h := refillHook.Load(); h != nil {
			(*h)()
		}
		for {
			if n, err := unix.Getdents(fd, buf); n <= 0 || err != nil {
				break
			}
		}
		_ = unix.Fstat(fd, &st) // the listing made the kernel drop the directory's atime
		unix.Close(fd)
	}
}
