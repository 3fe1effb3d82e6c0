package fs

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"sync/atomic"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// splitRel splits a relative path into its components ("" has none).
func splitRel(rel string) []string {
	if rel == "" {
		return nil
	}
	return strings.Split(rel, "/")
}

// rootEntry resolves the union root.
func (fsys *unionFS) rootEntry() (*entry, *stack, error) { return fsys.root.resolve() }

// copyUpPath makes sure every component of rel is in the upper dir, copying up from
// the lowers top-down, and returns the entry of rel. dataLimit applies to the last
// component (-1: all data). Cached entries of known nodes are updated on the way.
// The caller holds the barrier; copyUpPath takes cuMu itself.
func (fsys *unionFS) copyUpPath(rel string, dataLimit int64) (*entry, *stack, error) {
	if e, s, ok := fsys.knownUpper(rel); ok {
		return e, s, nil // nothing to copy: no lock, no change of any directory
	}
	fsys.cuMu.Lock()
	defer fsys.cuMu.Unlock()
	defer fsys.changed()()
	return fsys.copyUpPathOpts(rel, dataLimit, true, true)
}

// knownUpper returns the resolution of rel if it is a known node already in the
// upper dir (and so are its parents): the common case of a rename, link or write
// of an upper file, which then needs no walk from the root.
func (fsys *unionFS) knownUpper(rel string) (*entry, *stack, bool) {
	in := fsys.root.EmbeddedInode()
	for _, c := range splitRel(rel) {
		if in = in.GetChild(c); in == nil {
			return nil, nil, false
		}
	}
	e, s, err := in.Operations().(*node).resolve()
	if err != nil || !s.writable() || !e.inUpper(s) {
		return nil, nil, false
	}
	return e, s, true
}

func (fsys *unionFS) copyUpPathLocked(rel string, dataLimit int64, links bool) (*entry, *stack, error) {
	return fsys.copyUpPathOpts(rel, dataLimit, links, false)
}

// bigCopy is the least data whose copy-up lets go of cuMu while it copies (see
// copyUpPathOpts).
const bigCopy = 1 << 20

// copyUpHook, when set (tests), runs in a copy-up that let go of cuMu, before it
// copies.
var copyUpHook atomic.Pointer[func()]

// errCopyStale is a copy-up abandoned because its entry changed while cuMu was let
// go for its data copy.
var errCopyStale = fmt.Errorf("entry changed during its copy-up: %w", unix.EIO)

