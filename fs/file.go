package fs

import (
	"context"
	"errors"
	"log"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// fileHandle is an open regular file: a file in the upper dir, or a read-only open
// of a lower file. It does not offer passthrough itself; ptHandle does.
//
// FUSE passthrough binds a kernel inode to one backing inode: while any passthrough
// open of an inode lives, every open of it must pass through to that same backing
// inode (the kernel reopens it with the new open's flags), and no open may be served
// by this process. A read-only passthrough open of a lower file that is still alive
// when the file is copied up would therefore turn a later write into a write to the
// lower layer. So:
//   - upper files, and lower files of at least ptMinSize bytes, pass through;
//     smaller lower files are served with FOPEN_KEEP_CACHE (their page cache
//     survives, and no open pins them);
//   - an open that would need a copy-up while a lower passthrough open lives fails
//     with ETXTBSY, as would any open after a copy-up (or Rebase) while such an
//     open lives: the node is "pinned" to a stale backing file;
//   - a pinned node is never passed through again (its later opens are served by
//     this process), since go-fuse drops its backing file only after our Release.
//
// After a Rebase a handle's file belongs to the old stack, whose upper dir became
// the new top lower layer (commit took its content): a handle served by this
// process then follows its node into the new stack at its next use, copying the
// file up for a write, so no write lands in a file commit already took. Passthrough
// opens cannot follow (the kernel writes to their backing file itself).
type fileHandle struct {
	n  *node
	pt bool // counted in fileState.ptOpens, else in cachedOpens
	// direct: an O_DIRECT open, served with FOPEN_DIRECT_IO and counted in
	// neither (the kernel gives such an open no io mode).
	direct bool
	acc    int // access mode it was opened with (O_RDONLY, O_WRONLY, O_RDWR)

	mu    sync.Mutex
	lf    *fusefs.LoopbackFile
	fd    int
	upper bool                   // the fd is an upper-dir file (writes allowed)
	s     *stack                 // the stack the fd belongs to
	old   []*fusefs.LoopbackFile // files replaced after a Rebase, closed at Release
	// rebased: a passthrough open that may write, whose stack a Rebase retired: how
	// its file looked then, and its path (see landRebased).
	rebased    *fileStamp
	rebasedRel string
	// unpriv: a passthrough open that may write, by a caller without CAP_FSETID
	// (landRebased clears set-id bits for it).
	unpriv bool
}

// ptMinSize is the size from which read-only opens of lower files pass through.
const ptMinSize = 1 << 20

// ptAfterServed is how long after the release of a handle served by this process
// a new open of the node may pass through. go-fuse's bridge drops a backing-file
// reference at every RELEASE, also of a handle that took none, after our Release
// returns: a passthrough open registered in between would have its backing file
// closed under it, and the kernel failed the open with EIO (about one reopen in a
// hundred right after a close). Holding OPENs back behind RELEASEs instead stalled
// opens that wait for a release (waitPtClosed). Within the window an open is
// served by this process, which is always allowed.
const ptAfterServed = 100 * time.Millisecond

// ptHandle is a fileHandle whose reads and writes the kernel may pass through.
type ptHandle struct{ *fileHandle }

var _ = (fusefs.FilePassthroughFder)((*ptHandle)(nil))

func (h *ptHandle) PassthroughFd() (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fd, true
}

var (
	_ = (fusefs.FileReader)((*fileHandle)(nil))
	_ = (fusefs.FileWriter)((*fileHandle)(nil))
	_ = (fusefs.FileReleaser)((*fileHandle)(nil))
	_ = (fusefs.FileFlusher)((*fileHandle)(nil))
	_ = (fusefs.FileFsyncer)((*fileHandle)(nil))
	_ = (fusefs.FileLseeker)((*fileHandle)(nil))
	_ = (fusefs.FileAllocater)((*fileHandle)(nil))
)

// newHandle wraps an fd of the node opened in stack s with the open flags flags,
// choosing passthrough or not by the rules above; n.mu is held. It returns the
// handle and the FUSE open flags.
func (n *node) newHandle(fd int, s *stack, flags int, upper bool, size int64) (fusefs.FileHandle, uint32) {
	h := &fileHandle{lf: fusefs.NewLoopbackFileFromOS(os.NewFile(uintptr(fd), "")), fd: fd, n: n, upper: upper, s: s,
		acc: flags & unix.O_ACCMODE}
	if n.fst().handles == nil {
		n.fst().handles = map[*fileHandle]bool{}
	}
	n.fst().handles[h] = true
	if flags&unix.O_DIRECT != 0 && n.fst().ptOpens == 0 {
		// Served, with FOPEN_DIRECT_IO, which the kernel lets live beside
		// either kind of open (but a passthrough open already alive requires
		// this one to pass through too). Passed through, it would write
		// through a backing file the kernel opens O_DIRECT for it, which an
		// fcntl(F_SETFL) of the caller's fd never reaches: dd clears O_DIRECT
		// for its short last block, and that write failed (EINVAL), the file
		// cut short. This process's fd is never O_DIRECT (its READs and
		// WRITEs come clamped at EOF, unaligned).
		h.direct = true
		return h, fuse.FOPEN_DIRECT_IO
	}
	usePT := n.fs.passthrough.Load() && !n.fst().ptPinned && n.fst().cachedOpens == 0 && (upper || size >= ptMinSize) &&
		time.Since(n.fst().cachedClosed) >= ptAfterServed
	if n.fst().ptOpens > 0 {
		usePT = true // the kernel requires it; the backing is this same file
	}
	if usePT {
		h.pt = true
		n.fst().ptOpens++
		return &ptHandle{h}, 0
	}
	n.fst().cachedOpens++
	if !upper {
		// Lower files never change: keep the page cache across opens.
		return h, fuse.FOPEN_KEEP_CACHE
	}
	return h, 0
}

// anyHandle returns some live handle of the node; n.mu is held.
func (n *node) anyHandle() *fileHandle {
	for h := range n.fst().handles {
		return h
	}
	return nil
}

// asHandle returns f as a *fileHandle, or nil.
func asHandle(f fusefs.FileHandle) *fileHandle {
	switch h := f.(type) {
	case *fileHandle:
		return h
	case *ptHandle:
		return h.fileHandle
	}
	return nil
}

// liveHandle returns the handle f as a *fileHandle, or any live handle of n.
func (n *node) liveHandle(f fusefs.FileHandle) *fileHandle {
	if h := asHandle(f); h != nil {
		return h
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.anyHandle()
}

// file returns the handle's current file; write asks for one that takes writes.
// A file of an older stack (before a Rebase) is replaced first: by the node's file
// in the current stack, copied up for a write (the caller of a write holds the
// barrier). A handle whose node has no name any more keeps its file.
func (h *fileHandle) file(write bool) (*fusefs.LoopbackFile, int, error) {
	cur := h.n.fs.stack.Load()
	if write && h.acc == unix.O_RDONLY {
		return nil, -1, unix.EBADF
	}
	h.mu.Lock()
	if h.pt || (h.s == cur && h.upper) {
		lf, fd := h.lf, h.fd
		h.mu.Unlock()
		return lf, fd, nil
	}
	lower := h.s == cur && !write
	h.mu.Unlock()
	e, s, err := h.n.resolve()
	if lower && (err != nil || !e.inUpper(s)) {
		// A read of a layer's file that has no upper copy (or no name) yet.
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.lf, h.fd, nil
	}
	// An older stack's file, or a layer's file that another open copied up since
	// (reads must see its writes, as through overlayfs): follow the node, copied
	// up for a write.
	if err == nil && write && !e.inUpper(s) {
		e, s, err = h.n.fs.copyUpPath(h.n.rel(), -1)
	}
	if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
		// Unlinked: the old file is the only one.
		h.mu.Lock()
		defer h.mu.Unlock()
		h.s = cur
		if write && !h.upper {
			return nil, -1, unix.EBADF
		}
		return h.lf, h.fd, nil
	}
	if err != nil {
		return nil, -1, err
	}
	flags := unix.O_RDONLY
	if e.inUpper(s) {
		flags = h.acc
	}
	fd, err := h.n.openIn(s, e, flags)
	if err != nil {
		return nil, -1, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.s == s && (h.upper || !e.inUpper(s)) {
		unix.Close(fd) // another request moved the handle already
		return h.lf, h.fd, nil
	}
	h.old = append(h.old, h.lf) // reads in flight may still splice from it
	h.lf, h.fd, h.upper, h.s = fusefs.NewLoopbackFileFromOS(os.NewFile(uintptr(fd), "")), fd, e.inUpper(s), s
	return h.lf, h.fd, nil
}

// upperFile returns the handle's file if it is the node's current upper file.
func (h *fileHandle) upperFile() (*fusefs.LoopbackFile, int, bool) {
	cur := h.n.fs.stack.Load()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.upper || (h.s != cur && !h.pt) {
		return nil, -1, false
	}
	return h.lf, h.fd, true
}

// openIn opens the node's file in the top layer of e with flags.
func (n *node) openIn(s *stack, e *entry, flags int) (int, error) {
	return openAt(s, e, n.rel(), flags)
}

// openAt opens the file at rel whose resolution in stack s is e.
func openAt(s *stack, e *entry, rel string, flags int) (int, error) {
	dir, name := path.Split(rel)
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dfd)
	return openFile(dfd, name, flags, e.inUpper(s))
}

// openFile opens name in dfd (no symlinks followed), a regular file. Files of
// read-only layers are opened O_NOATIME where the caller may (their owner, or
// CAP_FOWNER): reading an image through a mount must not write to its layers,
// and their atimes are what GETATTR reports from the cached resolution.
//
// In the upper dir a name can change under a request (a container renames over
// it), and what replaced it may be a device node the container made: opening
// that here, as root, would open the host's device (a read returns its data,
// and some opens act: a watchdog arms). So an upper name is opened O_PATH first,
// and reopened through /proc only if it is a regular file (a review's race).
// Layers do not change.
func openFile(dfd int, name string, flags int, upper bool) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !upper {
		// Unprivileged, the layer's copy of the dir may deny its owner search
		// where the merged dir allows it (see lookupOne).
		fd, err := cow.OpenNoatime(dfd, name, flags)
		if errors.Is(err, unix.EACCES) {
			err = cow.WithDirAccess(dfd, func() (err error) {
				fd, err = cow.OpenNoatime(dfd, name, flags)
				return err
			})
		}
		return fd, err
	}
	pfd, st, err := openPath(dfd, name)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, unix.ESTALE // not the file the request is for
	}
	// The magic link is the one symlink this open follows: to that inode.
	return unix.Open(procFd(pfd), flags&^unix.O_NOFOLLOW, 0)
}

