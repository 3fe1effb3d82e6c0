package fs

import (
	"context"
	"errors"
	"path"
	"slices"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

var _ = (fusefs.NodeSetattrer)((*node)(nil))

func (n *node) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	limit := int64(-1)
	size, hasSize := in.GetSize()
	if hasSize {
		limit = int64(size)
	}
	if h := asHandle(f); h != nil {
		if lf, fd, ok := h.upperFile(); ok {
			if n.fs.xperm != 0 {
				// The owner and mode go to the override xattr (xperm.go).
				if en := n.fs.setattrFd(fd, in, out); en != 0 {
					return en
				}
				out.Ino = n.StableAttr().Ino
				return 0
			}
			if en := lf.Setattr(ctx, in, out); en != 0 {
				return en
			}
			out.Ino = n.StableAttr().Ino
			return 0
		}
	}
	if fd, ok := n.upperDataFd(); ok {
		defer n.putFd()
		st, en := n.fs.setattrFdStat(fd, in, out)
		if en != 0 {
			return en
		}
		if hasSize {
			n.dataChanged(0, 0)
		}
		n.refreshEntry(&st)
		out.Ino = n.StableAttr().Ino
		out.SetTimeout(longTimeout * 1e9)
		return 0
	}
	var e *entry
	var s *stack
	var err error
	if n == n.fs.root {
		e, s, err = n.resolve()
		if err == nil && !s.writable() {
			err = unix.EROFS
		}
	} else if e, s, err = n.resolve(); err == nil && (!s.writable() || !e.inUpper(s)) {
		e, s, err = n.fs.copyUpPath(n.rel(), limit)
	}
	if err != nil {
		if nameGone(err) {
			// Its name is gone: change the file through an fd, never one of a
			// read-only layer's files.
			fd, uerr := n.unlinkedUpperFd(f)
			if uerr != nil {
				return errno("setattr", uerr)
			}
			return n.fs.setattrFd(fd, in, out)
		}
		return errno("setattr", err)
	}
	dir, name := path.Split(n.rel())
	dfd, err := s.openDir(0, dir, unix.O_PATH)
	if err != nil {
		return errno("setattr", err)
	}
	defer unix.Close(dfd)
	if name == "" {
		name = "."
	}
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return errno("setattr", err)
	}
	defer unix.Close(fd)
	p := procFd(fd)
	isLink := e.st.Mode&unix.S_IFMT == unix.S_IFLNK
	if n.fs.xperm != 0 && overridable(e.st.Mode) {
		// The owner and mode go to the override xattr (xperm.go).
		if _, err := n.fs.overrideSetattr(fd, in); err != nil {
			return errno("setattr override", err)
		}
	} else {
		if m, ok := in.GetMode(); ok && !isLink {
			// cow.Chmod: no chmod-around of this mount's own lookups may undo it.
			if err := cow.Chmod(fd, m&0o7777); err != nil {
				return errno("chmod", err)
			}
		}
		if su, sg, ok := setattrOwner(in); ok {
			su, sg = n.fs.ids.stored(su, sg)
			if err := unix.Fchownat(fd, "", su, sg, unix.AT_EMPTY_PATH); err != nil {
				return errno("chown", err)
			}
		}
	}
	if hasSize {
		if err := unix.Truncate(p, int64(size)); err != nil {
			return errno("truncate", err)
		}
		n.dataChanged(0, 0)
	}
	if ts, ok := setattrTimes(in); ok {
		if err := unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return errno("utimens", err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return errno("setattr", err)
	}
	cow.ShownMode(&st)
	if l := s.layers[e.layers[0]]; l.override != nil {
		l.overrideFd(&st, fd)
	}
	ne := *e
	ne.st = attrsOf(&st)
	n.setEntry(&ne)
	out.FromStat(toSyscallStat(n.fs.ids.shown(ne.stat(&st))))
	out.Ino = n.StableAttr().Ino
	out.SetTimeout(longTimeout * 1e9)
	return 0
}

var _ = (fusefs.NodeSetxattrer)((*node)(nil))

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.fs.noXattrs {
		return syscall.ENOSYS
	}
	if n.fs.privateXattr(attr) {
		return syscall.EPERM
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	if err := n.copyUpSelf(); err != nil && !nameGone(err) {
		return errno("setxattr", err)
	}
	if n.fs.ids != nil {
		data = slices.Clone(data)
		n.fs.ids.mapACL(attr, data, false)
	}
	err := n.withXattrs(true, func(x xattrPath) error { return x.set(attr, data, int(flags)) })
	return errno("setxattr", err)
}

var _ = (fusefs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.fs.noXattrs {
		return syscall.ENOSYS
	}
	if n.fs.privateXattr(attr) {
		return syscall.EPERM
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	// Refuse early when the attribute does not exist, without copying up.
	var buf [1]byte
	if _, en := n.Getxattr(ctx, attr, buf[:0]); en != 0 {
		return en
	}
	if err := n.copyUpSelf(); err != nil && !nameGone(err) {
		return errno("removexattr", err)
	}
	err := n.withXattrs(true, func(x xattrPath) error { return x.remove(attr) })
	return errno("removexattr", err)
}

var _ = (fusefs.NodeGetxattrer)((*node)(nil))

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.fs.noXattrs {
		return 0, syscall.ENOSYS
	}
	if n.fs.privateXattr(attr) {
		return 0, syscall.ENODATA
	}
	var sz int
	err := n.withXattrs(false, func(x xattrPath) error {
		var err error
		sz, err = x.get(attr, dest)
		return err
	})
	if err == nil && sz <= len(dest) {
		n.fs.ids.mapACL(attr, dest[:sz], true)
	}
	return uint32(sz), errno("getxattr", err)
}