// copyUpPathOpts is copyUpPathLocked; with release, the copy-up of rel itself, a
// regular file with bigCopy or more bytes to copy, lets go of cuMu while it copies
// the data into the work dir (nothing visible), so that other copy-ups go on
// meanwhile instead of waiting, for seconds, for a big file's. Having cuMu back, it
// looks the name up again before it places the copy: copied up meanwhile by
// another, the copy is dropped for that one; deleted or replaced, the copy-up
// starts over. Copy-ups of one file wait for each other (fsys.copying).
func (fsys *unionFS) copyUpPathOpts(rel string, dataLimit int64, links, release bool) (*entry, *stack, error) {
	cur, s, err := fsys.rootEntry()
	if err != nil {
		return nil, nil, err
	}
	if !s.writable() {
		return nil, nil, unix.EROFS
	}
	curIn := fsys.root.EmbeddedInode()
	prefix := ""
	comps := splitRel(rel)
	for i, c := range comps {
		stale := 0 // copies abandoned: after a few, it copies holding cuMu
	again:
		e, err := s.lookupIn(cur.layers, prefix, c)
		if err != nil {
			return nil, nil, err
		}
		var child *fusefs.Inode
		if curIn != nil {
			child = curIn.GetChild(c)
		}
		if !e.inUpper(s) {
			limit := int64(-1)
			if i == len(comps)-1 {
				limit = dataLimit
			}
			size := e.st.Size
			if limit >= 0 && limit < size {
				size = limit
			}
			p := path.Join(prefix, c)
			var done chan struct{}
			if release && stale < 3 && i == len(comps)-1 && e.st.Mode&unix.S_IFMT == unix.S_IFREG && size >= bigCopy {
				if ch := fsys.copying[p]; ch != nil {
					fsys.cuMu.Unlock() // another copies it: wait, and look again
					<-ch
					fsys.cuMu.Lock()
					if cur, err = fsys.relookDir(s, prefix); err != nil {
						return nil, nil, err
					}
					goto again
				}
				done = make(chan struct{})
				if fsys.copying == nil {
					fsys.copying = map[string]chan struct{}{}
				}
				fsys.copying[p] = done
			}
			ne, err := fsys.copyUpOne(s, prefix, c, e, cur.layers, limit, done != nil)
			if done != nil {
				delete(fsys.copying, p)
				close(done)
			}
			if errors.Is(err, errCopyStale) && stale < 8 {
				stale++
				if cur, err = fsys.relookDir(s, prefix); err != nil {
					return nil, nil, err
				}
				goto again // (a name changed eight times over: give up, EIO)
			}
			if err != nil {
				return nil, nil, err
			}
			if links && !e.isDir() && e.st.Nlink > 1 {
				if err := fsys.copyUpLinks(s, path.Join(prefix, c), e); err != nil {
					return nil, nil, err
				}
			}
			e = ne
			if child != nil {
				cn := child.Operations().(*node)
				cn.mu.Lock()
				if f := cn.file.Load(); f != nil && f.ptOpens > 0 {
					f.ptPinned = true
				}
				cn.dropLowerFd()
				cn.mu.Unlock()
				cn.setEntry(e)
				// The copy is a new inode (its ctime, and a dir's size and
				// blocks, are the upper copy's): attributes the kernel holds
				// from the lower entry must not stand for an hour. Attributes
				// only (offset -1): no page locks, so not in the background.
				child.NotifyContent(-1, 0)
				if !fsys.noOpen && e.st.Mode&unix.S_IFMT == unix.S_IFREG {
					// Pages cached from the lower file (FOPEN_KEEP_CACHE) must not
					// outlive it: passthrough writes to the copy bypass them.
					go child.NotifyContent(0, 0)
				}
			}
		}
		cur = e
		curIn = child
		prefix = path.Join(prefix, c)
	}
	return cur, s, nil
}

