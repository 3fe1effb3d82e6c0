package fs

import (
	"context"
	"errors"
	"path"
	"syscall"
	"time"
	"unsafe"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// No-open mode (Options.Passthrough unset): Open answers ENOSYS once, after which the
// kernel never sends OPEN, FLUSH or RELEASE for regular files (FUSE no_open). Opening
// a cached file then costs no round trip, and its pages stay cached across opens
// (the kernel defaults no-open files to FOPEN_KEEP_CACHE). READ and WRITE arrive
// without a file handle and are served from one fd per node:
//   - reads use the node's current file (lower or upper), opened on first use;
//   - the first WRITE (or fallocate) copies the file up and switches the node to a
//     read-write fd of the upper copy; O_TRUNC arrives as a SETATTR of the size;
//   - before a name is unlinked or renamed over, its node takes an fd to the file,
//     so files still open in the kernel keep working through it (nlink 0);
//   - locks are left to the kernel (it keeps POSIX and flock locks itself when the
//     server does not take them), which is right for a single mount.
// Files created here (CREATE, O_TMPFILE) come without a handle too: their fd
// becomes the node's data fd. The kernel sends no RELEASE for any file once
// no_open is set, created ones included, so a handle's fd would stay open until
// the unmount, and the space of a file removed after it with it. (A passthrough
// handle is refused as well: Linux 6.18 then fails every other open of the file
// with EIO while it lives; no-open files cannot join a passthrough inode.)

// dataFd returns an fd for the node's data. write copies the node up first and
// returns a read-write fd of the upper copy. The fd stays owned by the node; the
// caller uses it until it calls n.putFd, which it must.
func (n *node) dataFd(write bool) (int, error) {
	n.mu.Lock()
	if n.fst().dfd >= 0 && (!write || n.fst().dfdUpper) {
		fd := n.fst().dfd
		n.fst().fdRefs++
		n.mu.Unlock()
		dataFds.touch(n)
		return fd, nil
	}
	n.mu.Unlock()
	for attempt := 0; ; attempt++ {
		fd, raced, err := n.openDataFd(write)
		if !raced || attempt == 4 {
			return fd, err
		}
		n.invalidateEntry()
	}
}

// openDataFd opens the node's file by its path and makes it the data fd, for a
// use that ends with n.putFd. raced reports that the path named another file by
// the time it was opened: a rename moves entries on disk before go-fuse moves its
// nodes, and reads do not wait for renames, so a RENAME_EXCHANGE in between gave
// a node the other file's fd, and its reads and writes went there. The fd budget
// (fdcache.go) reopens files often, so this is checked on every open.
func (n *node) openDataFd(write bool) (fd int, raced bool, err error) {
	e, s, err := n.resolve()
	if err != nil {
		if write && (errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT)) {
			// Its name is gone: the fd is kept, but counted as in use.
			fd, err := n.unlinkedUpperFd(nil)
			if err == nil {
				n.mu.Lock()
				n.fst().fdRefs++
				n.mu.Unlock()
			}
			return fd, false, err
		}
		return -1, false, err
	}
	if write && !e.inUpper(s) {
		if e, s, err = n.fs.copyUpPath(n.rel(), -1); err != nil {
			return -1, false, err
		}
	}
	rel := n.rel()
	fd, ok, err := s.openLowerFile(e.layers[0], rel)
	if !ok {
		fd, err = openFileAt(s, e, rel)
	}
	if err != nil {
		return -1, false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != e.st.Dev || st.Ino != e.st.Ino {
		unix.Close(fd)
		return -1, true, unix.ESTALE
	}
	if fd = n.adoptDataFdOf(fd, s, e.inUpper(s), write); fd < 0 {
		return -1, true, unix.ESTALE
	}
	return fd, false, nil
}

// openFileAt opens rel, the file of entry e of stack s, through its dir: read-
// write in the upper dir, else read-only.
func openFileAt(s *stack, e *entry, rel string) (int, error) {
	dir, name := path.Split(rel)
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dfd)
	flags := unix.O_RDONLY
	if e.inUpper(s) {
		flags = unix.O_RDWR
	}
	return openFile(dfd, name, flags, e.inUpper(s))
}