// openPath opens name in dfd O_PATH, not following it, and stats what it got:
// the inode's own type, which the name's cached entry may no longer have.
func openPath(dfd int, name string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	_, fd, err := h.file(false)
	if err != nil {
		return nil, errno("read", err)
	}
	res, _ := readAt(fd, dest, off)
	return res, 0
}

func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.n.fs.barrier.RLock()
	defer h.n.fs.barrier.RUnlock()
	lf, _, err := h.file(true)
	if err != nil {
		return 0, errno("write", err)
	}
	nw, en := lf.Write(ctx, data, off)
	if en == 0 {
		h.n.dataChanged(off, int64(nw))
	}
	return nw, en
}

func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	n := h.n
	n.mu.Lock()
	delete(n.fst().handles, h)
	if h.pt {
		n.fst().ptOpens--
	} else if !h.direct {
		n.fst().cachedOpens--
		n.fst().cachedClosed = time.Now()
	}
	n.mu.Unlock()
	if err := h.landRebased(); err != nil {
		log.Printf("layerfs: release %s: keeping the writes made after a commit: %v", n.rel(), err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, lf := range h.old {
		lf.Release(ctx)
	}
	h.old = nil
	return h.lf.Release(ctx)
}

// Flush answers ENOSYS (node.Flush answers first; see there).
func (h *fileHandle) Flush(ctx context.Context) syscall.Errno { return syscall.ENOSYS }

func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	lf, _, err := h.file(false)
	if err != nil {
		return errno("fsync", err)
	}
	return lf.Fsync(ctx, flags)
}

