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
		if lf, _, ok := h.upperFile(); ok {
			if en := lf.Setattr(ctx, in, out); en != 0 {
				return en
			}
			out.Ino = n.StableAttr().Ino
			return 0
		}
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
		if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
			// Its name is gone: change the file through an fd, never one of a
			// read-only layer's files.
			fd, uerr := n.unlinkedUpperFd(f)
			if uerr != nil {
				return errno("setattr", uerr)
			}
			return setattrFd(fd, in, out, n.fs.ids)
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
	if m, ok := in.GetMode(); ok && !isLink {
		if err := unix.Chmod(p, m&0o7777); err != nil {
			return errno("chmod", err)
		}
	}
	if su, sg, ok := setattrOwner(in); ok {
		su, sg = n.fs.ids.stored(su, sg)
		if err := unix.Fchownat(fd, "", su, sg, unix.AT_EMPTY_PATH); err != nil {
			return errno("chown", err)
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
	ne := *e
	ne.st = st
	n.setEntry(&ne)
	out.FromStat(toSyscallStat(n.fs.ids.shown(ne.stat(&st))))
	out.Ino = n.StableAttr().Ino
	out.SetTimeout(longTimeout * 1e9)
	return 0
}

var _ = (fusefs.NodeSetxattrer)((*node)(nil))

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if cow.IsPrivateXattr(attr) {
		return syscall.EPERM
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	if err := n.copyUpSelf(); err != nil {
		return errno("setxattr", err)
	}
	if n.fs.ids != nil {
		data = slices.Clone(data)
		n.fs.ids.mapACL(attr, data, false)
	}
	err := n.withPathFd(func(p string) error { return unix.Setxattr(p, attr, data, int(flags)) })
	if errors.Is(err, errSymlinkXattr) {
		err = unix.EPERM
	}
	return errno("setxattr", err)
}

var _ = (fusefs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if cow.IsPrivateXattr(attr) {
		return syscall.EPERM
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	// Refuse early when the attribute does not exist, without copying up.
	var buf [1]byte
	if _, en := n.Getxattr(ctx, attr, buf[:0]); en != 0 {
		return en
	}
	if err := n.copyUpSelf(); err != nil {
		return errno("removexattr", err)
	}
	err := n.withPathFd(func(p string) error { return unix.Removexattr(p, attr) })
	if errors.Is(err, errSymlinkXattr) {
		err = unix.ENODATA
	}
	return errno("removexattr", err)
}

var _ = (fusefs.NodeGetxattrer)((*node)(nil))

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if cow.IsPrivateXattr(attr) {
		return 0, syscall.ENODATA
	}
	var sz int
	err := n.withPathFd(func(p string) error {
		var err error
		sz, err = unix.Getxattr(p, attr, dest)
		return err
	})
	if errors.Is(err, errSymlinkXattr) {
		return 0, syscall.ENODATA
	}
	if err == nil && sz <= len(dest) {
		n.fs.ids.mapACL(attr, dest[:sz], true)
	}
	return uint32(sz), errno("getxattr", err)
}

var _ = (fusefs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var names []byte
	err := n.withPathFd(func(p string) error {
		sz, err := unix.Listxattr(p, nil)
		if err != nil {
			return err
		}
		buf := make([]byte, sz)
		sz, err = unix.Listxattr(p, buf)
		if err != nil {
			return err
		}
		for _, nm := range splitNul(buf[:sz]) {
			if !cow.IsPrivateXattr(nm) {
				names = append(names, nm...)
				names = append(names, 0)
			}
		}
		return nil
	})
	if errors.Is(err, errSymlinkXattr) {
		return 0, 0
	}
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

var errSymlinkXattr = errors.New("xattrs of symlinks are not supported")

// withPathFd runs fn with a /proc/self/fd path to the node's top-layer inode, opened
// without following symlinks.
func (n *node) withPathFd(fn func(p string) error) error {
	e, s, err := n.resolve()
	if err != nil {
		return err
	}
	var fd int
	if n == n.fs.root {
		fd, err = s.openDir(e.layers[0], "", unix.O_PATH)
	} else {
		dir, name := path.Split(n.rel())
		var dfd int
		dfd, err = s.openDir(e.layers[0], dir, unix.O_PATH)
		if err != nil {
			return err
		}
		fd, err = unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(dfd)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if e.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// xattrs of symlinks are rare and user.* ones impossible; through the
		// magic link we would reach the link's target, so refuse.
		return errSymlinkXattr
	}
	return fn(procFd(fd))
}