// adoptDataFd makes fd, a file of the node's opened in the upper dir or not, its
// data fd, unless a request that opened one too won; it returns the node's fd,
// for a use that ends with n.putFd.
func (n *node) adoptDataFd(fd int, upper, write bool) int {
	return n.adoptDataFdOf(fd, nil, upper, write)
}

// adoptDataFdOf is adoptDataFd for fd, a file of stack s (nil: the current one,
// which the caller's barrier keeps): if a Rebase replaced s meanwhile, fd is
// closed and -1 returned. Reads take no barrier: one could open a file of the
// old upper dir just before a Rebase and adopt it after the Rebase's taintOpen
// had passed the node, and then every later change to the file went to the old
// upper, which commit --rebase deletes (review rev21-diff). The Rebase stores
// the new stack before taintOpen takes each node's mu, under which this checks.
func (n *node) adoptDataFdOf(fd int, s *stack, upper, write bool) int {
	defer dataFds.touch(n)
	n.mu.Lock()
	defer n.mu.Unlock()
	if s != nil && n.fs.stack.Load() != s {
		unix.Close(fd)
		return -1
	}
	n.fst().fdRefs++
	if n.fst().dfd >= 0 && (!write || n.fst().dfdUpper) {
		unix.Close(fd) // another request won
		return n.fst().dfd
	}
	if n.fst().dfd >= 0 {
		n.fst().oldFds = append(n.fst().oldFds, n.fst().dfd) // may still be in use by a read
	}
	n.fst().dfd, n.fst().dfdUpper = fd, upper
	return fd
}

// keepAdopted is adoptDataFd for an fd that is all the file has left (an
// O_TMPFILE file, an unnamed copy): kept until the kernel forgets the node.
func (n *node) keepAdopted(fd int, upper, write bool) int {
	fd = n.adoptDataFd(fd, upper, write)
	n.mu.Lock()
	n.keepDataFd()
	n.fst().fdRefs--
	n.mu.Unlock()
	return fd
}

// pinForRemovalIn is pinForRemoval for a node whose entry e was just looked up as
// name in the directory open as dirs: a regular file in no-open mode is opened
// through the open dir, without resolving its path again.
func (n *node) pinForRemovalIn(dirs *dirFds, e *entry, s *stack, name string) {
	if !n.fs.noOpen || n.StableAttr().Mode&unix.S_IFMT != unix.S_IFREG || !e.isReg() {
		n.pinForRemoval()
		return
	}
	upper := e.inUpper(s)
	n.mu.Lock()
	f := n.fstIf()
	has := f.dfd >= 0 && (!upper || f.dfdUpper)
	if has {
		n.pinned() // the name is going
	}
	n.mu.Unlock()
	if has {
		return
	}
	dfd := dirs.fdOf(e.layers[0])
	if dfd < 0 {
		n.pinForRemoval()
		return
	}
	flags := unix.O_RDONLY
	if upper {
		flags = unix.O_RDWR
	}
	fd, err := openFile(dfd, name, flags, upper)
	if err != nil {
		return
	}
	n.keepAdopted(fd, upper, upper)
	n.mu.Lock()
	n.pinned()
	n.mu.Unlock()
}

// pinned marks the node's data fd or pin as taken because a name is going: it is
// kept while the node has no other name (fdcache.go's releaseNamed); n.mu is held.
func (n *node) pinned() {
	n.keepDataFd()
	n.fst().namedPin = true
	n.fst().relTries = 0
}

// dropLowerFd forgets a read fd of the lower file after copy-up; n.mu is held.
func (n *node) dropLowerFd() {
	if f := n.file.Load(); f != nil && f.dfd >= 0 && !f.dfdUpper {
		f.oldFds = append(f.oldFds, f.dfd)
		f.dfd = -1
	}
}