func (h *fileHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	lf, _, err := h.file(false)
	if err != nil {
		return 0, errno("lseek", err)
	}
	return lf.Lseek(ctx, off, whence)
}

func (h *fileHandle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	h.n.fs.barrier.RLock()
	defer h.n.fs.barrier.RUnlock()
	lf, _, err := h.file(true)
	if err != nil {
		return errno("fallocate", err)
	}
	en := lf.Allocate(ctx, off, size, mode)
	if en == 0 {
		h.n.dataChanged(int64(off), int64(size))
	}
	return en
}

var _ = (fusefs.NodeOpener)((*node)(nil))

// Open opens a regular file. Read-only opens of lower files never copy up; any
// write access or O_TRUNC copies up first (O_TRUNC without the data).
func (n *node) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if n.fs.noOpen {
		return nil, 0, syscall.ENOSYS // from now on the kernel opens files itself
	}
	flags &^= uint32(unix.O_APPEND | fuse.FMODE_EXEC | unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY)
	write := flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0
	if rdonlyTrunc(flags) && n.executing() {
		return nil, 0, syscall.ETXTBSY
	}
	e, s, err := n.resolve()
	if errors.Is(err, unix.ESTALE) {
		return n.openPinned(flags, write) // the name went away under the open
	}
	if err != nil {
		return nil, 0, errno("open", err)
	}
	if write {
		n.fs.barrier.RLock()
		defer n.fs.barrier.RUnlock()
	}
	if write && !e.inUpper(s) {
		if !n.waitPtClosed() {
			return nil, 0, syscall.ETXTBSY
		}
		limit := int64(-1)
		if flags&unix.O_TRUNC != 0 {
			limit = 0
		}
		e, s, err = n.fs.copyUpPath(n.rel(), limit)
		if err != nil {
			return nil, 0, errno("open copy-up", err)
		}
	}
	dir, name := path.Split(n.rel())
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return nil, 0, errno("open", err)
	}
	defer unix.Close(dfd)
	// O_TRUNC (ATOMIC_O_TRUNC) is applied once the open cannot fail any more: an
	// open refused with ETXTBSY must leave the data alone.
	fd, err := openFile(dfd, name, int(flags&^(unix.O_TRUNC|unix.O_DIRECT)), e.inUpper(s))
	if err != nil {
		return nil, 0, errno("open", err)
	}
	if n.ptPinnedBusy() && !n.waitPtClosed() {
		unix.Close(fd)
		return nil, 0, syscall.ETXTBSY
	}
	n.mu.Lock()
	if n.fst().ptPinned && n.fst().ptOpens > 0 {
		n.mu.Unlock()
		unix.Close(fd)
		return nil, 0, syscall.ETXTBSY
	}
	if err := truncOnOpen(fd, flags); err != nil {
		n.mu.Unlock()
		unix.Close(fd)
		return nil, 0, errno("open truncate", err)
	}
	h, fflags := n.newHandle(fd, s, int(flags), e.inUpper(s), e.st.Size)
	n.mu.Unlock()
	if flags&unix.O_TRUNC != 0 {
		n.dataChanged(0, 0)
	}
	markUnpriv(ctx, h)
	return h, fflags, 0
}

