package fs

import (
	"context"
	"errors"
	"path"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

var _ = (fusefs.NodeRenamer)((*node)(nil))

// Rename works for every entry, including directories that live in lower layers:
// such a directory is copied up as a whole (and made opaque) first, so there is
// never EXDEV.
func (n *node) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if en := checkName(newName); en != 0 {
		return en
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	exchange := flags&unix.RENAME_EXCHANGE != 0
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	defer n.fs.changed()()
	pe, s, err := n.resolve()
	if err != nil {
		return errno("rename", err)
	}
	if !s.writable() {
		return syscall.EROFS
	}
	rel := n.rel()
	se, err := s.lookupIn(pe.layers, rel, name)
	if err != nil {
		return errno("rename", err)
	}
	if !exchange && se.inUpper(s) && (!se.isDir() || len(se.layers) == 1) && n.fs.renamePrepared(ctx) {
		// Nothing to copy up (an upper file or upper-only dir, the common case:
		// a temp file renamed into place): the rename proper does the rest.
		return errPrepared
	}
	npe, _, err := np.resolve()
	if err != nil {
		return errno("rename", err)
	}
	nrel := np.rel()
	de, err := s.lookupIn(npe.layers, nrel, newName)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return errno("rename", err)
	}
	if de != nil && flags&unix.RENAME_NOREPLACE != 0 {
		return syscall.EEXIST
	}
	if de == nil && exchange {
		return syscall.ENOENT
	}
	if de != nil && !exchange {
		if de.ino == se.ino && de.gen == se.gen {
			return 0 // two names of one inode: nothing to do
		}
		if se.isDir() && !de.isDir() {
			return syscall.ENOTDIR
		}
		if !se.isDir() && de.isDir() {
			return syscall.EISDIR
		}
		if de.isDir() {
			ents, err := s.readDir(de.layers, path.Join(nrel, newName))
			if err != nil {
				return errno("rename", err)
			}
			if len(ents) > 0 {
				return syscall.ENOTEMPTY
			}
		}
	}
	src, dst := path.Join(rel, name), path.Join(nrel, newName)
	if err := n.fs.copyUpForMove(src, se); err != nil {
		return errno("rename copy-up", err)
	}
	if exchange {
		if err := n.fs.copyUpForMove(dst, de); err != nil {
			return errno("rename copy-up", err)
		}
	}
	if n.fs.renamePrepared(ctx) {
		return errPrepared // the move comes with the rename lock (pathlock.go)
	}
	_, _, sdfd, err := n.upperDir()
	if err != nil {
		return errno("rename", err)
	}
	defer unix.Close(sdfd)
	_, _, ddfd, err := np.upperDir()
	if err != nil {
		return errno("rename", err)
	}
	defer unix.Close(ddfd)
	// A dir moved onto a name a lower layer holds must hide that lower dir's
	// entries from the moment it lands: mark it opaque before the move. (At its
	// old place it hides nothing: copyUpForMove left it upper-only or opaque.)
	// Marking it is not a change of it (its times are kept).
	if se.isDir() && s.lowerHas(npe.layers, nrel, newName) {
		if err := n.fs.makeOpaqueKeep(sdfd, name, s.format); err != nil {
			return errno("rename opaque", err)
		}
	}
	if exchange && de.isDir() && s.lowerHas(pe.layers, rel, name) {
		if err := n.fs.makeOpaqueKeep(ddfd, newName, s.format); err != nil {
			return errno("rename opaque", err)
		}
	}
	unlock := n.fs.entriesChange()
	defer unlock()
	if !exchange && de != nil && de.isDir() {
		var st unix.Stat_t
		if unix.Fstatat(ddfd, newName, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			if err := emptyHidden(ddfd, newName); err != nil {
				return errno("rename", err)
			}
		}
	}
	if dn := np.GetChild(newName); dn != nil && de != nil && !exchange {
		dn.Operations().(*node).pinForRemoval()
	}
	if sn := n.GetChild(name); sn != nil && se.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		sn.Operations().(*node).pinForRemoval() // its path is stale until go-fuse moves it
	}
	n.fs.beginMove(ctx)
	if exchange {
		err = unix.Renameat2(sdfd, name, ddfd, newName, uint(flags))
	} else {
		err = moveEntry(sdfd, name, ddfd, newName, uint(flags), s.lowerHas(pe.layers, rel, name), s.format)
	}
	if err != nil {
		n.fs.endMove(cancelOf(ctx))
		return errno("rename", err)
	}
	if dn := np.GetChild(newName); dn != nil {
		dn.Operations().(*node).invalidateEntry()
	}
	if se.isDir() || (exchange && de.isDir()) {
		// Every entry below a moved dir resolves by another path now.
		n.fs.epoch.Add(1)
	} else if sn := n.GetChild(name); sn != nil {
		// A file moved: only its own entry (and the one it replaced) changed;
		// bumping the epoch made every other node walk from the root again
		// (git's temp file renamed into place: ~125 system calls a rename).
		sn.Operations().(*node).invalidateEntry()
	}
	return 0
}

