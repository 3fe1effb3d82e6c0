package fs

import (
	"cmp"
	"context"
	"hash/maphash"
	"slices"
	"sort"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

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

// load lists the directory; d.mu is held. A read of a directory starts with a
// fresh listing; without OPENDIR (see noopendir.go) each of its later READDIR
// requests opens a handle of its own and seeks into the listing, and cont (a seek
// to a non-zero offset) then reuses the node's newest listing, made at the start
// of that read or later, whatever changed since in the stack it was made in: as a
// handle's own snapshot, it may or may not show what was created or removed during
// the read (POSIX leaves that open), and offsets are name hashes, so a name present
// throughout is listed once even if the read moves to a newer listing. Listing
// again for every continuation after any change in the mount made a read of N
// entries cost N²/batch. READDIRPLUS attributes are never older than the reply:
// Lookup resolves afresh when anything changed since the listing.
// A listing of entries that all live in read-only layers is reused by new reads
// too while nothing changed: neither names nor attributes can have moved.
func (d *dirHandle) load(cont bool) syscall.Errno {
	n := d.n
	n.fs.listings.Add(1)
	n.fs.relist.listed(n)
	changes, ep := n.fs.changes.Load(), n.fs.epoch.Load()
	n.mu.Lock()
	l := n.dst().listing
	n.mu.Unlock()
	if l != nil && !cont && (!l.lowerOnly || l.changes != changes) {
		l = nil
	}
	if l == nil || l.epoch != ep || l.stack != n.fs.stack.Load() {
		var en syscall.Errno
		if l, en = n.list(changes, ep); en != 0 {
			return en
		}
		n.mu.Lock()
		// Keep the newest: a continuation must not go back to a listing older
		// than the one its read started with (a slow listing finishing last).
		if cur := n.dst().listing; cur == nil || cur.epoch < l.epoch || cur.epoch == l.epoch && cur.changes <= l.changes {
			n.dst().listing = l
		}
		n.mu.Unlock()
	}
	d.dirListing, d.idx, d.loaded = l, 0, true
	return 0
}

// dirListing is a merged listing with the resolution of each entry; immutable.
// It is kept with the directory's node after the read (see load), so it holds
// one small record per entry: the entry's mode and inode number are its
// resolution's, and a name is found by its offset, the key the list is sorted by.
type dirListing struct {
	list    []listEntry // ".", "..", then the names, by offset
	dotIno  uint64      // the inode numbers of "." and ".."
	dotdot  uint64
	changes uint64 // fs.changes when listed
	epoch   uint64 // fs.epoch when listed
	// lowerOnly: no entry lives in the upper dir, whose files change size and
	// times behind fs.changes (passthrough and mmap writes).
	lowerOnly bool
	stack     *stack // the stack it was listed in
}

// listEntry is one name of a dirListing and its resolution (nil for "." and "..").
type listEntry struct {
	name string
	off  uint64
	e    *entry
}

// dirEntry returns the listing's i-th entry as READDIR sends it.
func (l *dirListing) dirEntry(i int) fuse.DirEntry {
	le := &l.list[i]
	switch {
	case le.e != nil:
		return fuse.DirEntry{Name: le.name, Mode: le.e.st.Mode & unix.S_IFMT, Ino: le.e.ino, Off: le.off}
	case i == 0:
		return fuse.DirEntry{Name: le.name, Mode: unix.S_IFDIR, Ino: l.dotIno, Off: le.off}
	default:
		return fuse.DirEntry{Name: le.name, Mode: unix.S_IFDIR, Ino: l.dotdot, Off: le.off}
	}
}

// resolved returns the resolution of name listed, or nil.
func (l *dirListing) resolved(name string) *entry {
	off := nameOffset(name)
	for i := l.after(off - 1); i < len(l.list) && l.list[i].off == off; i++ {
		if l.list[i].name == name && l.list[i].e != nil {
			return l.list[i].e
		}
	}
	return nil
}

// after returns the index of the first entry whose offset is above off.
func (l *dirListing) after(off uint64) int {
	return sort.Search(len(l.list), func(i int) bool { return l.list[i].off > off })
}

// list makes the merged listing of the directory node n, taken when fs.changes
// and fs.epoch were changes and ep.
func (n *node) list(changes, ep uint64) (*dirListing, syscall.Errno) {
	e, s, err := n.resolve()
	if err != nil {
		return nil, errno("readdir", err)
	}
	rel := n.rel()
	ents, err := s.readDir(e.layers, rel)
	if err != nil {
		return nil, errno("readdir", err)
	}
	n.fs.lists.Add(1)
	l := &dirListing{changes: changes, epoch: ep, lowerOnly: true, stack: s}
	l.list = make([]listEntry, 0, len(ents)+2)
	l.dotIno, l.dotdot = n.StableAttr().Ino, 1
	if _, p := n.Parent(); p != nil {
		l.dotdot = p.StableAttr().Ino
	}
	l.list = append(l.list, listEntry{name: ".", off: 1}, listEntry{name: "..", off: 2})
	dirs, err := s.openDirFds(e.layers, rel)
	if err != nil {
		return nil, errno("readdir", err)
	}
	defer dirs.close()
	for _, de := range ents {
		ce, err := s.lookupFrom(dirs, de.name, de.li)
		if err != nil {
			continue
		}
		if ce.inUpper(s) {
			l.lowerOnly = false
		}
		l.list = append(l.list, listEntry{name: de.name, off: nameOffset(de.name), e: ce})
	}
	if len(l.list) < cap(l.list)/8*7 {
		l.list = slices.Clip(l.list) // kept: names that did not resolve leave no spare room
	}
	// Offsets derive from names, as ext4's hashed directories do, so a seek into a
	// listing that changed since (a new open, a dropped cache) lands right.
	slices.SortFunc(l.list[2:], func(a, b listEntry) int { return cmp.Compare(a.off, b.off) })
	return l, 0
}

// dirHandle is an open directory: a snapshot of its merged listing.
type dirHandle struct {
	n      *node
	mu     sync.Mutex
	loaded bool
	*dirListing
	idx int
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
		if en := d.load(false); en != 0 {
			return nil, en
		}
	}
	if d.idx >= len(d.list) {
		if c, ok := ctx.(*fuse.Context); ok {
			d.n.fs.relist.listedEnd(d.n, c.Caller.Pid)
		}
		return nil, 0
	}
	e := d.dirEntry(d.idx)
	d.idx++
	return &e, 0
}