// rdonlyTrunc reports whether an open is O_RDONLY|O_TRUNC: the one open that
// truncates whose OPEN reaches this process before the kernel asks for write
// access to the file (which a running program denies, ETXTBSY): for a write
// open it asks first. Such an open must not truncate a running program's
// file (it died of SIGBUS), so it answers ETXTBSY itself (executing).
func rdonlyTrunc(flags uint32) bool {
	return flags&unix.O_ACCMODE == unix.O_RDONLY && flags&unix.O_TRUNC != 0
}

// executing reports whether some process runs n's file (its /proc/PID/exe is
// n's inode on this mount; linkDevIno asks no FUSE server).
func (n *node) executing() bool {
	dev := n.fs.dev.Load()
	if dev == 0 {
		return false
	}
	ino := n.StableAttr().Ino
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return false
	}
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		if d, i, err := linkDevIno(filepath.Join(procRoot, p.Name(), "exe")); err == nil && d == dev && i == ino {
			return true
		}
	}
	return false
}

// truncOnOpen empties fd if the open asked for O_TRUNC. Linux truncates on
// O_RDONLY|O_TRUNC too (the kernel checked that the caller may write): a
// read-only fd cannot be truncated, so that goes through a writable open of
// the same file.
func truncOnOpen(fd int, flags uint32) error {
	if flags&unix.O_TRUNC == 0 {
		return nil
	}
	if flags&unix.O_ACCMODE != unix.O_RDONLY {
		return unix.Ftruncate(fd, 0)
	}
	w, err := unix.Open(procFd(fd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(w)
	return unix.Ftruncate(w, 0)
}

// markUnpriv notes whether a passthrough open that may write was made by a caller
// without CAP_FSETID (see landRebased); the handle is not in use yet.
func markUnpriv(ctx context.Context, f fusefs.FileHandle) {
	if h, ok := f.(*ptHandle); ok && h.acc != unix.O_RDONLY {
		if c, ok := fuse.FromContext(ctx); ok {
			h.unpriv = !hasFsetid(c.Pid)
		}
	}
}

// waitPtClosed waits briefly for the node's passthrough opens to go: the kernel
// sends RELEASE asynchronously after close(2), so a writer that opens right after a
// reader closed would otherwise see ETXTBSY. It reports whether none are left.
func (n *node) waitPtClosed() bool {
	for i := 0; ; i++ {
		n.mu.Lock()
		busy := n.fst().ptOpens > 0
		n.mu.Unlock()
		if !busy {
			return true
		}
		if i == 50 {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// wasPinned reports whether n is pinned to an earlier file (a passthrough
// open across a Rebase or copy-up), though the open may be gone since.
func (n *node) wasPinned() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fstIf().ptPinned
}

func (n *node) ptPinnedBusy() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.fstIf()
	return f.ptPinned && f.ptOpens > 0
}

var _ = (fusefs.NodeFsyncer)((*node)(nil))

// Fsync syncs an open file, or for a directory the upper copy if there is one.
func (n *node) Fsync(ctx context.Context, f fusefs.FileHandle, flags uint32) syscall.Errno {
	switch h := f.(type) {
	case *fileHandle:
		return h.Fsync(ctx, flags)
	case *ptHandle:
		return h.Fsync(ctx, flags)
	}
	if n.StableAttr().Mode&unix.S_IFMT == unix.S_IFREG {
		return n.fsyncData()
	}
	e, s, err := n.resolve()
	if err != nil || !e.inUpper(s) {
		return 0
	}
	fd, err := s.openDir(0, n.rel(), unix.O_RDONLY)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	return errno("fsync", unix.Fsync(fd))
}
