package fs

import (
	"context"
	"errors"
	"os"
	"path"
	"sync/atomic"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// Every mutating operation holds the barrier shared for its whole duration, so Pause
// (which takes it exclusively) waits for in-flight changes and blocks new ones.

func checkName(name string) syscall.Errno {
	if len(name) > 255 {
		return syscall.ENAMETOOLONG
	}
	if cow.IsReservedName(name) {
		return syscall.EINVAL
	}
	return 0
}

// upperDir copies the directory node up and opens it in the upper dir.
func (n *node) upperDir() (*entry, *stack, int, error) {
	e, s, err := n.resolve()
	if err != nil {
		return nil, nil, -1, err
	}
	if !s.writable() {
		return nil, nil, -1, unix.EROFS
	}
	if !e.inUpper(s) {
		e, s, err = n.fs.copyUpPath(n.rel(), -1)
		if err != nil {
			return nil, nil, -1, err
		}
	}
	fd, err := s.openDir(0, n.rel(), unix.O_RDONLY)
	if err != nil {
		return nil, nil, -1, err
	}
	return e, s, fd, nil
}

// clearWhiteout removes a whiteout for name in the upper dir dfd, in either encoding,
// and reports whether there was one.
func clearWhiteout(dfd int, name string) (bool, error) {
	if cow.HasLongWhiteout(name) {
		// No OCI whiteout can exist for such a name; check the overlay one only.
		var st unix.Stat_t
		if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && cow.IsOverlayWhiteout(&st) {
			return true, unix.Unlinkat(dfd, name, 0)
		}
		return false, nil
	}
	var st unix.Stat_t
	removed := false
	if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && cow.IsOverlayWhiteout(&st) {
		if err := unix.Unlinkat(dfd, name, 0); err != nil {
			return false, err
		}
		removed = true
	}
	err := unix.Unlinkat(dfd, cow.WhiteoutName(name), 0)
	if err == nil {
		removed = true
	} else if !errors.Is(err, unix.ENOENT) {
		return false, err
	}
	return removed, nil
}

// clearOCIWhiteout removes an OCI whiteout of name (".wh.<name>") in the upper
// dir dfd, if there is one.
func clearOCIWhiteout(dfd int, name string) error {
	if cow.HasLongWhiteout(name) {
		return nil // no OCI whiteout can exist for such a name
	}
	if err := unix.Unlinkat(dfd, cow.WhiteoutName(name), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// This process's ids, which own the entries it makes.
var procUID, procGID = os.Geteuid(), os.Getegid()

// chownCaller gives a new upper entry to the calling user, like a local filesystem
// does; the group follows a setgid parent. ids shifts the caller's ids (nil: none).
// It reports whether it changed the owner: not for a caller whose ids are this
// process's, who owns the entry already (its group is this process's, or a
// setgid parent's, which the chown would keep).
func chownCaller(ctx context.Context, dfd int, name string, ids *IDMapping) (bool, error) {
	caller, ok := fuse.FromContext(ctx)
	if !ok || !needsChown(caller, ids) {
		return false, nil
	}
	gid := int(caller.Gid)
	var pst unix.Stat_t
	if unix.Fstat(dfd, &pst) == nil && pst.Mode&unix.S_ISGID != 0 {
		gid = -1
	}
	uid, gid := ids.stored(int(caller.Uid), gid)
	return true, unix.Fchownat(dfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// needsChown reports whether an entry this process made for caller must be
// given to the caller: only as root (others cannot give files away), and not
// to a caller whose (stored) ids are this process's.
func needsChown(caller *fuse.Caller, ids *IDMapping) bool {
	if procUID != 0 {
		return false
	}
	uid, gid := ids.stored(int(caller.Uid), int(caller.Gid))
	return uid != procUID || gid != procGID
}

// chownKeepMode is chownCaller for an entry whose mode is already set: the chown
// clears a non-directory's set-id bits, which the caller asked for.
func chownKeepMode(ctx context.Context, dfd int, name string, ids *IDMapping) error {
	if caller, ok := fuse.FromContext(ctx); !ok || !needsChown(caller, ids) {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if changed, err := chownCaller(ctx, dfd, name, ids); err != nil || !changed {
		return err
	}
	if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && st.Mode&unix.S_IFMT != unix.S_IFLNK && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Fchmodat(dfd, name, st.Mode&0o7777, 0)
	}
	return nil
}

// finishNew stats a new upper entry and registers its inode. fresh says this
// request made it (it did not exist before).
func (n *node) finishNew(ctx context.Context, s *stack, dfd int, name string, fresh bool, out *fuse.EntryOut) (*fusefs.Inode, *entry, error) {
	e := &entry{layers: []int{0}}
	var btime uint64 // fresh: nativeGen's generation, from the same statx
	if fresh {
		var err error
		if btime, err = e.statxAt(dfd, name); err != nil {
			return nil, nil, err
		}
	} else if err := e.fstatat(dfd, name); err != nil {
		return nil, nil, err
	}
	if l := s.layers[0]; n.fs.overrideNames != nil && !fresh && l.override != nil {
		st := e.st.full()
		l.overrideAt(&st, dfd, name)
		e.st = attrsOf(&st)
	} else if n.fs.overrideNames != nil {
		st := e.st.full()
		if err := n.fs.overrideNew(ctx, dfd, name, &st); err != nil {
			return nil, nil, err
		}
		e.st = attrsOf(&st)
	}
	if fresh {
		// stack.identify without its look for an origin xattr: only a copy-up
		// writes one, and the entry was just made.
		e.ino, e.gen = s.lowerIno(0, e.st.Dev, e.st.Ino)
		if btime != 0 {
			e.gen = btime
		}
	} else if err := s.identify(dfd, 0, name, e); err != nil {
		return nil, nil, err
	}
	n.fs.fillEntry(e, out)
	return n.newChild(ctx, e, n.fs.epoch.Load(), authoritative, n.fs.stack.Load()), e, nil
}

var _ = (fusefs.NodeCreater)((*node)(nil))

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	if en := checkName(name); en != 0 {
		return nil, nil, 0, en
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	defer n.fs.changed()()
	_, s, dfd, err := n.upperDir()
	if err != nil {
		return nil, nil, 0, errno("create", err)
	}
	defer unix.Close(dfd)
	defer n.fs.entriesChange()()
	if err := clearOCIWhiteout(dfd, name); err != nil {
		return nil, nil, 0, errno("create", err)
	}
	// Not O_DIRECT (see newHandle).
	oflags := int(flags)&^(unix.O_APPEND|fuse.FMODE_EXEC|unix.O_DIRECT) | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if n.fs.noOpen {
		// The fd becomes the node's data fd, which serves every open of it.
		oflags = int(flags)&(unix.O_EXCL|unix.O_TRUNC) | unix.O_RDWR | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC
	}
	perm, acl := n.fs.newMode(ctx, dfd, mode)
	// Exclusive first, to know whether the file is new: the kernel sends CREATE
	// for a name it holds no entry for, but without O_EXCL the name may exist.
	// A whiteout there (an overlay one, at the name itself) fails it too: only
	// then is it looked for, and the open tried again.
	fresh := true
	fd, err := unix.Openat(dfd, name, oflags|unix.O_EXCL, perm)
	if errors.Is(err, unix.EEXIST) {
		if removed, werr := clearWhiteout(dfd, name); werr != nil {
			return nil, nil, 0, errno("create", werr)
		} else if removed {
			fd, err = unix.Openat(dfd, name, oflags|unix.O_EXCL, perm)
		}
	}
	if errors.Is(err, unix.EEXIST) && oflags&unix.O_EXCL == 0 {
		fresh = false
		fd, err = unix.Openat(dfd, name, oflags, perm)
	}
	if err != nil {
		return nil, nil, 0, errno("create", err)
	}
	if fresh {
		// (An existing file keeps its owner and mode, as open(2) leaves them.)
		m, setMode := modeAfterChown(fd, perm, acl)
		chowned, err := chownCaller(ctx, dfd, name, n.fs.ids)
		if err != nil {
			unix.Close(fd)
			return nil, nil, 0, errno("create chown", err)
		}
		// The chmod puts back set-id bits the chown cleared, and sets bits
		// this process's umask kept from the open; neither may be the case.
		if setMode && (chowned || acl || m&^0o777 != 0 || m&n.fs.procUmask != 0) {
			_ = unix.Fchmod(fd, m)
		}
	}

	in, _, err := n.finishNew(ctx, s, dfd, name, fresh, out)
	if err != nil {
		unix.Close(fd)
		return nil, nil, 0, errno("create", err)
	}
	cn := in.Operations().(*node)
	if n.fs.noOpen {
		cn.adoptDataFd(fd, true, true)
		cn.putFd()
		return in, nil, 0, 0
	}
	cn.mu.Lock()
	h, fflags := cn.newHandle(fd, s, oflags|int(flags)&unix.O_DIRECT, true, 0)
	cn.mu.Unlock()
	markUnpriv(ctx, h)
	return in, h, fflags, 0
}

// newEntry is the shared body of Mkdir, Mknod and Symlink. Under the write barrier,
// in the upper copy of n's directory, it clears any whiteout of name, calls create
// (which makes the entry in dfd), gives the entry the caller's owner, runs after (if
// set) and looks the new entry up. op names the operation in errors.
func (n *node) newEntry(ctx context.Context, op, name string, out *fuse.EntryOut,
	create func(dfd int) error, after func(pe *entry, s *stack, dfd int) error) (*fusefs.Inode, syscall.Errno) {
	if en := checkName(name); en != 0 {
		return nil, en
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	defer n.fs.changed()()
	pe, s, dfd, err := n.upperDir()
	if err != nil {
		return nil, errno(op, err)
	}
	defer unix.Close(dfd)
	defer n.fs.entriesChange()()
	if _, err := clearWhiteout(dfd, name); err != nil {
		return nil, errno(op, err)
	}
	if err := create(dfd); err != nil {
		return nil, errno(op, err)
	}
	if err := chownKeepMode(ctx, dfd, name, n.fs.ids); err != nil {
		return nil, errno(op+" chown", err)
	}
	if after != nil {
		if err := after(pe, s, dfd); err != nil {
			return nil, errno(op, err)
		}
	}
	in, _, err := n.finishNew(ctx, s, dfd, name, true, out)
	return in, errno(op, err)
}

var _ = (fusefs.NodeMkdirer)((*node)(nil))

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return n.newEntry(ctx, "mkdir", name, out, func(dfd int) error {
		perm, acl := n.fs.newMode(ctx, dfd, mode)
		if err := unix.Mkdirat(dfd, name, perm); err != nil {
			return err
		}
		if acl {
			return nil // the upper filesystem set it, a setgid parent's bit too
		}
		m := perm // past this process's umask
		var pst unix.Stat_t
		if unix.Fstat(dfd, &pst) == nil && pst.Mode&unix.S_ISGID != 0 {
			m |= unix.S_ISGID // a setgid parent's subdirs are setgid too
		}
		_ = unix.Fchmodat(dfd, name, m, 0)
		return nil
	}, func(pe *entry, s *stack, dfd int) error {
		if s.lowerHas(pe.layers, n.rel(), name) {
			return makeOpaqueAt(dfd, name, s.format) // hide the deleted lower dir's entries
		}
		return nil
	})
}

var _ = (fusefs.NodeMknoder)((*node)(nil))

func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if en := checkName(name); en != 0 {
		return nil, en
	}
	if mode&unix.S_IFMT == unix.S_IFCHR && dev == 0 {
		return nil, syscall.EPERM // would read back as a whiteout
	}
	return n.newEntry(ctx, "mknod", name, out, func(dfd int) error {
		perm, acl := n.fs.newMode(ctx, dfd, mode)
		if err := unix.Mknodat(dfd, name, mode&unix.S_IFMT|perm, int(dev)); err != nil {
			return err
		}
		if !acl {
			_ = unix.Fchmodat(dfd, name, perm, 0) // past this process's umask
		}
		return nil
	}, nil)
}

var _ = (fusefs.NodeSymlinker)((*node)(nil))

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	in, en := n.newEntry(ctx, "symlink", name, out, func(dfd int) error {
		return unix.Symlinkat(target, dfd, name)
	}, nil)
	if en != 0 {
		return nil, en
	}
	cn := in.Operations().(*node)
	cn.mu.Lock()
	cn.fst().link = []byte(target)
	cn.mu.Unlock()
	return in, 0
}

var _ = (fusefs.NodeLinker)((*node)(nil))

func (n *node) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if en := checkName(name); en != 0 {
		return nil, en
	}
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	defer n.fs.changed()()
	var te *entry
	if _, p := tn.Parent(); p == nil {
		// An unnamed file (O_TMPFILE, or unlinked while open) linked back in
		// through its fd.
		// Its upper file (a copy if it was a layer's): a link to a layer's file
		// would let writes through the new name change the layer.
		fd, err := tn.unlinkedUpperFd(nil)
		if err != nil {
			return nil, errno("link", err)
		}
		_, _, dfd, err := n.upperDir()
		if err != nil {
			return nil, errno("link", err)
		}
		defer unix.Close(dfd)
		defer n.fs.entriesChange()()
		if _, err := clearWhiteout(dfd, name); err != nil {
			return nil, errno("link", err)
		}
		if err := unix.Linkat(unix.AT_FDCWD, procFd(fd), dfd, name, unix.AT_SYMLINK_FOLLOW); err != nil {
			return nil, errno("link", err)
		}
		tn.mu.Lock()
		te = tn.ent
		tn.mu.Unlock()
		if te == nil {
			return nil, syscall.ENOENT
		}
		e := &entry{layers: []int{0}, ino: te.ino, gen: te.gen}
		if err := e.fstatat(dfd, name); err != nil {
			return nil, errno("link", err)
		}
		n.fs.upperOverrideAt(e, dfd, name)
		n.fs.fillEntry(e, out)
		return n.newChild(ctx, e, n.fs.epoch.Load(), authoritative, n.fs.stack.Load()), 0
	}
	trel := tn.rel()
	if _, _, err := n.fs.copyUpPath(trel, -1); err != nil {
		return nil, errno("link", err)
	}
	_, s, dfd, err := n.upperDir()
	if err != nil {
		return nil, errno("link", err)
	}
	defer unix.Close(dfd)
	defer n.fs.entriesChange()()
	if _, err := clearWhiteout(dfd, name); err != nil {
		return nil, errno("link", err)
	}
	if err := linkUpper(s, trel, path.Join(n.rel(), name)); err != nil {
		return nil, errno("link", err)
	}
	te, _, err = tn.resolve()
	if err != nil {
		return nil, errno("link", err)
	}
	e := &entry{layers: []int{0}, ino: te.ino, gen: te.gen}
	if err := e.fstatat(dfd, name); err != nil {
		return nil, errno("link", err)
	}
	n.fs.upperOverrideAt(e, dfd, name)
	n.fs.fillEntry(e, out)
	return n.newChild(ctx, e, n.fs.epoch.Load(), authoritative, n.fs.stack.Load()), 0
}

var _ = (fusefs.NodeUnlinker)((*node)(nil))

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, false)
}