// Seekdir continues after the entry whose offset is off.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 0 || !d.loaded {
		if en := d.load(off != 0); en != 0 {
			return en
		}
	}
	d.idx = d.after(off)
	return 0
}

// offsetSeed keys nameOffset's hash, per server: two names of one directory with
// the same offset would list as one (a seek skips past both), and an unkeyed
// hash's collisions can be made, so a hostile image could hide a file from ls.
var offsetSeed = maphash.MakeSeed()

// nameOffset is a directory offset for name: a 63-bit keyed hash above the
// offsets of "." and "..". Offsets need only hold for the server's lifetime.
func nameOffset(name string) uint64 {
	o := maphash.String(offsetSeed, name) >> 1
	if o < 3 {
		o += 3
	}
	return o
}

// Lookup serves READDIRPLUS from the resolutions made at open.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	d.mu.Lock()
	l := d.dirListing
	d.mu.Unlock()
	var e *entry
	if l != nil {
		e = l.resolved(name)
	}
	if e == nil || d.n.fs.changes.Load() != l.changes {
		return d.n.Lookup(ctx, name, out)
	}
	d.n.fs.fillEntry(e, out)
	return d.n.newChild(ctx, e, l.epoch, l.changes, l.stack), 0
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.Fsync(ctx, nil, flags)
}

var _ = (fusefs.NodeReaddirer)((*node)(nil))

// Readdir is only used when OpendirHandle is bypassed; it lists like OpendirHandle.
func (n *node) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	d := &dirHandle{n: n}
	if en := d.load(false); en != 0 {
		return nil, en
	}
	list := make([]fuse.DirEntry, len(d.list))
	for i := range list {
		list[i] = d.dirEntry(i)
	}
	return fusefs.NewListDirStream(list), 0
}
