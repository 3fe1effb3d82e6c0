package fs

import (
	"bytes"
	"runtime"
	"strconv"
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
	dir string // the mountpoint
	dev uint64 // the mount's st_dev

	mu      sync.Mutex
	pending []*node      // dropped directories not listed yet
	stats   []*node      // directories to stat (relist.go's gotAttr), not to list
	running bool         // a worker lists them
	off     bool         // open_tree is not allowed here
	tid     atomic.Int32 // the worker's thread, while it runs
}

// refillHook, when set (tests), runs while a refill holds a directory open.
var refillHook atomic.Pointer[func()]

// refresh queues the directories dirs to be listed again. One worker lists what
// is queued, through a clone of the mount, on a thread of its own that runs only
// on an otherwise idle CPU (SCHED_IDLE) once it has the clone: a walk still going
// on (a single grep -r reads on while its first directories are dropped) keeps the
// CPUs. The thread ends with the worker.
func (r *refresher) refresh(dirs []*node) { r.queue(&r.pending, dirs) }

// restat queues the directories dirs to be stated through the mount, which makes
// the kernel fetch the attributes it marked stale (relist.go's gotAttr).
func (r *refresher) restat(dirs []*node) { r.queue(&r.stats, dirs) }

// idle reports whether the worker has nothing under way: every stat and
// listing queued has been answered (tests).
func (r *refresher) idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.running
}

// own reports whether pid, a request's caller (a thread ID, as the kernel sends
// it), is the worker's thread.
func (r *refresher) own(pid uint32) bool { t := r.tid.Load(); return t != 0 && uint32(t) == pid }

func (r *refresher) queue(q *[]*node, dirs []*node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off {
		return
	}
	*q = append(*q, dirs...)
	if r.running {
		return
	}
	r.running = true
	go r.work()
}

// work lists what is queued, on a thread of its own that ends with it.
func (r *refresher) work() {
	runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
	if unix.Gettid() == unix.Getpid() {
		// The main thread, which the runtime parks instead of ending: its file
		// table of its own (ownFiles) would keep every file open then, the
		// mount's too, and make unmounts fail (EBUSY). Another thread takes
		// over; it cannot be this one, which stays locked to this goroutine
		// until the other has locked its own.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			r.work()
		}()
		<-locked
		runtime.UnlockOSThread()
		return
	}
	ownFiles()
	r.tid.Store(int32(unix.Gettid()))
	for {
		r.mu.Lock()
		dirs, stats := r.pending, r.stats
		r.pending, r.stats = nil, nil
		if len(dirs)+len(stats) == 0 || r.off {
			r.running = false
			r.tid.Store(0)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		// The clone is made at normal priority: the walk to the mountpoint
		// holds the mount for a moment, in which a umount fails with EBUSY,
		// and an idle thread may wait long for a CPU in the middle of it.
		schedPolicy(unix.SCHED_NORMAL)
		cfd, mntID, ok := r.clone()
		schedPolicy(unix.SCHED_IDLE)
		if ok {
			r.list(cfd, mntID, dirs, stats)
			unix.Close(cfd)
		}
	}
}

// ownFiles gives the calling thread a file table of its own without this
// process's /dev/fuse files. A thread of a server that waits on a request to the
// server's own mount cannot end if the server is killed (SIGKILL): the kernel
// waits for the answer once the request was read, and the dying process keeps
// /dev/fuse open in the file table the waiting thread shares, so nothing aborts
// the connection, and every access to the mount hangs with it. With a table of
// its own, the other threads' exit closes the process's /dev/fuse files, the
// kernel ends the connection and the request, and the thread ends too
// (TestKilledServerRefilling). If the kernel refuses, the thread lists as before
// (umount recovers such a server: AbortConnection).
//
// The other files stay open in the copy of the table until the thread ends;
// the thread uses only files it opens itself, through unix (os would register
// them with the runtime's poller, whose descriptor numbers are the process's).
func ownFiles() {
	if unix.Unshare(unix.CLONE_FILES) != nil {
		return
	}
	for _, fd := range fuseFds.list() {
		unix.Close(fd)
	}
}

// schedPolicy sets the calling thread's scheduling policy.
func schedPolicy(p uint32) {
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: p}, 0)
}

// refillChunk is how many directories a refill lists between checks that the
// mount is still mounted: after a umount the clone alone keeps the filesystem,
// and so this process, alive.
const refillChunk = 32

// clone returns a clone of the mount (see refresher) and the mount's ID, if the
// mountpoint still shows it.
func (r *refresher) clone() (cfd int, mntID uint64, ok bool) {
	var sx unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, r.dir, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID, &sx) != nil ||
		sx.Mask&unix.STATX_MNT_ID == 0 {
		return -1, 0, false
	}
	cfd, err := unix.OpenTree(unix.AT_FDCWD, r.dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_NO_AUTOMOUNT|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		if err == unix.EPERM || err == unix.ENOSYS {
			r.mu.Lock()
			r.off = true
			r.mu.Unlock()
		}
		return -1, 0, false
	}
	var st unix.Stat_t
	if unix.Fstat(cfd, &st) != nil || st.Dev != r.dev || st.Ino != 1 {
		unix.Close(cfd)
		return -1, 0, false // the mountpoint shows something else now
	}
	return cfd, sx.Mnt_id, true
}

// list lists each of dirs and then stats it, and stats each of stats, through
// cfd, a clone of the mount whose ID is mntID.
func (r *refresher) list(cfd int, mntID uint64, dirs, stats []*node) {
	var st unix.Stat_t
	buf := make([]byte, 32<<10)
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	statHow := how
	statHow.Flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	for i, d := range append(dirs, stats...) {
		if i > 0 && i%refillChunk == 0 && !mounted(mntID) {
			return
		}
		rel := d.rel()
		if rel == "" {
			rel = "."
		}
		listIt := i < len(dirs)
		h := &how
		if !listIt {
			h = &statHow
		}
		fd, err := unix.Openat2(cfd, rel, h)
		if err != nil {
			continue
		}
		if h := refillHook.Load(); h != nil && listIt {
			(*h)()
		}
		for listIt {
			if n, err := unix.Getdents(fd, buf); n <= 0 || err != nil {
				break
			}
		}
		_ = unix.Fstat(fd, &st) // a listing makes the kernel drop the directory's atime
		unix.Close(fd)
	}
}

// mounted reports whether the mount with ID id is still in this process's mount
// table. (Not by stat of the mountpoint: a path walk into the mount at the moment
// of a umount would make it fail with EBUSY.)
func mounted(id uint64) bool {
	b, err := readProcFile("/proc/self/mountinfo")
	if err != nil {
		return true
	}
	pre := []byte(strconv.FormatUint(id, 10) + " ")
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, pre) {
			return true
		}
	}
	return false
}

// readProcFile reads the file at path with unix calls (see ownFiles).
func readProcFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var b []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return b, nil
		}
		b = append(b, buf[:n]...)
	}
}
