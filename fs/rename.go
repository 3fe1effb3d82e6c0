package fs

import (
	"context"
	"errors"
	"path"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
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
	npe, _, err := np.resolve()
	if err != nil {
		return errno("rename", err)
	}
	rel, nrel := n.rel(), np.rel()
	se, err := s.lookupIn(pe.layers, rel, name)
	if err != nil {
		return errno("rename", err)
	}
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
	unlock := n.fs.entriesChange()
	if !exchange {
		if _, err := clearWhiteout(ddfd, newName); err != nil {
			unlock()
			return errno("rename", err)
		}
		if de != nil && de.isDir() {
			var st unix.Stat_t
			if unix.Fstatat(ddfd, newName, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				if err := emptyHidden(ddfd, newName); err != nil {
					unlock()
					return errno("rename", err)
				}
			}
		}
	}
	if dn := np.GetChild(newName); dn != nil && de != nil && !exchange {
		dn.Operations().(*node).pinForRemoval()
	}
	if sn := n.GetChild(name); sn != nil && se.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		sn.Operations().(*node).pinForRemoval() // its path is stale until go-fuse moves it
	}
	if err := unix.Renameat2(sdfd, name, ddfd, newName, uint(flags)); err != nil {
		unlock()
		return errno("rename", err)
	}
	if !exchange && s.lowerHas(pe.layers, rel, name) {
		if err := cow.MakeWhiteout(sdfd, name, s.format); err != nil {
			unlock()
			return errno("rename whiteout", err)
		}
	}
	unlock()
	// Marking a moved dir opaque is not a change of it (its times are kept).
	if se.isDir() && s.lowerHas(npe.layers, nrel, newName) {
		if err := n.fs.makeOpaqueKeep(ddfd, newName, s.format); err != nil {
			return errno("rename opaque", err)
		}
	}
	if exchange && de.isDir() && s.lowerHas(pe.layers, rel, name) {
		if err := n.fs.makeOpaqueKeep(sdfd, name, s.format); err != nil {
			return errno("rename opaque", err)
		}
	}
	if dn := np.GetChild(newName); dn != nil && !exchange {
		dn.Operations().(*node).invalidateEntry()
	}
	n.fs.epoch.Add(1)
	return 0
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
