package fs

import (
	"container/list"
	"context"
	"errors"
	"log"
	"path"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// unionFS is the state shared by every node of one mount.
type unionFS struct {
	stack   atomic.Pointer[stack]
	epoch   atomic.Uint64            // bumped when cached resolutions may be stale
	changes atomic.Uint64            // bumped by every change of any directory's entries
	barrier sync.RWMutex             // mutating ops hold it shared; Pause holds it exclusively
	cuMu    sync.Mutex               // serialises copy-ups
	copying map[string]chan struct{} // big files copying with cuMu let go, by path; closed when done (guarded by cuMu)
	// dirMu: user changes of directory entries hold it shared; placing a copy-up
	// or a marker and then putting the directory's times back holds it
	// exclusively, so that no user change's mtime is undone (see entriesChange).
	dirMu sync.RWMutex
	root  *node
	// dev is the mount's st_dev once mounted (0 before, or unknown), to find
	// the processes that run one of its files (executing).
	dev   atomic.Uint64
	debug bool
	// passthrough is set when the kernel accepted FUSE passthrough.
	passthrough atomic.Bool
	// noACL: Options.NoACL.
	noACL bool
	// noOpen: opens of regular files stay in the kernel (see noopen.go).
	noOpen    bool
	retired   []*stack // stacks replaced by Rebase, closed at the end
	retiredMu sync.Mutex
	relist    relister
	getattrs  atomic.Uint64 // GETATTR requests served, for tests
	ids       *IDMapping    // owners shown shifted (Options.IDs); nil: as stored
	// xperm: Options.XattrPermissions; overrideNames: the xattrs it writes
	// changes of owners and modes to (nil: none, see xperm.go).
	xperm         int
	overrideNames []string
	noXattrs      bool          // Options.NoXattrs
	lookups       atomic.Uint64 // LOOKUP requests served, for tests
	listings      atomic.Uint64 // directory listings asked for (loads), for tests
	lists         atomic.Uint64 // directory listings made afresh (node.list), for tests
	inflight      atomic.Int64  // changes begun and not ended (see changed)
	rebases       atomic.Uint64 // Rebases so far (see dataChanged)
	landings      atomic.Uint64 // landRebased copies begun
	landing       atomic.Int64  // landRebased copies running
	// paths: renames hold it for writing, requests that change something for
	// reading (pathlock.go).
	paths sync.RWMutex
	// Moves of entries in the upper dir whose nodes go-fuse has not moved yet
	// (see resolve): by request, the sequence number of the move.
	moveMu    sync.Mutex
	moveSeq   atomic.Uint64
	movesOpen atomic.Int64
	moves     map[<-chan struct{}]uint64
	preparing map[<-chan struct{}]bool // renames in prepareRename (pathlock.go)
	// umasks: by request, the caller's umask of a create (umask.go).
	umasks sync.Map
	// procUmask: this process's umask when mounted, which its opens apply
	// (umask.go); 0o777 if unknown.
	procUmask uint32
}

// beginMove marks that the rename request ctx is about to move entries in the
// upper dir; endMove, after go-fuse moved the node in its tree (noopendir.go), or
// after the move failed. Requests are told apart by their cancel channel, the
// same in the raw request and in the node's Rename.
func (fsys *unionFS) beginMove(ctx context.Context) {
	c, ok := ctx.(*fuse.Context)
	if !ok {
		return
	}
	fsys.moveMu.Lock()
	defer fsys.moveMu.Unlock()
	if fsys.moves == nil {
		fsys.moves = map[<-chan struct{}]uint64{}
	}
	fsys.moves[c.Cancel] = fsys.moveSeq.Add(1)
	fsys.movesOpen.Store(int64(len(fsys.moves)))
}

func (fsys *unionFS) endMove(cancel <-chan struct{}) {
	fsys.moveMu.Lock()
	defer fsys.moveMu.Unlock()
	delete(fsys.moves, cancel)
	fsys.movesOpen.Store(int64(len(fsys.moves)))
}

// waitMoves waits, briefly, until the moves begun so far have ended.
func (fsys *unionFS) waitMoves() {
	if fsys.movesOpen.Load() == 0 {
		return
	}
	s0 := fsys.moveSeq.Load()
	// A deadline, not a count: a short sleep takes a millisecond here.
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); {
		fsys.moveMu.Lock()
		open := false
		for _, s := range fsys.moves {
			if s <= s0 {
				open = true
				break
			}
		}
		fsys.moveMu.Unlock()
		if !open {
			return
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// node is one inode of the union. Its resolution (which layers hold it) is cached
// and recomputed from its path when the epoch moves.
type node struct {
	fusefs.Inode
	fs *unionFS

	mu    sync.Mutex
	epoch uint64
	ent   *entry
	entS  *stack // the stack ent was resolved in (layer numbers are per stack)
	entOK bool   // ent is usable (no change raced with its resolution)
	// atimeStale: a reader listed the directory, so the kernel holds its atime
	// stale; in fs.relist.ends. Guarded by fs.relist.mu.
	atimeStale bool
	// unnamed: made by O_TMPFILE and maybe not linked in yet; while it has no
	// parent, its entry (kept for Link) must not send a call to a path.
	unnamed atomic.Bool

	// What only opened files, symlinks and listed directories need, made at
	// first use: the kernel keeps a node for every name a walk met, and most
	// are never opened (see fst and dst).
	file atomic.Pointer[fileState]
	dir  atomic.Pointer[dirState]

	// born is fs.rebases when the node was made, or when it was last found to be the
	// kernel's only inode for its file: an older node may have a twin (dataChanged).
	born atomic.Uint64
}

func (fsys *unionFS) newNode() *node {
	n := &node{fs: fsys}
	n.born.Store(fsys.rebases.Load())
	return n
}

// fileState is a node's open-mode bookkeeping and symlink target, guarded by the
// node's mu unless said otherwise.
type fileState struct {
	// Open-mode bookkeeping, see fileHandle.
	ptOpens      int                  // live opens the kernel passes through
	cachedOpens  int                  // live opens served by this process
	cachedClosed time.Time            // when the last of those was released
	ptPinned     bool                 // the kernel's backing file is no longer the node's file
	handles      map[*fileHandle]bool // live opens, for fstat/ftruncate after unlink

	// No-open mode: the node's data fd (-1: none yet), and fds it replaced; the
	// requests using them (see dataFd), and whether they are all the file has
	// left, so that they are kept until the kernel forgets the node (fdcache.go).
	dfd      int
	dfdUpper bool
	oldFds   []int
	fdRefs   int
	keepFd   bool
	fdcElem  *list.Element // in dataFds, guarded by its mu

	// The kept fd or pin was taken only because a name was about to go
	// (pinForRemoval), and no request has used it as the file's last fd since:
	// the LRU may close it once the node has another name (fdcache.go's
	// releaseNamed). relTries counts the times that name failed to resolve.
	namedPin bool
	relTries uint8

	// Passthrough mode: an O_PATH fd to the file after its name went away, so
	// opens racing with the removal still reach the inode (-1: none).
	pin      int
	pinUpper bool

	// link is a symlink's target once known. A symlink never changes, so it
	// answers READLINK even after the name went away (renamed over, unlinked)
	// while the kernel still resolves the old inode, as a local filesystem does.
	link []byte

	// The directory (and its listing generation) the file was counted in as read
	// since that listing (relist.go), guarded by fs.relist.mu.
	staleIn  *node
	staleGen uint64
}

// noFileState is what fst holds for a node that has none yet.
var noFileState = fileState{dfd: -1, pin: -1}

// fst returns the node's fileState, made at the first call.
func (n *node) fst() *fileState {
	if f := n.file.Load(); f != nil {
		return f
	}
	f := noFileState
	if n.file.CompareAndSwap(nil, &f) {
		return &f
	}
	return n.file.Load()
}

// fstIf returns the node's fileState, or an empty one if it has none: for the
// checks made on every node, such as at a removal or a FORGET. Read only: the
// empty one is noFileState, shared by every node without one (not a copy,
// which would read fields other locks guard); writers call fst.
func (n *node) fstIf() *fileState {
	if f := n.file.Load(); f != nil {
		return f
	}
	return &noFileState
}

// dirState is a directory node's cached listing and stale-atime counts.
type dirState struct {
	// listing is the directory's last merged listing (see dirHandle.load),
	// guarded by the node's mu.
	listing *dirListing
	// Stale atimes, guarded by fs.relist.mu (see relist.go): its listing
	// generation, and how many children read since have stale atimes.
	listGen   uint64
	staleKids int
	staleAt   time.Time // the last read of a child
	dropped   bool      // its cached listing was dropped since it was listed
}

// dst returns the node's dirState, made at the first call.
func (n *node) dst() *dirState {
	if d := n.dir.Load(); d != nil {
		return d
	}
	d := &dirState{}
	if n.dir.CompareAndSwap(nil, d) {
		return d
	}
	return n.dir.Load()
}

// rel returns the node's path relative to the union root ("" for the root).
func (n *node) rel() string { return n.Path(n.fs.root.EmbeddedInode()) }

// resolve returns the node's current resolution. Resolving goes by the node's
// path in go-fuse's tree, which a rename updates only after the upper dir changed:
// a resolution that overlaps that moment may follow a stale path, so it waits for
// the rename to settle and resolves again.
func (n *node) resolve() (*entry, *stack, error) {
	for attempt := 0; ; attempt++ {
		n.fs.waitMoves()
		m0 := n.fs.moveSeq.Load()
		e, s, err := n.resolveOnce()
		if attempt == 3 || n.fs.moveSeq.Load() == m0 {
			return e, s, err
		}
		n.invalidateEntry() // a move began meanwhile: resolve again once it ended
	}
}

func (n *node) resolveOnce() (*entry, *stack, error) {
	if n.unnamed.Load() {
		if _, p := n.Parent(); p == nil {
			return nil, nil, unix.ESTALE
		}
		n.unnamed.Store(false) // linked in: its name resolves from now on
	}
	c0 := n.fs.changes.Load()
	s := n.fs.stack.Load()
	ep := n.fs.epoch.Load()
	n.mu.Lock()
	if n.ent != nil && n.entOK && n.epoch == ep && n.entS == s {
		e := n.ent
		n.mu.Unlock()
		return e, s, nil
	}
	n.mu.Unlock()
	var e *entry
	if n == n.fs.root {
		var err error
		if e, err = s.root(); err != nil {
			return nil, nil, err
		}
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
	n.storeEntry(e, ep, c0, s)
	return e, s, nil
}

// authoritative marks an entry made by the change that produced it.
const authoritative = ^uint64(0)

// storeEntry caches e, resolved in stack s at epoch ep from a view taken when
// fs.changes was c0. If anything changed since, e may be stale: it is kept only as
// a fallback and the next resolve recomputes.
func (n *node) storeEntry(e *entry, ep, c0 uint64, s *stack) {
	ok := c0 == authoritative || n.fs.changes.Load() == c0
	n.mu.Lock()
	if ok || n.ent == nil {
		n.ent, n.epoch, n.entS = e, ep, s
	}
	n.entOK = ok
	n.mu.Unlock()
}

// setEntry caches e as the node's authoritative resolution (made by a change, under
// the write barrier, so in the current stack).
func (n *node) setEntry(e *entry) {
	n.storeEntry(e, n.fs.epoch.Load(), authoritative, n.fs.stack.Load())
}

// invalidate drops the node's cached resolution.
func (n *node) invalidateEntry() {
	n.mu.Lock()
	n.entOK = false
	n.mu.Unlock()
}

// changed marks the start of a change to some directory's entries; call the
// returned func at its end. Resolutions that overlap a change are not trusted.
func (fsys *unionFS) changed() func() {
	fsys.inflight.Add(1)
	fsys.changes.Add(1)
	return func() {
		fsys.changes.Add(1)
		fsys.inflight.Add(-1)
	}
}

// entriesChange marks a user's change of directory entries (create, link, unlink,
// rename): it must move the directory's mtime, so copy-ups that put a directory's
// times back wait for it. Call it after any copy-up the change needs, and the
// returned func at the end of the change.
func (fsys *unionFS) entriesChange() func() {
	fsys.dirMu.RLock()
	return fsys.dirMu.RUnlock
}

// longTimeout is the entry and attr timeout: the mount is the only writer of its
// upper dir and the lowers never change, so the kernel may cache for long.
const longTimeout = 3600 // seconds

func (fsys *unionFS) fillEntry(e *entry, out *fuse.EntryOut) {
	st := e.st.full()
	out.Attr.FromStat(toSyscallStat(fsys.ids.shown(e.stat(&st))))
	out.Attr.Ino = e.ino
	out.SetEntryTimeout(longTimeout * 1e9)
	out.SetAttrTimeout(longTimeout * 1e9)
}

// stat returns st, a stat of e's top layer, as the union shows it: a directory
// merged from more than one layer has a link count of 1, as through kernel
// overlayfs (btrfs's convention for "not counted"), since its subdirectories are
// spread over the layers: the top layer's count could say "no subdirectories"
// (2) of a directory that has some below, wrong for a tool that counts on it.
func (e *entry) stat(st *unix.Stat_t) *unix.Stat_t {
	if len(e.layers) > 1 && st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Nlink != 1 {
		c := *st
		c.Nlink = 1
		return &c
	}
	return st
}

func toSyscallStat(st *unix.Stat_t) *syscall.Stat_t {
	return &syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: syscall.Timespec(st.Atim), Mtim: syscall.Timespec(st.Mtim), Ctim: syscall.Timespec(st.Ctim),
	}
}

// newChild registers the inode for a child entry resolved in stack s from a view
// taken when fs.changes was c0 (or authoritative).
func (n *node) newChild(ctx context.Context, e *entry, ep, c0 uint64, s *stack) *fusefs.Inode {
	ch := n.fs.newNode()
	ch.storeEntry(e, ep, c0, s)
	in := n.NewInode(ctx, ch, fusefs.StableAttr{Mode: e.st.Mode & unix.S_IFMT, Ino: e.ino, Gen: e.gen})
	if got := in.Operations().(*node); got != ch {
		got.storeEntry(e, ep, c0, s) // a known inode (hard link, or looked up again)
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
	n.fs.lookups.Add(1)
	n.fs.relist.poke()
	if len(name) > 255 {
		return nil, syscall.ENAMETOOLONG
	}
	c0, ep, l0 := n.fs.changes.Load(), n.fs.epoch.Load(), n.fs.landings.Load()
	landing0 := n.fs.landing.Load() > 0
	pe, s, err := n.resolve()
	if err != nil {
		return nil, errno("lookup", err)
	}
	e, err := s.lookupIn(pe.layers, n.rel(), name)
	if err != nil {
		// ENOENT: go-fuse turns it into a cached negative entry
		// (Options.NegativeTimeout), but only if out's entry timeout is unset. A
		// miss that overlapped a change (a rename of this directory moves its path
		// under the lookup) is answered uncached instead: a timeout of 1 ns.
		if n.fs.inflight.Load() != 0 || n.fs.changes.Load() != c0 || n.fs.epoch.Load() != ep || n.fs.stack.Load() != s {
			out.SetEntryTimeout(1)
		}
		return nil, errno("lookup "+name, err)
	}
	n.fs.fillEntry(e, out)
	landed := landing0 || n.fs.landings.Load() != l0 || n.fs.landing.Load() > 0
	if landed || (n.fs.epoch.Load() != ep && !e.inUpper(s)) {
		// A write landing after a Rebase may have copied this name up meanwhile,
		// or this lookup met its upper copy truncated and half written
		// (landRebased), or the resolution this lookup went by was retired under
		// it (a rename, a whole-dir copy-up): what it found must not stay cached
		// for an hour. The landing's notices reach only the nodes the kernel
		// knew when it ended; this one may not be among them yet.
		out.SetEntryTimeout(1)
		out.SetAttrTimeout(1)
	}
	return n.newChild(ctx, e, ep, c0, s), 0
}

var _ = (fusefs.NodeGetattrer)((*node)(nil))

func (n *node) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.getattrs.Add(1)
	n.fs.relist.attrFresh(n)
	if h := asHandle(f); h != nil {
		if _, fd, ok := h.upperFile(); ok && n.getattrFd(fd, out) {
			return 0
		}
	}
	if fd, ok := n.upperDataFd(); ok {
		ok = n.getattrFd(fd, out)
		n.putFd()
		if ok {
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
	if !e.inUpper(s) {
		// Read-only layers never change: the resolution's stat is current.
		st := e.st.full()
		out.FromStat(toSyscallStat(n.fs.ids.shown(e.stat(&st))))
		out.Ino = n.StableAttr().Ino
		out.SetTimeout(longTimeout * 1e9)
		return 0
	}
	// Refresh: the cached stat may be older than a write through passthrough.
	st, err := n.statLayer(s, e)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return n.getattrUnlinked(f, out)
		}
		return errno("getattr", err)
	}
	out.FromStat(toSyscallStat(n.fs.ids.shown(e.stat(&st))))
	out.Ino = n.StableAttr().Ino
	out.SetTimeout(longTimeout * 1e9)
	return 0
}

// getattrFd answers a GETATTR from fd, an fd of the node's file in the upper dir;
// false if it cannot be stat'ed.
func (n *node) getattrFd(fd int, out *fuse.AttrOut) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	cow.ShownMode(&st)
	if l := n.fs.upperLayer(); l != nil && l.override != nil {
		l.overrideFd(&st, fd)
	}
	out.FromStat(toSyscallStat(n.fs.ids.shown(&st)))
	out.Ino = n.StableAttr().Ino
	out.SetTimeout(longTimeout * 1e9)
	return true
}

// getattrUnlinked answers fstat of a file whose name is gone, through its handle.
func (n *node) getattrUnlinked(f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fd, upper := n.unlinkedFd(f)
	if fd < 0 {
		// A symlink or special file: its last known attributes, without a name.
		n.mu.Lock()
		e := n.ent
		n.mu.Unlock()
		typ := n.StableAttr().Mode & unix.S_IFMT
		if e == nil || typ == unix.S_IFREG || typ == unix.S_IFDIR {
			return syscall.ENOENT
		}
		st := e.st.full()
		st.Nlink = 0
		out.FromStat(toSyscallStat(n.fs.ids.shown(&st)))
		out.Ino = n.StableAttr().Ino
		return 0
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return errno("fstat", err)
	}
	if !upper {
		st.Nlink = 0 // a layer's file, whose name the merged view no longer has
	}
	if n.fs.xperm != 0 {
		n.overrideUnlinked(&st, fd, upper)
	}
	out.FromStat(toSyscallStat(n.fs.ids.shown(&st)))
	out.Ino = n.StableAttr().Ino
	return 0
}

// statLayer stats the node in its top layer.
func (n *node) statLayer(s *stack, e *entry) (unix.Stat_t, error) {
	var st unix.Stat_t
	l := s.layers[e.layers[0]]
	if n == n.fs.root {
		err := unix.Fstat(l.fd, &st)
		if err == nil && l.override != nil {
			l.overrideFd(&st, l.fd)
		}
		return st, err
	}
	dir, name := path.Split(n.rel())
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return st, err
	}
	defer unix.Close(dfd)
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	cow.ShownMode(&st)
	if err == nil && l.override != nil {
		l.overrideAt(&st, dfd, name)
	}
	return st, err
}

var _ = (fusefs.NodeReadlinker)((*node)(nil))

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if l := n.cachedLink(); l != nil {
		return l, 0
	}
	l, err := n.readLink()
	if errors.Is(err, unix.ESTALE) {
		// The name was replaced between the kernel's lookup and this request; the
		// target was saved when it was (pinForRemoval), unless it raced with that.
		if l := n.cachedLink(); l != nil {
			return l, 0
		}
	}
	if err != nil {
		return nil, errno("readlink", err)
	}
	n.mu.Lock()
	n.fst().link = l
	n.mu.Unlock()
	return l, 0
}

func (n *node) cachedLink() []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fstIf().link
}

// readLink reads the symlink's target from its top layer.
func (n *node) readLink() ([]byte, error) {
	e, s, err := n.resolve()
	if err != nil {
		return nil, err
	}
	if e.st.Mode&unix.S_IFMT != unix.S_IFLNK || e.ino != n.StableAttr().Ino {
		return nil, unix.ESTALE // the name now holds another inode
	}
	dir, name := path.Split(n.rel())
	dfd, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	for l := 256; ; l *= 2 {
		buf := make([]byte, l)
		sz, err := unix.Readlinkat(dfd, name, buf)
		if errors.Is(err, unix.EACCES) {
			// Unprivileged: the layer's copy of the dir may deny its owner
			// search (see lookupOne).
			err = cow.WithDirAccess(dfd, func() (err error) {
				sz, err = unix.Readlinkat(dfd, name, buf)
				return err
			})
		}
		if err != nil {
			return nil, err
		}
		if sz < len(buf) {
			return buf[:sz], nil
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