func cancelOf(ctx context.Context) <-chan struct{} {
	if c, ok := ctx.(*fuse.Context); ok {
		return c.Cancel
	}
	return nil
}

// moveEntry renames name in sdfd to newName in ddfd, both in the upper dir, so
// that at every moment each name shows either the entry or what hides the lower
// layers' entry of that name: a lookup racing the rename never finds a lower
// layer's file there (a write open of it would have gone to the lower file, and its
// attributes into the kernel's cache). wh tells whether name must be left hidden (a
// lower layer holds it). Whiteouts at newName go once the entry is there (an entry
// wins over a whiteout of its own name in the same layer, see lookupOne).
func moveEntry(sdfd int, name string, ddfd int, newName string, flags uint, wh bool, f cow.Format) error {
	if cow.HasLongWhiteout(name) {
		f = cow.FormatOverlay // name's whiteout is a 0/0 device in either format
	}
	var st unix.Stat_t
	if unix.Fstatat(ddfd, newName, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && cow.IsOverlayWhiteout(&st) {
		// Swap the entry with the whiteout: newName shows the entry, name the
		// whiteout (kept if name must stay hidden).
		if err := unix.Renameat2(sdfd, name, ddfd, newName, unix.RENAME_EXCHANGE); err != nil {
			return err
		}
		if wh && f != cow.FormatOverlay {
			if err := cow.MakeWhiteout(sdfd, name, f); err != nil {
				return err
			}
		}
		if !wh || f != cow.FormatOverlay {
			if err := unix.Unlinkat(sdfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
		}
		return removeOCIWhiteout(ddfd, newName)
	}
	switch {
	case !wh:
		if err := unix.Renameat2(sdfd, name, ddfd, newName, flags); err != nil {
			return err
		}
	case f == cow.FormatOverlay:
		err := unix.Renameat2(sdfd, name, ddfd, newName, flags|unix.RENAME_WHITEOUT)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
			// No RENAME_WHITEOUT here (filesystem or privilege): two steps.
			if err = unix.Renameat2(sdfd, name, ddfd, newName, flags); err == nil {
				err = cow.MakeWhiteout(sdfd, name, f)
			}
		}
		if err != nil {
			return err
		}
	default:
		// The OCI whiteout first, beside the entry it will outlive.
		if err := cow.MakeWhiteout(sdfd, name, f); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		if err := unix.Renameat2(sdfd, name, ddfd, newName, flags); err != nil {
			unix.Unlinkat(sdfd, cow.WhiteoutName(name), 0)
			return err
		}
	}
	return removeOCIWhiteout(ddfd, newName)
}

// removeOCIWhiteout removes the OCI whiteout of name in dfd, if there is one.
func removeOCIWhiteout(dfd int, name string) error {
	if cow.HasLongWhiteout(name) {
		return nil
	}
	if err := unix.Unlinkat(dfd, cow.WhiteoutName(name), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// copyUpForMove brings an entry about to be renamed entirely into the upper dir.
func (fsys *unionFS) copyUpForMove(rel string, e *entry) error {
	if e.isDir() {
		if len(e.layers) == 1 && e.inUpper(fsys.stack.Load()) {
			return nil
		}
		return fsys.copyUpTree(rel)
	}
	_, _, err := fsys.copyUpPath(rel, -1)
	return err
}

// makeOpaqueKeep is makeOpaqueAt for a dir the kernel already knows: no user
// change of its entries may run between saving and putting back its times.
func (fsys *unionFS) makeOpaqueKeep(dfd int, name string, f cow.Format) error {
	fsys.dirMu.Lock()
	defer fsys.dirMu.Unlock()
	return makeOpaqueAt(dfd, name, f)
}

// makeOpaqueAt makes the dir name of dfd opaque, keeping its atime and mtime (the
// marker is not a change the user made).
func makeOpaqueAt(dfd int, name string, f cow.Format) error {
	cfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(cfd)
	if ok, _ := cow.IsOpaqueDir(cfd); ok {
		return nil
	}
	restore, err := cow.KeepTimes(cfd)
	if err != nil {
		return err
	}
	if err := cow.MakeOpaque(cfd, f); err != nil {
		return err
	}
	return restore()
}