var _ = (fusefs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if n.fs.noXattrs {
		return 0, syscall.ENOSYS
	}
	var names []byte
	err := n.withXattrs(false, func(x xattrPath) error {
		sz, err := x.list(nil)
		if err != nil {
			return err
		}
		buf := make([]byte, sz)
		sz, err = x.list(buf)
		if err != nil {
			return err
		}
		for _, nm := range splitNul(buf[:sz]) {
			if !n.fs.privateXattr(nm) {
				names = append(names, nm...)
				names = append(names, 0)
			}
		}
		return nil
	})
	if err != nil {
		return 0, errno("listxattr", err)
	}
	if len(dest) == 0 {
		return uint32(len(names)), 0
	}
	if len(names) > len(dest) {
		return uint32(len(names)), syscall.ERANGE
	}
	return uint32(copy(dest, names)), 0
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// nameGone reports whether err is a resolution's for a node without a name
// (ESTALE, ENOENT): one unlinked while open, or made by O_TMPFILE.
func nameGone(err error) bool {
	return errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT)
}

// xattrPath reaches the xattrs of one inode of a layer or the upper dir by a
// /proc/self/fd path that follows no symlink of the layers.
type xattrPath struct {
	p string
	// link: p is the symlink's name below its dir's /proc/self/fd link, for the
	// l*xattr calls, which look up that one name in that dir and do not follow
	// it. Else p is the /proc/self/fd link of an O_PATH fd of a file or dir,
	// for the plain calls (the f*xattr ones refuse O_PATH fds): they go to that
	// inode through the magic link, which the l* calls would not follow.
	link bool
	// fd, if set, is an fd (not O_PATH) of the file, for the f*xattr calls,
	// which skip the walk through procfs; p is unset then.
	fd    int
	hasFd bool
}

func (x xattrPath) get(k string, dest []byte) (int, error) {
	switch {
	case x.hasFd:
		return unix.Fgetxattr(x.fd, k, dest)
	case x.link:
		return unix.Lgetxattr(x.p, k, dest)
	}
	return unix.Getxattr(x.p, k, dest)
}

func (x xattrPath) list(dest []byte) (int, error) {
	switch {
	case x.hasFd:
		return unix.Flistxattr(x.fd, dest)
	case x.link:
		return unix.Llistxattr(x.p, dest)
	}
	return unix.Listxattr(x.p, dest)
}

func (x xattrPath) set(k string, v []byte, flags int) error {
	switch {
	case x.hasFd:
		return unix.Fsetxattr(x.fd, k, v, flags)
	case x.link:
		return unix.Lsetxattr(x.p, k, v, flags)
	}
	return unix.Setxattr(x.p, k, v, flags)
}

func (x xattrPath) remove(k string) error {
	switch {
	case x.hasFd:
		return unix.Fremovexattr(x.fd, k)
	case x.link:
		return unix.Lremovexattr(x.p, k)
	}
	return unix.Removexattr(x.p, k)
}

// withXattrs runs fn with the xattrs of the node's top-layer inode, a symlink's
// own (trusted.* and security.* ones; Linux refuses user.* on symlinks before
// asking us), never its target's: the calls follow no symlink, so they stay in the
// layers and the upper dir. A node whose name is gone (unlinked while open,
// O_TMPFILE) goes by its fd: for a change (write), its upper file's.
func (n *node) withXattrs(write bool, fn func(x xattrPath) error) error {
	if fd, ok := n.upperDataFd(); ok {
		defer n.putFd()
		return fn(xattrPath{fd: fd, hasFd: true})
	}
	e, s, err := n.resolve()
	if nameGone(err) {
		var fd int
		if write {
			fd, err = n.unlinkedUpperFd(nil)
		} else if fd, _ = n.unlinkedFd(nil); fd < 0 {
			err = unix.ENOENT
		} else {
			err = nil
		}
		if err != nil {
			return err
		}
		return fn(xattrPath{p: procFd(fd)})
	}
	if err != nil {
		return err
	}
	if n == n.fs.root {
		fd, err := s.openDir(e.layers[0], "", unix.O_PATH)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return fn(xattrPath{p: procFd(fd)})
	}
	dir, name := path.Split(n.rel())
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	fd, st, err := openPath(dfd, name)
	if errors.Is(err, unix.EACCES) {
		// Unprivileged: the layer's copy of the dir may deny its owner
		// search (see lookupOne).
		err = cow.WithDirAccess(dfd, func() (err error) {
			fd, st, err = openPath(dfd, name)
			return err
		})
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// The inode's own type, not the cached entry's: the name may have been
	// replaced meanwhile. A symlink goes by its name with the l* calls, which do
	// not follow it by definition (the plain calls on its fd's /proc link rest on
	// how procfs ends a magic link at a symlink), so they search the dir too.
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		x := xattrPath{p: procFd(dfd) + "/" + name, link: true}
		err := fn(x)
		if errors.Is(err, unix.EACCES) && !write {
			err = cow.WithDirAccess(dfd, func() error { return fn(x) })
		}
		return err
	}
	return fn(xattrPath{p: procFd(fd)})
}