var _ = (fusefs.NodeRmdirer)((*node)(nil))

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, true)
}

func (n *node) remove(name string, dir bool) syscall.Errno {
	if len(name) > 255 {
		return syscall.ENAMETOOLONG
	}
	for attempt := 0; attempt < 4; attempt++ {
		if en, again := n.removeOnce(name, dir); !again {
			return en
		}
	}
	return syscall.EAGAIN // a name copied up again and again: cannot happen
}

// removeHook, when set (tests), runs in a remove between its lookup of the name and
// taking the directory's entries (entriesChange).
var removeHook atomic.Pointer[func()]

// removeOnce is one try of remove; again reports that a copy-up placed the entry in
// the upper dir after the lookup, so that the remove must look again.
func (n *node) removeOnce(name string, dir bool) (en syscall.Errno, again bool) {
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	defer n.fs.changed()()
	pe, s, err := n.resolve()
	if err != nil {
		return errno("remove", err), false
	}
	if !s.writable() {
		return syscall.EROFS, false
	}
	rel := n.rel()
	// The parent open once in each of its layers, for the lookup, the whiteout
	// question and, when the parent is in the upper dir already, the removal.
	dirs, err := s.openDirFds(pe.layers, rel)
	if err != nil {
		return errno("remove", err), false
	}
	defer dirs.close()
	ce, err := s.lookup(dirs, name)
	if err != nil {
		return errno("remove", err), false
	}
	if dir && !ce.isDir() {
		return syscall.ENOTDIR, false
	}
	if !dir && ce.isDir() {
		return syscall.EISDIR, false
	}
	crel := path.Join(rel, name)
	if dir {
		ents, err := s.readDir(ce.layers, crel)
		if err != nil {
			return errno("rmdir", err), false
		}
		if len(ents) > 0 {
			return syscall.ENOTEMPTY, false
		}
	}
	whiteout := s.lowerHasIn(dirs, name)
	dfd := dirs.upperFd(s)
	if dfd < 0 {
		_, s, dfd, err = n.upperDir()
		if err != nil {
			return errno("remove", err), false
		}
		defer unix.Close(dfd)
	}
	if h := removeHook.Load(); h != nil {
		(*h)()
	}
	defer n.fs.entriesChange()()
	if !ce.inUpper(s) {
		// A copy-up may have placed the entry since the lookup (it places holding
		// entriesChange's lock exclusively, so not from here on): a whiteout alone
		// would then leave it visible (OCI) or fail (overlay). Look again.
		var st unix.Stat_t
		if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return 0, true
		}
	}
	if ch := n.GetChild(name); ch != nil {
		ch.Operations().(*node).pinForRemovalIn(dirs, ce, s, name)
	}
	if ce.inUpper(s) {
		if dir {
			if err := emptyHidden(dfd, name); err != nil {
				return errno("rmdir", err), false
			}
			err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
		} else {
			err = unix.Unlinkat(dfd, name, 0)
		}
		if err != nil {
			return errno("remove", err), false
		}
	}
	if whiteout {
		if err := cow.MakeWhiteout(dfd, name, s.format); err != nil {
			return errno("whiteout", err), false
		}
	}
	if ch := n.GetChild(name); ch != nil {
		ch.Operations().(*node).invalidateEntry()
	}
	if dir {
		n.fs.epoch.Add(1)
	}
	return 0, false
}