// pinForRemoval gives the node of an entry about to lose its name an fd to it, for
// opens the kernel may still hold: a regular file's data fd in no-open mode, else an
// O_PATH pin (a fifo, socket or device node too: its attributes can still change
// through an open fd, see unlinkedUpperFd); a symlink keeps its target.
func (n *node) pinForRemoval() {
	typ := n.StableAttr().Mode & unix.S_IFMT
	if typ == unix.S_IFLNK {
		if n.cachedLink() == nil {
			if l, err := n.readLink(); err == nil {
				n.mu.Lock()
				n.fst().link = l
				n.mu.Unlock()
			}
		}
		return
	}
	e, s, err := n.resolve()
	if err != nil {
		return
	}
	if n.fs.noOpen && typ == unix.S_IFREG {
		if _, err := n.dataFd(e.inUpper(s)); err == nil {
			n.mu.Lock()
			n.pinned() // the name is going
			n.mu.Unlock()
			n.putFd()
		}
		return
	}
	dir, name := path.Split(n.rel())
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	n.mu.Lock()
	if n.fst().pin >= 0 {
		unix.Close(n.fst().pin)
	}
	n.fst().pin, n.fst().pinUpper = fd, e.inUpper(s)
	// A directory has no other name to be reached by.
	named := typ != unix.S_IFDIR && !n.fst().keepFd
	n.fst().namedPin, n.fst().relTries = named, 0
	n.mu.Unlock()
	if named {
		dataFds.touch(n) // counted in the budget, for releaseNamed
	}
}

// openPinned reopens the file of a node whose name is gone (passthrough mode).
// Open refused an O_RDONLY|O_TRUNC of a running program before it came here.
func (n *node) openPinned(flags uint32, write bool) (fusefs.FileHandle, uint32, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.fstIf()
	if f.pin < 0 || (write && !f.pinUpper) {
		return nil, 0, syscall.ESTALE
	}
	fd, err := unix.Open(procFd(f.pin), int(flags&^(unix.O_TRUNC|unix.O_DIRECT))|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, errno("open", err)
	}
	if f.ptPinned && f.ptOpens > 0 {
		unix.Close(fd)
		return nil, 0, syscall.ETXTBSY
	}
	if err := truncOnOpen(fd, flags); err != nil {
		unix.Close(fd)
		return nil, 0, errno("open truncate", err)
	}
	var st unix.Stat_t
	_ = unix.Fstat(fd, &st)
	h, fflags := n.newHandle(fd, n.fs.stack.Load(), int(flags), f.pinUpper, st.Size)
	return h, fflags, 0
}

var _ = (fusefs.NodeOnForgetter)((*node)(nil))

// OnForget closes the node's data fds.
func (n *node) OnForget() {
	n.forgetFds()
	dataFds.remove(n) // not under n.mu: touch takes the locks the other way round
}

