package fs

import (
	"context"
	"errors"
	"hash/fnv"
	"log"
	"path"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// unionFS is the state shared by every node of one mount.
type unionFS struct {
	stack   atomic.Pointer[stack]
	epoch   atomic.Uint64 // bumped when cached resolutions may be stale
	changes atomic.Uint64 // bumped by every change of any directory's entries
	barrier sync.RWMutex  // mutating ops hold it shared; Pause holds it exclusively
	cuMu    sync.Mutex    // serialises copy-ups
	root    *node
	debug   bool
	// passthrough is set when the kernel accepted FUSE passthrough.
	passthrough atomic.Bool
	// noOpen: opens of regular files stay in the kernel (see noopen.go).
	noOpen    bool
	retired   []*stack // stacks replaced by Rebase, closed at the end
	retiredMu sync.Mutex
}

// node is one inode of the union. Its resolution (which layers hold it) is cached
// and recomputed from its path when the epoch moves.
type node struct {
	fusefs.Inode
	fs *unionFS

	mu    sync.Mutex
	epoch uint64
	ent   *entry
	entOK bool // ent is usable (no change raced with its resolution)
	// Open-mode bookkeeping, see fileHandle.
	ptOpens     int                  // live opens the kernel passes through
	cachedOpens int                  // live opens served by this process
	ptPinned    bool                 // the kernel's backing file is no longer the node's file
	handles     map[*fileHandle]bool // live opens, for fstat/ftruncate after unlink

	// No-open mode: the node's data fd (-1: none yet), and fds it replaced.
	dfd      int
	dfdUpper bool
	oldFds   []int
}

func (fsys *unionFS) newNode() *node { return &node{fs: fsys, dfd: -1} }

// rel returns the node's path relative to the union root ("" for the root).
func (n *node) rel() string { return n.Path(n.fs.root.EmbeddedInode()) }

// resolve returns the node's current resolution.
func (n *node) resolve() (*entry, *stack, error) {
	c0 := n.fs.changes.Load()
	s := n.fs.stack.Load()
	ep := n.fs.epoch.Load()
	n.mu.Lock()
	if n.ent != nil && n.entOK && n.epoch == ep {
		e := n.ent
		n.mu.Unlock()
		return e, s, nil
	}
	n.mu.Unlock()
	var e *entry
	if n == n.fs.root {
		e = &entry{layers: nil}
		for i := range s.layers {
			e.layers = append(e.layers, i)
			if i == len(s.layers)-1 {
				break
			}
			fd, err := s.openDir(i, "", unix.O_RDONLY)
			if err != nil {
				return nil, nil, err
			}
			opq, _ := cow.IsOpaqueDir(fd)
			unix.Close(fd)
			if opq {
				break
			}
		}
		if err := unix.Fstat(s.layers[0].fd, &e.st); err != nil {
			return nil, nil, err
		}
		e.ino = 1
	} else {
		name, parent := n.Parent()
		if parent == nil {
			return nil, nil, unix.ESTALE
		}
		pn := parent.Operations().(*node)
		pe, _, err := pn.resolve()
		if err != nil {
			return nil, nil, err
		}
		e, err = s.lookupIn(pe.layers, pn.rel(), name)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, nil, unix.ESTALE
			}
			return nil, nil, err
		}
	}
	n.storeEntry(e, ep, c0)
	return e, s, nil
}

// authoritative marks an entry made by the change that produced it.
const authoritative = ^uint64(0)

// storeEntry caches e, resolved at epoch ep from a view taken when fs.changes was
// c0. If anything changed since, e may be stale: it is kept only as a fallback and
// the next resolve recomputes.
func (n *node) storeEntry(e *entry, ep, c0 uint64) {
	ok := c0 == authoritative || n.fs.changes.Load() == c0
	n.mu.Lock()
	if ok || n.ent == nil {
		n.ent, n.epoch = e, ep
	}
	n.entOK = ok
	n.mu.Unlock()
}

// setEntry caches e as the node's authoritative resolution (made by a change).
func (n *node) setEntry(e *entry) { n.storeEntry(e, n.fs.epoch.Load(), authoritative) }

// invalidate drops the node's cached resolution.
func (n *node) invalidateEntry() {
	n.mu.Lock()
	n.entOK = false
	n.mu.Unlock()
}

// changed marks the start of a change to some directory's entries; call the
// returned func at its end. Resolutions that overlap a change are not trusted.
func (fsys *unionFS) changed() func() {
	fsys.changes.Add(1)
	return func() { fsys.changes.Add(1) }
}

// longTimeout is the entry and attr timeout: the mount is the only writer of its
// upper dir and the lowers never change, so the kernel may cache for long.
const longTimeout = 3600 // seconds

