package fs

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// No-opendir: OPENDIR answers ENOSYS once, after which the kernel never sends
// OPENDIR or RELEASEDIR again (FUSE no_opendir) and caches every directory's listing
// across opens (it defaults such directories to FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE).
// A warm walk then costs no round trip per directory. The kernel drops a cached
// listing on every change of the directory made through the mount and on Rebase's
// invalidation, the only ways a merged listing changes.
//
// go-fuse's bridge serves READDIR and READDIRPLUS from a file handle only, so
// noOpendirFS, a thin wrapper around the bridge, opens one on the bridge for each
// handle-less request, seeks to the requested offset (listings have name-hash
// offsets, so a seek into a new listing lands right) and releases it. The listing
// itself is reused between requests while no directory changes (dirHandle.load).
// It also clears set-id bits for the kernel (killpriv.go).
// maxMoveRetries bounds retryMoved's runs again. Four were too few, once, for
// a create through the fd of a directory that another process renamed back and
// forth as fast as it could (TestRenameRaceFdCreates, in a CI run of session
// 25; not in 33 runs here): each run again can meet the next rename. Each
// waits for the move it met to end first.
const maxMoveRetries = 16

type noOpendirFS struct {
	fuse.RawFileSystem
	server *fuse.Server // for notices; set before it serves
	fs     *unionFS
}

// Requests that only read go by the node's path more than once (resolve, then
// the layer dirs on that path): one that a rename's move overlapped may find a
// component gone or replaced by a whiteout. Such a request that fails as if the
// name were not there is run again once the move ended (node.resolve), up to
// maxMoveRetries more times while renames keep moving things under it.
func (w *noOpendirFS) retryMoved(f func() fuse.Status) fuse.Status {
	for attempt := 0; ; attempt++ {
		m0 := w.fs.moveSeq.Load()
		st := f()
		switch st {
		case fuse.ENOENT, fuse.Status(syscall.ENOTDIR), fuse.Status(syscall.ESTALE), fuse.Status(syscall.ENXIO):
			if attempt < maxMoveRetries && w.fs.moveSeq.Load() != m0 {
				w.fs.waitMoves()
				continue // a rename kept moving things under it: again
			}
		}
		return st
	}
}

func (w *noOpendirFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	return w.retryMoved(func() fuse.Status { return w.RawFileSystem.Lookup(cancel, h, name, out) })
}

func (w *noOpendirFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return w.retryMoved(func() fuse.Status { return w.RawFileSystem.GetAttr(cancel, in, out) })
}

func (w *noOpendirFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	var rr fuse.ReadResult
	st := w.retryMoved(func() (st fuse.Status) { rr, st = w.RawFileSystem.Read(cancel, in, buf); return st })
	return rr, st
}

func (w *noOpendirFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	var n uint32
	st := w.retryMoved(func() (st fuse.Status) { n, st = w.RawFileSystem.GetXAttr(cancel, h, attr, dest); return st })
	return n, st
}

func (w *noOpendirFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

// withDir runs f with a directory handle: in's own, or a fresh one.
func (w *noOpendirFS) withDir(cancel <-chan struct{}, in *fuse.ReadIn, f func(*fuse.ReadIn) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return f(in)
	}
	var oo fuse.OpenOut
	st := w.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader}, &oo)
	if !st.Ok() {
		return st
	}
	in2 := *in
	in2.Fh = oo.Fh
	st = f(&in2)
	w.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: oo.Fh})
	return st
}

func (w *noOpendirFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return w.withDir(cancel, in, func(in *fuse.ReadIn) fuse.Status { return w.RawFileSystem.ReadDirPlus(cancel, in, out) })
}

func (w *noOpendirFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return w.withDir(cancel, in, func(in *fuse.ReadIn) fuse.Status { return w.RawFileSystem.ReadDir(cancel, in, out) })
}

// mountNoOpendir is fusefs.Mount with the no-opendir wrapper.
func mountNoOpendir(dir string, root fusefs.InodeEmbedder, o *fusefs.Options) (*fuse.Server, error) {
	o.MountOptions.ExtraCapabilities |= fuse.CAP_NO_OPENDIR_SUPPORT
	w := &noOpendirFS{RawFileSystem: fusefs.NewNodeFS(root, o), fs: root.(*node).fs}
	server, err := fuse.NewServer(w, dir, &o.MountOptions)
	if err != nil {
		return nil, err
	}
	w.server = server
	cloexecFuseFds()
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		// Mounted, but not answering as a mount should: take it down, or it
		// stays behind, dead (every access ENOTCONN).
		_ = server.Unmount()
		return nil, err
	}
	return server, nil
}

// cloexecFuseFds marks this process's /dev/fuse fds close-on-exec. go-fuse
// v2.12.1 does so for a mount made through fusermount but not for a direct one
// (root), so every program this process started inherited the connection: a
// build's RUN command, or a container's init, kept a dead server's connection
// alive, and then waited on it for good (unkillable). It notes them in fuseFds.
func cloexecFuseFds() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "/dev/fuse" {
			unix.CloseOnExec(fd)
			fuseFds.add(fd)
		}
	}
}

// fuseFds holds the numbers of the /dev/fuse fds this process's mounts were
// served on (a number may have been closed and reused since: ownFiles closes
// them only in a thread's copy of the file table).
var fuseFds fdSet

type fdSet struct {
	mu  sync.Mutex
	fds []int
}

func (s *fdSet) add(fd int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.fds, fd) {
		s.fds = append(s.fds, fd)
	}
}

func (s *fdSet) list() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.fds)
}

var _ = (fusefs.NodeFlusher)((*node)(nil))

// Flush answers ENOSYS, so the kernel stops sending FLUSH on every close(2) (a
// synchronous round trip each). go-fuse asks NodeFlusher before the file handle and,
// without a handle (no-open mode), would otherwise answer OK, which keeps the kernel
// sending. Nothing needs a flush: no data is buffered here, in no-open mode the
// kernel keeps locks itself, and handles' locks are dropped at Release.
func (n *node) Flush(ctx context.Context, f fusefs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}