func (n *node) forgetFds() {
	f := n.file.Load()
	if f == nil {
		return // never opened, never pinned
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	f.namedPin = false
	if f.dfd >= 0 {
		unix.Close(f.dfd)
		f.dfd = -1
	}
	for _, fd := range f.oldFds {
		unix.Close(fd)
	}
	f.oldFds = nil
	if f.pin >= 0 {
		unix.Close(f.pin)
		f.pin = -1
	}
}

var _ = (fusefs.NodeReader)((*node)(nil))

func (n *node) Read(ctx context.Context, f fusefs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.fs.relist.dataRead(n)
	if h := asHandle(f); h != nil {
		return h.Read(ctx, dest, off)
	}
	if len(dest) == 0 {
		// go-fuse sends an empty result without calling Done, which would
		// leave the fd's use counted for good.
		return fuse.ReadResultData(nil), 0
	}
	fd, err := n.dataFd(false)
	if err != nil {
		return nil, errno("read", err)
	}
	res, copied := readAt(fd, dest, off)
	if res.Size() == 0 || copied {
		// Copied, or at or past the end (a read racing a truncate, where
		// go-fuse sends an empty result without calling Done): the use of
		// the fd ends here.
		n.putFd()
		return res, 0
	}
	// Spliced from the fd when the kernel allows; its use ends when go-fuse is
	// done with it.
	return &fdRead{ReadResult: res, n: n}, 0
}

// readAt reads len(dest) bytes at off from fd, cut to the end of the file: up
// to smallRead bytes into dest (copied reports that), past that as
// fuse.ReadResultFd, which go-fuse splices. The kernel asks for whole readahead
// windows (512 KiB) whatever the file's size, and go-fuse, splicing a read that
// comes up short, drains the header it has put in the pipe and splices the data
// again through a second pipe: five more system calls for every small file
// read. A size the file no longer has by the time it is read still comes up
// short, and is handled so.
func readAt(fd int, dest []byte, off int64) (res fuse.ReadResult, copied bool) {
	size := len(dest)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		if off >= st.Size {
			return fuse.ReadResultData(nil), false
		}
		size = int(min(int64(size), st.Size-off))
		if size <= smallRead {
			if n, err := unix.Pread(fd, dest[:size], off); err == nil {
				return fuse.ReadResultData(dest[:n]), true
			}
		}
	}
	return fuse.ReadResultFd(uintptr(fd), off, size), false
}

// smallRead is the largest read readAt answers with a copy through this
// process instead of a splice: a spliced reply costs five system calls more
// (the header into a pipe, the file's data into it, the pipe into /dev/fuse,
// and go-fuse's drain of the pipe after: a splice and an ioctl), which a copy
// of this much costs less than. Mid-size files past it (a rootfs's programs
// and libraries) are spliced as before.
const smallRead = 128 << 10

var _ = (fusefs.NodeWriter)((*node)(nil))