func (fsys *unionFS) fillEntry(e *entry, out *fuse.EntryOut) {
	out.Attr.FromStat(toSyscallStat(&e.st))
	out.Attr.Ino = e.ino
	out.SetEntryTimeout(longTimeout * 1e9)
	out.SetAttrTimeout(longTimeout * 1e9)
}

func toSyscallStat(st *unix.Stat_t) *syscall.Stat_t {
	return &syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: syscall.Timespec(st.Atim), Mtim: syscall.Timespec(st.Mtim), Ctim: syscall.Timespec(st.Ctim),
	}
}

// newChild registers the inode for a child entry resolved from a view taken when
// fs.changes was c0 (or authoritative).
func (n *node) newChild(ctx context.Context, e *entry, ep, c0 uint64) *fusefs.Inode {
	ch := n.fs.newNode()
	ch.storeEntry(e, ep, c0)
	in := n.NewInode(ctx, ch, fusefs.StableAttr{Mode: e.st.Mode & unix.S_IFMT, Ino: e.ino, Gen: e.gen})
	if got := in.Operations().(*node); got != ch {
		got.storeEntry(e, ep, c0) // a known inode (hard link, or looked up again)
	}
	return in
}

func errno(op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	en := fusefs.ToErrno(err)
	if en == syscall.EIO {
		log.Printf("layerfs: %s: %v", op, err)
	}
	return en
}

var _ = (fusefs.NodeLookuper)((*node)(nil))

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if len(name) > 255 {
		return nil, syscall.ENAMETOOLONG
	}
	c0, ep := n.fs.changes.Load(), n.fs.epoch.Load()
	pe, s, err := n.resolve()
	if err != nil {
		return nil, errno("lookup", err)
	}
	e, err := s.lookupIn(pe.layers, n.rel(), name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			out.SetEntryTimeout(longTimeout * 1e9)
		}
		return nil, errno("lookup "+name, err)
	}
	n.fs.fillEntry(e, out)
	return n.newChild(ctx, e, ep, c0), 0
}

var _ = (fusefs.NodeGetattrer)((*node)(nil))

func (n *node) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h := asHandle(f); h != nil && h.upper {
		var st unix.Stat_t
		if err := h.fstat(&st); err == nil {
			out.FromStat(toSyscallStat(&st))
			out.Ino = n.StableAttr().Ino
			out.SetTimeout(longTimeout * 1e9)
			return 0
		}
	}
	e, s, err := n.resolve()
	if err != nil {
		if errors.Is(err, unix.ESTALE) {
			return n.getattrUnlinked(f, out)
		}
		return errno("getattr", err)
	}
	// Refresh: the cached stat may be older than a write through passthrough.
	st, err := n.statLayer(s, e)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return n.getattrUnlinked(f, out)
		}
		return errno("getattr", err)
	}
	out.FromStat(toSyscallStat(&st))
	out.Ino = n.StableAttr().Ino
	out.SetTimeout(longTimeout * 1e9)
	return 0
}

// getattrUnlinked answers fstat of a file whose name is gone, through its handle.
func (n *node) getattrUnlinked(f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fd := n.unlinkedFd(f)
	if fd < 0 {
		return syscall.ENOENT
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return errno("fstat", err)
	}
	out.FromStat(toSyscallStat(&st))
	out.Ino = n.StableAttr().Ino
	return 0
}

// statLayer stats the node in its top layer.
func (n *node) statLayer(s *stack, e *entry) (unix.Stat_t, error) {
	var st unix.Stat_t
	if n == n.fs.root {
		err := unix.Fstat(s.layers[e.layers[0]].fd, &st)
		return st, err
	}
	dir, name := path.Split(n.rel())
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return st, err
	}
	defer unix.Close(dfd)
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

var _ = (fusefs.NodeReadlinker)((*node)(nil))

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	e, s, err := n.resolve()
	if err != nil {
		return nil, errno("readlink", err)
	}
	dir, name := path.Split(n.rel())
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return nil, errno("readlink", err)
	}
	defer unix.Close(dfd)
	for l := 256; ; l *= 2 {
		buf := make([]byte, l)
		sz, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return nil, errno("readlink", err)
		}
		if sz < len(buf) {
			return buf[:sz], 0
		}
	}
}

var _ = (fusefs.NodeStatfser)((*node)(nil))

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	s := n.fs.stack.Load()
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(s.layers[0].fd, &st); err != nil {
		return errno("statfs", err)
	}
	out.FromStatfsT(&st)
	return 0
}

var _ = (fusefs.NodeOpendirHandler)((*node)(nil))

