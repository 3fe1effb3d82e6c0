package fs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Renames are exclusive against every request that changes the tree or a file.
//
// Such a request finds its files by the node's path in go-fuse's tree, and a
// rename changes paths: the upper dir first, go-fuse's tree after node.Rename
// returned. A create through a directory fd that resolved the directory's path
// just before a rename moved it would act on the old path: fail (ENOENT), or land
// in whatever took the name (with RENAME_EXCHANGE, the other directory). So a
// request that may change something holds paths for reading from its start to its
// end, and a rename holds it for writing until go-fuse moved the node too.
//
// Requests that only read are left out: they are retried when a move overlapped
// them (retryMoved), and a rename does not wait for them. Read-only opens and
// FSYNC are such requests too: a Pause lets them run (it holds the barrier, which
// a rename waits for holding paths), and Pause stops the processes that write
// through passthrough opens, which cannot stop inside a request. Lock requests are
// left out too: SETLKW may block for as long as another process holds the lock. So
// is RELEASE, which a passthrough open may wait for (waitPtClosed): the rare release
// that changes something (landRebased) holds paths itself.
//
// A rename waits for the changes in flight, a copy-up among them, and holds off new
// ones meanwhile (its own copy-ups run before, holding paths for reading:
// prepareRename); the requests themselves never touch the mount, so none of them
// waits for the directory locks the kernel holds for the rename.

func (w *noOpendirFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName string, newName string) fuse.Status {
	if st, done := w.prepareRename(cancel, in, oldName, newName); done {
		return st
	}
	w.fs.paths.Lock()
	defer w.fs.paths.Unlock()
	// After go-fuse moved the node: ends the move node.Rename began, for
	// resolutions racing it (node.resolve).
	defer w.fs.endMove(cancel)
	return w.RawFileSystem.Rename(cancel, in, oldName, newName)
}

// errPrepared is what node.Rename answers a prepareRename with once it copied up
// what the move needs.
const errPrepared = syscall.EINPROGRESS

// prepareRename runs the rename's copy-ups (copyUpForMove: a dir of a lower layer
// is copied up whole, data and all) holding paths for reading only, so that other
// changes go on meanwhile; the rename proper then finds them done. It reports
// whether the rename is over (it had nothing to move).
func (w *noOpendirFS) prepareRename(cancel <-chan struct{}, in *fuse.RenameIn, oldName string, newName string) (fuse.Status, bool) {
	defer w.change()()
	w.fs.moveMu.Lock()
	if w.fs.preparing == nil {
		w.fs.preparing = map[<-chan struct{}]bool{}
	}
	w.fs.preparing[cancel] = true
	w.fs.moveMu.Unlock()
	defer func() {
		w.fs.moveMu.Lock()
		delete(w.fs.preparing, cancel)
		w.fs.moveMu.Unlock()
	}()
	st := w.RawFileSystem.Rename(cancel, in, oldName, newName)
	// A failure is not the rename's answer: the first pass runs beside other
	// changes (a create copying up the source's dir may make it miss the source
	// for a moment), so the rename proper runs again, alone, and answers.
	return st, st.Ok()
}

// renamePrepared reports whether the rename request ctx is a prepareRename.
func (fsys *unionFS) renamePrepared(ctx context.Context) bool {
	c, ok := ctx.(*fuse.Context)
	if !ok {
		return false
	}
	fsys.moveMu.Lock()
	defer fsys.moveMu.Unlock()
	return fsys.preparing[c.Cancel]
}

// change holds paths for reading for one request; call the result at its end.
func (w *noOpendirFS) change() func() {
	w.fs.paths.RLock()
	return w.fs.paths.RUnlock
}

func (w *noOpendirFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer w.change()()
	defer w.fs.withUmask(cancel, in.Umask)() // umask.go
	return w.RawFileSystem.Create(cancel, in, name, out)
}

func (w *noOpendirFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	defer w.change()()
	defer w.fs.withUmask(cancel, in.Umask)() // umask.go
	return w.RawFileSystem.Tmpfile(cancel, in, out)
}

func (w *noOpendirFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer w.change()()
	defer w.fs.withUmask(cancel, in.Umask)() // umask.go
	return w.RawFileSystem.Mknod(cancel, in, name, out)
}

func (w *noOpendirFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer w.change()()
	defer w.fs.withUmask(cancel, in.Umask)() // umask.go
	return w.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (w *noOpendirFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target string, name string, out *fuse.EntryOut) fuse.Status {
	defer w.change()()
	return w.RawFileSystem.Symlink(cancel, h, target, name, out)
}

func (w *noOpendirFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer w.change()()
	return w.RawFileSystem.Link(cancel, in, name, out)
}

func (w *noOpendirFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer w.change()()
	return w.RawFileSystem.Unlink(cancel, h, name)
}

func (w *noOpendirFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer w.change()()
	return w.RawFileSystem.Rmdir(cancel, h, name)
}

func (w *noOpendirFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	defer w.change()()
	return w.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (w *noOpendirFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	defer w.change()()
	return w.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (w *noOpendirFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	defer w.change()()
	return w.RawFileSystem.CopyFileRange(cancel, in)
}

func (w *noOpendirFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer w.change()()
	return w.RawFileSystem.Fallocate(cancel, in)
}
