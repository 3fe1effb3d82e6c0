package fs

import (
	"context"
	"hash/fnv"
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