// copyUpOne copies the entry name of dir (already in the upper; its layers are
// dirLayers, as resolved before any let-go of cuMu) up from its top layer. It
// fails with errCopyStale if, when the copy is to be placed, the name no longer
// is e: an unlink takes no copy-up lock once the directory is in the upper dir,
// so without this look a file deleted during its copy-up came back (OCI
// whiteouts) or the copy-up failed with EEXIST (overlay whiteouts). With
// release, it lets go of cuMu while it copies the data.
func (fsys *unionFS) copyUpOne(s *stack, dir, name string, e *entry, dirLayers []int, limit int64, release bool) (*entry, error) {
	src, err := s.openDir(e.layers[0], dir, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(src)
	dst, err := s.openDir(0, dir, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dst)
	// A stale whiteout cannot sit beside a visible entry, but an OCI one of an
	// earlier generation might: clear the name.
	opts := cow.CopyUpOptions{
		Work:      s.work,
		DataLimit: limit,
		Xattrs:    map[string][]byte{originXattr: originValue(e.ino, e.gen)},
		// Copy-up does not change the parent as the user sees it.
		KeepDirTimes: true,
		PlaceLock:    &fsys.dirMu,
	}
	fsys.copyUpOverrides(opts.Xattrs, e)
	if release {
		opts.Build = func(build func() error) error {
			fsys.cuMu.Unlock()
			defer fsys.cuMu.Lock()
			if h := copyUpHook.Load(); h != nil {
				(*h)()
			}
			return build()
		}
	}
	// With the directory's entries held still (PlaceLock): renames wait for this
	// request (pathlock.go), so dir still names the same place, but what is there
	// under name may have changed.
	// The directory's layers are looked up again too: while cuMu was let go, a
	// rename's whole-tree copy-up may have made it opaque and cleared the
	// whiteouts in it, and dirLayers would then find a deleted lower file again.
	// (Only after a let-go: holding cuMu throughout, no whole-tree copy-up can
	// have run, and a walk from the root for every small copy-up is not free.)
	opts.Place = func() error {
		layers := dirLayers
		if release {
			pe, _, err := fsys.lookupPath(s, dir)
			if err != nil || !pe.inUpper(s) || !sameDir(dst, &pe.st) {
				return errCopyStale
			}
			layers = pe.layers
		}
		now, err := s.lookupIn(layers, dir, name)
		if err != nil || now.inUpper(s) || now.ino != e.ino || now.layers[0] != e.layers[0] ||
			now.st.Ino != e.st.Ino || now.st.Dev != e.st.Dev {
			return errCopyStale
		}
		return nil
	}
	err = cow.CopyUp(src, dst, name, opts)
	if err != nil {
		return nil, err
	}
	ne := &entry{ino: e.ino, gen: e.gen}
	if e.isDir() {
		ne.layers = append([]int{0}, e.layers...)
	} else {
		ne.layers = []int{0}
	}
	if err := cow.WithDirAccess(dst, func() error {
		if err := ne.fstatat(dst, name); err != nil {
			return err
		}
		fsys.upperOverrideAt(ne, dst, name)
		return nil
	}); err != nil {
		return nil, err
	}
	return ne, nil
}

// relookDir resolves the directory rel again, for a copy-up that starts over: the
// resolution it had may be stale (see copyUpOne).
func (fsys *unionFS) relookDir(s *stack, rel string) (*entry, error) {
	e, _, err := fsys.lookupPath(s, rel)
	if err != nil {
		return nil, err
	}
	if !e.inUpper(s) {
		return nil, unix.ENOENT // removed, or replaced by a lower entry's name
	}
	return e, nil
}

// sameDir reports whether the open dir fd is the file st describes.
func sameDir(fd int, st *attrs) bool {
	var fst unix.Stat_t
	return unix.Fstat(fd, &fst) == nil && fst.Dev == st.Dev && fst.Ino == st.Ino
}

// copyUpLinks links every other visible name of the lower inode of e (just copied
// up as rel) to the upper copy, so hard links stay links. The names go by
// directory: each dir is resolved, copied up and locked once for all of its
// names (a file of 60,000 links in one dir took 10 s name by name, every other
// copy-up of the mount waiting meanwhile).
func (fsys *unionFS) copyUpLinks(s *stack, rel string, e *entry) error {
	li := e.layers[0]
	paths, err := s.linksOf(li, e.st.Ino)
	if err != nil {
		return err
	}
	byDir := map[string][]string{}
	var dirs []string
	for _, p := range paths {
		if p == rel {
			continue
		}
		dir, name := path.Split(p)
		dir = strings.TrimSuffix(dir, "/")
		if _, ok := byDir[dir]; !ok {
			dirs = append(dirs, dir)
		}
		byDir[dir] = append(byDir[dir], name)
	}
	// shows: name in dir (whose layers are dirLayers) is still this lower
	// file, not hidden, shadowed by another layer or copied up already.
	shows := func(dirLayers []int, dir, name string) bool {
		ce, err := s.lookupIn(dirLayers, dir, name)
		return err == nil && !ce.inUpper(s) && ce.layers[0] == li && ce.st.Ino == e.st.Ino
	}
	for _, dir := range dirs {
		pe, _, err := fsys.lookupPath(s, dir)
		if err != nil {
			continue
		}
		var names []string
		for _, name := range byDir[dir] {
			if shows(pe.layers, dir, name) {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			continue
		}
		if _, _, err := fsys.copyUpPathLocked(dir, -1, false); err != nil {
			return err
		}
		if h := linkUpHook.Load(); h != nil {
			(*h)()
		}
		if err := fsys.linkUpperNames(s, rel, dir, names, shows); err != nil {
			return err
		}
	}
	return nil
}

// linkUpperNames hard-links the upper entry from to each of names in the
// upper dir dir, holding dirMu (a batch at a time): an unlink takes no copy-up lock, so each name
// is looked at again under it (still), or the link would bring a deleted
// name back (OCI whiteouts) or fail on its whiteout (overlay). dir's times
// are put back: these links are copy-up's, not the user's.
func (fsys *unionFS) linkUpperNames(s *stack, from, dir string, names []string, still func(dirLayers []int, dir, name string) bool) error {
	fdir, fname := path.Split(from)
	fd, err := s.openDir(0, fdir, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	td, err := s.openDir(0, dir, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(td)
	// dirMu in turns of linkBatch names: held for all of a dir's 60,000 it
	// stalled every create and unlink of the mount for a second.
	for len(names) > 0 {
		n := min(len(names), linkBatch)
		if err := fsys.linkBatchLocked(s, fd, fname, td, dir, names[:n], still); err != nil {
			return err
		}
		names = names[n:]
	}
	return nil
}

// linkBatch is how many links linkUpperNames makes per hold of dirMu.
const linkBatch = 256

func (fsys *unionFS) linkBatchLocked(s *stack, fd int, fname string, td int, dir string, names []string, still func(dirLayers []int, dir, name string) bool) error {
	fsys.dirMu.Lock()
	defer fsys.dirMu.Unlock()
	pe, _, err := fsys.lookupPath(s, dir)
	if err != nil {
		return nil // gone meanwhile: nothing of it to link
	}
	restore, err := cow.KeepTimes(td)
	if err != nil {
		return err
	}
	for _, name := range names {
		if !still(pe.layers, dir, name) {
			continue
		}
		if err := unix.Linkat(fd, fname, td, name, 0); err != nil {
			restore()
			return err
		}
	}
	return restore()
}

// linkUpHook, when set (tests), runs in copyUpLinks before the links of each dir are made.
var linkUpHook atomic.Pointer[func()]

// linkUpper hard-links the upper entry from to the upper name to.
func linkUpper(s *stack, from, to string) error {
	fdir, fname := path.Split(from)
	tdir, tname := path.Split(to)
	fd, err := s.openDir(0, fdir, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	td, err := s.openDir(0, tdir, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(td)
	return unix.Linkat(fd, fname, td, tname, 0)
}

// lookupPath resolves rel from the root without using nodes.
func (fsys *unionFS) lookupPath(s *stack, rel string) (*entry, *stack, error) {
	cur, s2, err := fsys.rootEntry()
	if err != nil {
		return nil, nil, err
	}
	if s2 != s {
		return nil, nil, unix.ESTALE
	}
	prefix := ""
	for _, c := range splitRel(rel) {
		cur, err = s.lookupIn(cur.layers, prefix, c)
		if err != nil {
			return nil, nil, err
		}
		prefix = path.Join(prefix, c)
	}
	return cur, s, nil
}

// linksOf returns the paths of layer li whose inode is ino, from an index of
// multiply-linked non-directories built on first use (lowers never change).
// It walks the directory held open, not l.path: containers/storage names its
// lowers by symlinks (lowerdir=l/ID), which a walk from the name would not enter.
func (s *stack) linksOf(li int, ino uint64) ([]string, error) {
	l := s.layers[li]
	if l.links == nil {
		idx, err := linkIndex(l.fd)
		if err != nil {
			return nil, err
		}
		l.links = idx
	}
	return l.links[ino], nil
}

// linkIndex maps the inode of every multiply-linked non-directory under the
// directory dfd to its paths. It walks by directory fds: a walk by path names
// (through /proc/self/fd) failed with ENAMETOOLONG on a layer holding a path
// longer than PATH_MAX, which failed every copy-up of a hard-linked file of it,
// wherever that file was (review rev23-names). Dirs it may not read are left out.
func linkIndex(dfd int) (map[uint64][]string, error) {
	idx := map[uint64][]string{}
	var walk func(fd int, rel string) error
	walk = func(fd int, rel string) error {
		ents, err := getdents(fd)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.name == "." || e.name == ".." {
				continue
			}
			p := e.name
			if rel != "" {
				p = rel + "/" + e.name
			}
			var st unix.Stat_t
			if e.typ != unix.DT_DIR {
				if unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
					continue // gone meanwhile
				}
				if st.Mode&unix.S_IFMT != unix.S_IFDIR {
					// any type but a dir may be hard-linked (symlinks, fifos too)
					if st.Nlink > 1 {
						idx[st.Ino] = append(idx[st.Ino], p)
					}
					continue
				}
			}
			cfd, err := unix.Openat(fd, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			err = walk(cfd, p)
			unix.Close(cfd)
			if err != nil {
				return err
			}
		}
		return nil
	}
	fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return idx, walk(fd, "")
}

// copyUpTree copies the whole merged tree at rel into the upper dir and marks every
// copied dir opaque, so the upper copy no longer depends on the lowers (a directory
// rename then is a plain rename in the upper dir).
func (fsys *unionFS) copyUpTree(rel string) error {
	fsys.cuMu.Lock()
	defer fsys.cuMu.Unlock()
	defer fsys.changed()()
	return fsys.copyUpTreeLocked(rel)
}

func (fsys *unionFS) copyUpTreeLocked(rel string) error {
	e, s, err := fsys.copyUpPathLocked(rel, -1, true)
	if err != nil {
		return err
	}
	if !e.isDir() || len(e.layers) == 1 {
		return nil
	}
	// Listing the dir reads the upper copy too, which would move its atime: the
	// copy-up puts it back with the rest below.
	var st0 unix.Stat_t
	ufd, err := s.openDir(0, rel, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(ufd)
	if err := unix.Fstat(ufd, &st0); err != nil {
		return err
	}
	// Unprivileged, an upper copy the user made 0000 or 0500 is opened up to
	// them for the copies and the marker to go in, and its mode put back after.
	defer cow.OwnDirRWX(ufd)()
	ents, err := s.readDir(e.layers, rel)
	if err != nil {
		return err
	}
	for _, d := range ents {
		if err := fsys.copyUpTreeLocked(path.Join(rel, d.name)); err != nil {
			return err
		}
	}
	dfd, err := s.openDir(0, rel, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	// The marker and the cleanup are not changes the user made to the dir.
	fsys.dirMu.Lock()
	defer fsys.dirMu.Unlock()
	restore, err := cow.KeepTimes(dfd)
	if err != nil {
		return err
	}
	if err := cow.MakeOpaque(dfd, s.format); err != nil {
		return err
	}
	// The dir no longer merges: clear stale whiteouts inside it. Resolutions of
	// the dir from before the marker still list its lower layers, and a lookup
	// through one would find a deleted lower file once its whiteout is gone: the
	// epoch moves first, and a lookup that overlapped it answers uncached
	// (node.Lookup).
	fsys.epoch.Add(1)
	ents2, err := getdents(dfd)
	if err != nil {
		return err
	}
	for _, d := range ents2 {
		if d.name == "." || d.name == ".." || d.name == cow.OpaqueMarker {
			continue
		}
		if _, ok := cow.WhiteoutTarget(d.name); ok {
			_ = unix.Unlinkat(dfd, d.name, 0)
		} else if d.typ == unix.DT_CHR {
			var st unix.Stat_t
			if unix.Fstatat(dfd, d.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && cow.IsOverlayWhiteout(&st) {
				_ = unix.Unlinkat(dfd, d.name, 0)
			}
		}
	}
	fsys.epoch.Add(1)
	if err := restore(); err != nil {
		return err
	}
	ts := []unix.Timespec{st0.Atim, {Nsec: unix.UTIME_OMIT}}
	return unix.UtimesNanoAt(dfd, "", ts, unix.AT_EMPTY_PATH)
}