// OpendirHandle opens a directory; the merged listing is made at the first read
// (and again at each rewind), after the kernel noted the directory's version for
// its readdir cache, so a change racing with the listing invalidates that cache
// instead of freezing a stale listing into it. Every entry is resolved (the inode
// numbers must match stat's); READDIRPLUS reuses those resolutions. The kernel may
// cache the listing (FOPEN_CACHE_DIR): every change to the directory goes through
// this mount, and the kernel drops the cache on each.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if _, _, err := n.resolve(); err != nil {
		return nil, 0, errno("opendir", err)
	}
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR, 0
}

// load lists the directory; d.mu is held.
func (d *dirHandle) load() syscall.Errno {
	n := d.n
	changes, ep := n.fs.changes.Load(), n.fs.epoch.Load()
	e, s, err := n.resolve()
	if err != nil {
		return errno("readdir", err)
	}
	rel := n.rel()
	ents, err := s.readDir(e.layers, rel)
	if err != nil {
		return errno("readdir", err)
	}
	d.changes, d.epoch, d.idx = changes, ep, 0
	d.resolved = make(map[string]*entry, len(ents))
	d.list = make([]fuse.DirEntry, 0, len(ents)+2)
	d.list = append(d.list, fuse.DirEntry{Name: ".", Mode: unix.S_IFDIR, Ino: n.StableAttr().Ino, Off: 1})
	pino := uint64(1)
	if _, p := n.Parent(); p != nil {
		pino = p.StableAttr().Ino
	}
	d.list = append(d.list, fuse.DirEntry{Name: "..", Mode: unix.S_IFDIR, Ino: pino, Off: 2})
	dirs, err := s.openDirFds(e.layers, rel)
	if err != nil {
		return errno("readdir", err)
	}
	defer dirs.close()
	for _, de := range ents {
		ce, err := s.lookup(dirs, de.name)
		if err != nil {
			continue
		}
		d.resolved[de.name] = ce
		d.list = append(d.list, fuse.DirEntry{Name: de.name, Mode: ce.st.Mode & unix.S_IFMT, Ino: ce.ino, Off: nameOffset(de.name)})
	}
	// Offsets derive from names, as ext4's hashed directories do, so a seek into a
	// listing that changed since (a new open, a dropped cache) lands right.
	sort.Slice(d.list[2:], func(i, j int) bool { return d.list[2+i].Off < d.list[2+j].Off })
	d.loaded = true
	return 0
}

// dirHandle is an open directory: a snapshot of its merged listing.
type dirHandle struct {
	n        *node
	mu       sync.Mutex
	list     []fuse.DirEntry
	idx      int
	resolved map[string]*entry
	changes  uint64 // fs.changes when listed
	epoch    uint64 // fs.epoch when listed
	loaded   bool
}

var (
	_ = (fusefs.FileReaddirenter)((*dirHandle)(nil))
	_ = (fusefs.FileSeekdirer)((*dirHandle)(nil))
	_ = (fusefs.FileLookuper)((*dirHandle)(nil))
	_ = (fusefs.FileReleasedirer)((*dirHandle)(nil))
	_ = (fusefs.FileFsyncdirer)((*dirHandle)(nil))
)

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.loaded {
		if en := d.load(); en != 0 {
			return nil, en
		}
	}
	if d.idx >= len(d.list) {
		return nil, 0
	}
	e := d.list[d.idx]
	d.idx++
	return &e, 0
}

// Seekdir continues after the entry whose offset is off.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 0 || !d.loaded {
		if en := d.load(); en != 0 {
			return en
		}
	}
	d.idx = sort.Search(len(d.list), func(i int) bool { return d.list[i].Off > off })
	return 0
}

// nameOffset is a directory offset for name: a 63-bit hash above the offsets of
// "." and "..".
func nameOffset(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	o := h.Sum64() >> 1
	if o < 3 {
		o += 3
	}
	return o
}

// Lookup serves READDIRPLUS from the resolutions made at open.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	d.mu.Lock()
	e := d.resolved[name]
	d.mu.Unlock()
	if e == nil || d.n.fs.changes.Load() != d.changes {
		return d.n.Lookup(ctx, name, out)
	}
	d.n.fs.fillEntry(e, out)
	return d.n.newChild(ctx, e, d.epoch, d.changes), 0
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.Fsync(ctx, nil, flags)
}

var _ = (fusefs.NodeReaddirer)((*node)(nil))

// Readdir is only used when OpendirHandle is bypassed; it lists like OpendirHandle.
func (n *node) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	d := &dirHandle{n: n}
	if en := d.load(); en != 0 {
		return nil, en
	}
	return fusefs.NewListDirStream(d.list), 0
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
