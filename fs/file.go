package fs

import (
	"context"
	"errors"
	"os"
	"path"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
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
type fileHandle struct {
	lf    *fusefs.LoopbackFile
	fd    int
	n     *node
	upper bool // the fd is an upper-dir file (writes allowed)
	pt    bool // counted in n.ptOpens, else in n.cachedOpens
}

// ptMinSize is the size from which read-only opens of lower files pass through.
const ptMinSize = 1 << 20

// ptHandle is a fileHandle whose reads and writes the kernel may pass through.
type ptHandle struct{ *fileHandle }

var _ = (fusefs.FilePassthroughFder)((*ptHandle)(nil))

func (h *ptHandle) PassthroughFd() (int, bool) { return h.fd, true }

var (
	_ = (fusefs.FileReader)((*fileHandle)(nil))
	_ = (fusefs.FileWriter)((*fileHandle)(nil))
	_ = (fusefs.FileReleaser)((*fileHandle)(nil))
	_ = (fusefs.FileFlusher)((*fileHandle)(nil))
	_ = (fusefs.FileFsyncer)((*fileHandle)(nil))
	_ = (fusefs.FileGetlker)((*fileHandle)(nil))
	_ = (fusefs.FileSetlker)((*fileHandle)(nil))
	_ = (fusefs.FileSetlkwer)((*fileHandle)(nil))
	_ = (fusefs.FileLseeker)((*fileHandle)(nil))
	_ = (fusefs.FileAllocater)((*fileHandle)(nil))
)

// newHandle wraps an open fd of the node, choosing passthrough or not by the rules
// above; n.mu is held. It returns the handle and the FUSE open flags.
func (n *node) newHandle(fd int, upper bool, size int64) (fusefs.FileHandle, uint32) {
	h := &fileHandle{lf: fusefs.NewLoopbackFileFromOS(os.NewFile(uintptr(fd), "")), fd: fd, n: n, upper: upper}
	if n.handles == nil {
		n.handles = map[*fileHandle]bool{}
	}
	n.handles[h] = true
	usePT := n.fs.passthrough.Load() && !n.ptPinned && n.cachedOpens == 0 && (upper || size >= ptMinSize)
	if n.ptOpens > 0 {
		usePT = true // the kernel requires it; the backing is this same file
	}
	if usePT {
		h.pt = true
		n.ptOpens++
		return &ptHandle{h}, 0
	}
	n.cachedOpens++
	if !upper {
		// Lower files never change: keep the page cache across opens.
		return h, fuse.FOPEN_KEEP_CACHE
	}
	return h, 0
}

// anyHandle returns some live handle of the node; n.mu is held.
func (n *node) anyHandle() *fileHandle {
	for h := range n.handles {
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

func (h *fileHandle) fstat(st *unix.Stat_t) error { return unix.Fstat(h.fd, st) }

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.lf.Read(ctx, dest, off)
}

func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.n.fs.barrier.RLock()
	defer h.n.fs.barrier.RUnlock()
	return h.lf.Write(ctx, data, off)
}

func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	n := h.n
	n.mu.Lock()
	delete(n.handles, h)
	if h.pt {
		n.ptOpens--
	} else {
		n.cachedOpens--
	}
	n.mu.Unlock()
	return h.lf.Release(ctx)
}

// Flush answers ENOSYS, so the kernel stops sending FLUSH on every close (one round
// trip per close saved). Nothing is buffered here; locks are OFD locks on our fd,
// dropped at Release.
func (h *fileHandle) Flush(ctx context.Context) syscall.Errno { return syscall.ENOSYS }

func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.lf.Fsync(ctx, flags)
}

func (h *fileHandle) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return h.lf.Getlk(ctx, owner, lk, flags, out)
}

func (h *fileHandle) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlk(ctx, owner, lk, flags)
}

func (h *fileHandle) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlkw(ctx, owner, lk, flags)
}

func (h *fileHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}

func (h *fileHandle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if !h.upper {
		return syscall.EBADF
	}
	h.n.fs.barrier.RLock()
	defer h.n.fs.barrier.RUnlock()
	return h.lf.Allocate(ctx, off, size, mode)
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
	fd, err := unix.Openat(dfd, name, int(flags)|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, errno("open", err)
	}
	if n.ptPinnedBusy() && !n.waitPtClosed() {
		unix.Close(fd)
		return nil, 0, syscall.ETXTBSY
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ptPinned && n.ptOpens > 0 {
		unix.Close(fd)
		return nil, 0, syscall.ETXTBSY
	}
	h, fflags := n.newHandle(fd, e.inUpper(s), e.st.Size)
	return h, fflags, 0
}

// waitPtClosed waits briefly for the node's passthrough opens to go: the kernel
// sends RELEASE asynchronously after close(2), so a writer that opens right after a
// reader closed would otherwise see ETXTBSY. It reports whether none are left.
func (n *node) waitPtClosed() bool {
	for i := 0; ; i++ {
		n.mu.Lock()
		busy := n.ptOpens > 0
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

func (n *node) ptPinnedBusy() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ptPinned && n.ptOpens > 0
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