func (n *node) Write(ctx context.Context, f fusefs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if h := asHandle(f); h != nil {
		return h.Write(ctx, data, off)
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	fd, err := n.dataFd(true)
	if err != nil {
		return 0, errno("write", err)
	}
	defer n.putFd()
	nw, err := unix.Pwrite(fd, data, off)
	if err != nil {
		return 0, errno("write", err)
	}
	n.dataChanged(off, int64(nw))
	return uint32(nw), 0
}

// dataChanged tells the kernel's other inode of n's file, if it has one, that
// the range changed. After a Rebase the kernel may know one file by two inodes:
// the one an fd opened before the Rebase keeps using, and the one a lookup made
// since (the committed layer's files have other inode numbers). No-open mounts keep
// no AUTO_INVAL_DATA, so a write through one would never reach the other's page
// cache: reads by path showed old data, or zeros past the old size.
func (n *node) dataChanged(off, size int64) {
	r := n.fs.rebases.Load()
	if n.born.Load() == r {
		return // the kernel's only inode for its file since the last Rebase
	}
	cur := n.fs.nodesAt(n.rel())
	if len(cur) == 0 {
		return
	}
	switch m := cur[len(cur)-1]; {
	case m == n:
		// If its path now resolves to its own inode number, a lookup would give
		// the kernel this node again: no twin until the next Rebase, and later
		// writes skip the walk. (Otherwise a lookup may still make one.)
		if e, _, err := n.resolve(); err == nil && e.ino == n.StableAttr().Ino && e.gen == n.StableAttr().Gen {
			n.born.Store(r)
		}
	default:
		// Not from the request: invalidating takes page locks.
		go m.NotifyContent(off, size)
	}
}

var _ = (fusefs.NodeLseeker)((*node)(nil))

func (n *node) Lseek(ctx context.Context, f fusefs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	if h := asHandle(f); h != nil {
		return h.Lseek(ctx, off, whence)
	}
	fd, err := n.dataFd(false)
	if err != nil {
		return 0, errno("lseek", err)
	}
	defer n.putFd()
	r, err := unix.Seek(fd, int64(off), int(whence))
	return uint64(r), errno("lseek", err)
}

var _ = (fusefs.NodeAllocater)((*node)(nil))

func (n *node) Allocate(ctx context.Context, f fusefs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	if h := asHandle(f); h != nil {
		return h.Allocate(ctx, off, size, mode)
	}
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	fd, err := n.dataFd(true)
	if err != nil {
		return errno("fallocate", err)
	}
	defer n.putFd()
	if err := unix.Fallocate(fd, mode, int64(off), int64(size)); err != nil {
		return errno("fallocate", err)
	}
	n.dataChanged(int64(off), int64(size))
	return 0
}

// unlinkedFd returns an fd to a node whose name is gone, or -1, and whether it is
// a file of the upper dir: its unnamed upper copy if it has one
// (unlinkedUpperFd), else a handle's file, its data fd or its pin.
func (n *node) unlinkedFd(f fusefs.FileHandle) (int, bool) {
	n.mu.Lock()
	if st := n.fstIf(); st.dfd >= 0 && st.dfdUpper {
		fd := st.dfd
		n.keepDataFd() // the file's last fd
		n.mu.Unlock()
		return fd, true
	}
	n.mu.Unlock()
	if h := n.liveHandle(f); h != nil {
		if _, fd, ok := h.upperFile(); ok {
			return fd, true
		}
		_, fd, _ := h.file(false)
		return fd, false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.fstIf()
	if st.dfd >= 0 {
		n.keepDataFd() // the file's last fd
		return st.dfd, st.dfdUpper
	}
	st.namedPin = false // the file's last fd
	return st.pin, st.pinUpper
}

// unlinkedUpperFd returns an fd of the upper dir's filesystem for the data of a
// node whose name is gone, for a change to it: the upper file it has, or, if its
// file lives in a read-only layer, an unnamed copy (cow.CopyUnnamed) that the node
// keeps as its data fd from then on, as a copy-up would. A change through a
// deleted name must never reach a layer. A fifo, socket or device node is kept
// the same way by its pin (pinForRemoval), an O_PATH fd: its upper inode, or an
// unnamed copy of a layer's (cow.CopyUnnamedSpecial), for its attributes only
// (its data, a fifo's, lives in the kernel's inode). A directory or symlink that
// has no upper file gets ENOENT.
func (n *node) unlinkedUpperFd(f fusefs.FileHandle) (int, error) {
	if _, p := n.Parent(); p != nil {
		// A name that failed to resolve (a rename racing): not for a copy.
		return -1, unix.ESTALE
	}
	if h := n.liveHandle(f); h != nil {
		if _, fd, ok := h.upperFile(); ok {
			return fd, nil
		}
	}
	n.mu.Lock()
	if st := n.fstIf(); st.dfd >= 0 && st.dfdUpper {
		fd := st.dfd
		n.keepDataFd() // the file's last fd
		n.mu.Unlock()
		return fd, nil
	}
	if st := n.fstIf(); st.pin >= 0 && st.pinUpper {
		fd := st.pin
		st.namedPin = false // the file's last fd
		n.mu.Unlock()
		return fd, nil
	}
	n.mu.Unlock()
	src, _ := n.unlinkedFd(f)
	typ := n.StableAttr().Mode & unix.S_IFMT
	if src < 0 || typ == unix.S_IFDIR || typ == unix.S_IFLNK {
		return -1, unix.ENOENT
	}
	s := n.fs.stack.Load()
	if !s.writable() {
		return -1, unix.EROFS
	}
	reg := typ == unix.S_IFREG
	if fd := n.linkedUpperFd(s); fd >= 0 {
		if !reg {
			return n.adoptUpperPin(fd), nil
		}
		return n.keepAdopted(fd, true, true), nil
	}
	var xattrs map[string][]byte
	n.mu.Lock()
	if e := n.ent; e != nil {
		// Linked back in later (Link), it keeps its inode number, as a copy-up.
		xattrs = map[string][]byte{originXattr: originValue(e.ino, e.gen)}
	}
	n.mu.Unlock()
	if !reg {
		fd, err := cow.CopyUnnamedSpecial(src, s.work, xattrs)
		if err != nil {
			return -1, err
		}
		return n.adoptUpperPin(fd), nil
	}
	fd, err := cow.CopyUnnamed(src, s.work, xattrs)
	if err != nil {
		return -1, err
	}
	return n.keepAdopted(fd, true, true), nil
}

// adoptUpperPin makes fd, an O_PATH fd of the upper inode that a special file whose
// name is gone has from now on, its pin, unless a request that made one too won;
// it returns the node's pin. The layer's pin it replaces may still be in use (by a
// getattr): it is closed when the kernel forgets the node.
func (n *node) adoptUpperPin(fd int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fst().pin >= 0 && n.fst().pinUpper {
		unix.Close(fd) // another request won
		return n.fst().pin
	}
	if n.fst().pin >= 0 {
		n.fst().oldFds = append(n.fst().oldFds, n.fst().pin)
		n.keepDataFd()
	}
	n.fst().pin, n.fst().pinUpper = fd, true
	n.fst().namedPin = false // the file's last fd
	return fd
}

// linkedUpperFd copies up, through another of its names, a layer file whose name
// is gone but that other names still show (a hard link in the layer), and returns
// its upper file opened for reading and writing (O_PATH for a fifo, socket or
// device node), or -1 if there is no such name.
// Writes through the deleted name then reach the other names, as on a local
// filesystem and through overlayfs with index=on; an unnamed copy kept them to
// itself (found by the randomized oracle test). The caller holds the barrier.
func (n *node) linkedUpperFd(s *stack) int {
	n.mu.Lock()
	e := n.ent
	n.mu.Unlock()
	if e == nil || e.inUpper(s) || e.isDir() || e.st.Nlink < 2 {
		return -1
	}
	paths, err := s.linksOf(e.layers[0], e.st.Ino)
	if err != nil {
		return -1
	}
	for _, p := range paths {
		// A name that shows another file now is skipped (its copy-up, if it
		// was in a layer, changes nothing anyone sees).
		ue, us, err := n.fs.copyUpPath(p, -1)
		if err != nil || !ue.inUpper(us) || ue.ino != e.ino {
			continue
		}
		dir, name := path.Split(p)
		dfd, err := us.openDir(ue.layers[0], dir, unix.O_PATH)
		if err != nil {
			continue
		}
		var fd int
		if e.isReg() {
			fd, err = openFile(dfd, name, unix.O_RDWR, true)
		} else {
			fd, err = unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		unix.Close(dfd)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Dev != ue.st.Dev || st.Ino != ue.st.Ino {
			unix.Close(fd)
			continue
		}
		return fd
	}
	return -1
}

// fsyncData syncs the node's upper file in no-open mode. Its data fd may have been
// closed since the writes (fdcache.go): the file is opened again then.
func (n *node) fsyncData() syscall.Errno {
	fd, err := n.dataFd(false)
	if err != nil {
		return errno("fsync", err)
	}
	defer n.putFd()
	n.mu.Lock()
	up := n.fst().dfdUpper && n.fst().dfd == fd
	n.mu.Unlock()
	if up {
		return errno("fsync", unix.Fsync(fd))
	}
	return 0
}

// setattrFd applies a SETATTR to an open fd of an upper file (one whose name is
// gone, or any under xattr_permissions), O_PATH or not.
func (fsys *unionFS) setattrFd(fd int, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	_, en := fsys.setattrFdStat(fd, in, out)
	return en
}

// setattrFdStat is setattrFd that also returns the file's stat after the change,
// before ids shift its owner.
func (fsys *unionFS) setattrFdStat(fd int, in *fuse.SetAttrIn, out *fuse.AttrOut) (unix.Stat_t, syscall.Errno) {
	ids := fsys.ids
	var up *layer
	if fsys.xperm != 0 {
		up = fsys.upperLayer()
	}
	var st unix.Stat_t
	if up != nil && unix.Fstat(fd, &st) == nil && overridable(st.Mode) {
		// The owner and mode go to the override xattr (xperm.go).
		if _, err := fsys.overrideSetattr(fd, in); err != nil {
			return st, errno("setattr override", err)
		}
	} else {
		if m, ok := in.GetMode(); ok {
			if err := cow.Chmod(fd, m&0o7777); err != nil {
				return st, errno("fchmod", err)
			}
		}
		if su, sg, ok := setattrOwner(in); ok {
			su, sg = ids.stored(su, sg)
			if err := unix.Fchownat(fd, "", su, sg, unix.AT_EMPTY_PATH); err != nil {
				return st, errno("fchown", err)
			}
		}
	}
	if sz, ok := in.GetSize(); ok {
		// Through the fd (no permission check), or by path for an O_PATH pin.
		err := unix.Ftruncate(fd, int64(sz))
		if errors.Is(err, unix.EBADF) || errors.Is(err, unix.EINVAL) {
			err = unix.Truncate(procFd(fd), int64(sz))
		}
		if err != nil {
			return st, errno("ftruncate", err)
		}
	}
	if ts, ok := setattrTimes(in); ok {
		if err := futimens(fd, ts); err != nil {
			return st, errno("futimens", err)
		}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return st, errno("fstat", err)
	}
	cow.ShownMode(&st)
	if up != nil {
		up.overrideFd(&st, fd)
	}
	out.FromStat(toSyscallStat(ids.shown(&st)))
	return st, 0
}

// upperDataFd returns the node's data fd if it is a read-write fd of its file in
// the upper dir (no-open mode: a file created, written or copied up here), for a
// use that ends with n.putFd. SETATTR, GETATTR and the xattr requests of such a
// file go through it instead of resolving its path from the root: an untar sends
// three SETATTRs and two GETXATTRs for every file it makes. The fd is the node's
// own file even while a rename moves another file onto its name (see
// openDataFd), and a Rebase closes it (taintOpen).
func (n *node) upperDataFd() (int, bool) {
	if !n.fs.noOpen || n.StableAttr().Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, false
	}
	n.mu.Lock()
	f := n.fstIf()
	if f.dfd < 0 || !f.dfdUpper {
		n.mu.Unlock()
		return -1, false
	}
	f.fdRefs++ // not noFileState: it has a data fd
	fd := f.dfd
	n.mu.Unlock()
	dataFds.touch(n)
	return fd, true
}

// refreshEntry replaces the attributes of the node's cached resolution with st,
// a stat of its upper file, if that resolution names the same file.
func (n *node) refreshEntry(st *unix.Stat_t) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.ent; e != nil && e.st.Dev == st.Dev && e.st.Ino == st.Ino {
		ne := *e
		ne.st = attrsOf(st)
		n.ent = &ne
	}
}

// futimens sets the times of the file open as fd: utimensat(2) with a NULL path,
// or by its /proc link for an O_PATH fd, which that refuses.
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e == 0 {
		return nil
	}
	if e != unix.EBADF {
		return e
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, procFd(fd), ts, 0)
}

// setattrOwner returns the owner a SETATTR asks for as chown arguments (-1 for an id
// it leaves alone), and whether it asks for one at all.
// setattrTimes returns the atime and mtime a SETATTR sets, for utimensat
// (UTIME_OMIT where unset), and whether it sets either.
func setattrTimes(in *fuse.SetAttrIn) ([]unix.Timespec, bool) {
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if aok {
		ts[0] = timespec(atime)
	}
	if mok {
		ts[1] = timespec(mtime)
	}
	return ts, mok || aok
}

// timespec converts t without going through UnixNano, which wraps for times before
// 1678 or after 2262 (a `touch -d 2300-01-01` would date the file 1901).
func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func setattrOwner(in *fuse.SetAttrIn) (uid, gid int, ok bool) {
	uid, gid = -1, -1
	if u, set := in.GetUID(); set {
		uid, ok = int(u), true
	}
	if g, set := in.GetGID(); set {
		gid, ok = int(g), true
	}
	return uid, gid, ok
}