// emptyHidden removes the markers and whiteouts left in an upper dir whose merged
// view is empty, so that it can be removed.
func emptyHidden(dfd int, name string) error {
	cfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(cfd)
	ents, err := getdents(cfd)
	if err != nil {
		return err
	}
	for _, d := range ents {
		if d.name == "." || d.name == ".." {
			continue
		}
		if err := unix.Unlinkat(cfd, d.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

func (n *node) copyUpSelf() error {
	e, s, err := n.resolve()
	if err != nil {
		return err
	}
	if !s.writable() {
		return unix.EROFS
	}
	if e.inUpper(s) {
		return nil
	}
	_, _, err = n.fs.copyUpPath(n.rel(), -1)
	return err
}

var _ = (fusefs.NodeTmpfiler)((*node)(nil))

// Tmpfile makes an unnamed file in the directory's upper copy (open(O_TMPFILE)); it
// gets a name if the caller links it in through /proc/self/fd.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	_, s, dfd, err := n.upperDir()
	if err != nil {
		return nil, nil, 0, errno("tmpfile", err)
	}
	defer unix.Close(dfd)
	acc := int(flags) & unix.O_ACCMODE
	if acc == unix.O_RDONLY || n.fs.noOpen {
		acc = unix.O_RDWR // no-open: the node's data fd, for every access
	}
	perm, acl := n.fs.newMode(ctx, dfd, mode)
	fd, err := unix.Openat(dfd, ".", acc|unix.O_TMPFILE|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, nil, 0, errno("tmpfile", err)
	}
	m, setMode := modeAfterChown(fd, perm, acl)
	if caller, ok := fuse.FromContext(ctx); ok && os.Geteuid() == 0 {
		gid := int(caller.Gid)
		var pst unix.Stat_t
		if unix.Fstat(dfd, &pst) == nil && pst.Mode&unix.S_ISGID != 0 {
			gid = -1 // a setgid dir's group, which the file got
		}
		uid, gid := n.fs.ids.stored(int(caller.Uid), gid)
		_ = unix.Fchown(fd, uid, gid)
	}
	if setMode {
		_ = unix.Fchmod(fd, m) // after the chown, which clears set-id bits
	}
	e := &entry{layers: []int{0}, gen: 1}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, 0, errno("tmpfile", err)
	}
	e.st = attrsOf(&st)
	e.ino = s.freeIno(s.mapIno(e.st.Dev, e.st.Ino))
	var sx unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &sx) == nil && sx.Mask&unix.STATX_BTIME != 0 {
		e.gen = uint64(sx.Btime.Sec)*1e9 + uint64(sx.Btime.Nsec) | 2
	}
	n.fs.fillEntry(e, out)
	ch := n.fs.newNode()
	ch.storeEntry(e, n.fs.epoch.Load(), authoritative, n.fs.stack.Load())
	in := n.NewInode(ctx, ch, fusefs.StableAttr{Mode: unix.S_IFREG, Ino: e.ino, Gen: e.gen})
	cn := in.Operations().(*node)
	cn.unnamed.Store(true)
	if n.fs.noOpen {
		cn.keepAdopted(fd, true, true) // it has no name
		return in, nil, 0, 0
	}
	cn.mu.Lock()
	h, fflags := cn.newHandle(fd, s, acc, true, 0)
	cn.mu.Unlock()
	markUnpriv(ctx, h)
	return in, h, fflags, 0
}
