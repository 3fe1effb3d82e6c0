package fs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"
)

// layer is one directory of the stack, held open so that every path is resolved
// relative to it and never above it.
type layer struct {
	path  string
	fd    int // O_PATH|O_DIRECTORY
	upper bool
	// lent: a later stack took fd over (shareFds) and closes it; this one does
	// not.
	lent  atomic.Bool
	links map[uint64][]string // multiply-linked files by inode, built on demand under cuMu
	inos  inoMap              // numbers kept across a commit --rebase (inomap.go), or nil
	// override: the xattrs, in order, that hold its files' owners and modes
	// under xattr_permissions (xperm.go); nil without.
	override []string
}

// stack is the ordered set of layers: the upper first (when writable), then the
// lowers top first. It is immutable; Rebase swaps in a new one.
type stack struct {
	layers []*layer
	work   int // O_PATH dir fd of the work dir, -1 when read-only
	// workLent: a later stack took work over (shareFds).
	workLent atomic.Bool
	format   cow.Format
	dev      uint64          // st_dev of the first layer, the base of inode numbers
	kept     map[uint64]bool // the numbers the layers' inode maps keep (freeIno)
}

func openStack(lowers []string, upper, work string, f cow.Format) (*stack, error) {
	s := &stack{work: -1, format: f}
	add := func(p string, up bool) error {
		if a, err := filepath.Abs(p); err == nil {
			p = a
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open layer", Path: p, Err: err}
		}
		s.layers = append(s.layers, &layer{path: p, fd: fd, upper: up})
		return nil
	}
	if upper != "" {
		if err := add(upper, true); err != nil {
			s.close()
			return nil, err
		}
		if work == "" {
			s.close()
			return nil, fmt.Errorf("open stack: a work dir is needed with an upper dir")
		}
		if err := os.MkdirAll(work, 0o700); err != nil {
			s.close()
			return nil, err
		}
		fd, err := unix.Open(work, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			s.close()
			return nil, &os.PathError{Op: "open work dir", Path: work, Err: err}
		}
		s.work = fd
		var ust, wst unix.Stat_t
		if unix.Fstat(s.layers[0].fd, &ust) == nil && unix.Fstat(fd, &wst) == nil && ust.Dev != wst.Dev {
			s.close()
			return nil, fmt.Errorf("open stack: work dir %s is not on the filesystem of upper dir %s", work, upper)
		}
		// Copies are built in the work dir, so they would inherit a default ACL
		// it got from the dir it was made in: ACLs their lower entries never had
		// (and, in a copied-up dir, umask ignored for new entries). Kernel
		// overlayfs drops its work dir's ACLs too.
		for _, x := range []string{aclDefaultXattr, aclAccessXattr} {
			if err := unix.Fremovexattr(fd, x); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
				s.close()
				return nil, &os.PathError{Op: "remove ACL of work dir", Path: work, Err: err}
			}
		}
		// Copy-ups interrupted by a crash leave temp entries behind.
		if ents, err := os.ReadDir(work); err == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "copyup-") {
					_ = os.RemoveAll(filepath.Join(work, e.Name()))
				}
			}
		}
	}
	for _, l := range lowers {
		if err := add(l, false); err != nil {
			s.close()
			return nil, err
		}
	}
	if len(s.layers) == 0 {
		return nil, fmt.Errorf("open stack: no layers")
	}
	var st unix.Stat_t
	if err := unix.Fstat(s.layers[0].fd, &st); err != nil {
		s.close()
		return nil, err
	}
	s.dev = st.Dev
	return s, nil
}

func (s *stack) close() {
	for _, l := range s.layers {
		if !l.lent.Load() {
			unix.Close(l.fd)
		}
	}
	if s.work >= 0 && !s.workLent.Load() {
		unix.Close(s.work)
	}
}

// shareFds makes s, the stack a Rebase puts in place of old, use old's fds of
// the lower layers both have (the same dir by path: the layer cache's dirs never
// change) and of the work dir, closing its own, and makes s the one to close
// them. old stays open until the unmount, as operations that loaded it may still
// run: without this every Rebase kept a dir fd for each layer, and listings of a
// container rebased often enough failed with EMFILE under a low open-file limit
// (review rev21-diff3). Now a Rebase keeps the old upper's fd only.
func (s *stack) shareFds(old *stack) {
	for _, nl := range s.layers {
		if nl.upper {
			continue
		}
		for _, ol := range old.layers {
			if !ol.upper && ol.path == nl.path && !ol.lent.Load() {
				unix.Close(nl.fd)
				nl.fd = ol.fd
				ol.lent.Store(true)
				break
			}
		}
	}
	if s.work >= 0 && old.work >= 0 && !old.workLent.Load() && sameFile(s.work, old.work) {
		unix.Close(s.work)
		s.work = old.work
		old.workLent.Store(true)
	}
}

func sameFile(a, b int) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(a, &sa) == nil && unix.Fstat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

func (s *stack) writable() bool { return len(s.layers) > 0 && s.layers[0].upper }

// openDir opens the directory rel (slash separated, "" for the root) in layer li
// without following any symlink and without leaving the layer. The caller closes it.
// Paths longer than the kernel takes in one call are walked in pieces.
//
// Unprivileged, a layer's copy of a dir on the way may deny its owner search
// (an image's 0000 dir the user made 0700 through the mount: the kernel allowed
// the request by the merged mode): on EACCES, and only then, the path is walked
// again one name at a time, each dir made u+x for the open of the next name
// (openDirAsOwner). The last dir's own mode still binds the open's flags.
func (s *stack) openDir(li int, rel string, flags uint64) (int, error) {
	fd, err := s.openDir1(li, rel, flags)
	if errors.Is(err, unix.EACCES) && cow.Unprivileged() {
		return openDirAsOwner(s.layers[li].fd, rel, flags)
	}
	return fd, err
}

// openDirAsOwner is openDir's walk for a path through dirs whose modes deny
// their owner search: each name is opened beneath the dir before it, through
// cow.WithDirAccess.
func openDirAsOwner(base int, rel string, flags uint64) (int, error) {
	var names []string
	for _, c := range strings.Split(rel, "/") {
		if c != "" && c != "." {
			names = append(names, c)
		}
	}
	if len(names) == 0 {
		return openBeneath(base, ".", flags)
	}
	cur, own := base, -1
	for i, c := range names {
		fl := uint64(unix.O_PATH)
		if i == len(names)-1 {
			fl = flags
		}
		var fd int
		dir := cur
		err := cow.WithDirAccess(dir, func() (err error) {
			fd, err = openBeneath(dir, c, fl)
			return err
		})
		if own >= 0 {
			unix.Close(own)
		}
		if err != nil {
			return -1, err
		}
		cur, own = fd, fd
	}
	return cur, nil
}

func (s *stack) openDir1(li int, rel string, flags uint64) (int, error) {
	if rel == "" {
		rel = "."
	}
	base := s.layers[li].fd
	own := -1
	for len(rel) > maxOpenPath {
		i := strings.LastIndexByte(rel[:maxOpenPath], '/')
		if i <= 0 {
			return -1, unix.ENAMETOOLONG
		}
		fd, err := openBeneath(base, rel[:i], unix.O_PATH)
		if own >= 0 {
			unix.Close(own)
		}
		if err != nil {
			return -1, err
		}
		base, own, rel = fd, fd, rel[i+1:]
	}
	fd, err := openBeneath(base, rel, flags)
	if own >= 0 {
		unix.Close(own)
	}
	return fd, err
}

const maxOpenPath = 4000

func openBeneath(dirfd int, rel string, flags uint64) (int, error) {
	return openat2Beneath(dirfd, rel, flags|unix.O_DIRECTORY)
}

// openat2Beneath opens rel beneath dirfd with flags (and O_NOFOLLOW,
// O_CLOEXEC), following no symlink on the way. O_NOATIME is dropped where the
// caller does not own the file (EPERM), as cow.OpenNoatime does.
func openat2Beneath(dirfd int, rel string, flags uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EXDEV) && how.Resolve&unix.RESOLVE_NO_XDEV != 0:
			// A mount point inside a layer: allow crossing it, still beneath.
			how.Resolve &^= unix.RESOLVE_NO_XDEV
			continue
		case errors.Is(err, unix.EPERM) && how.Flags&unix.O_NOATIME != 0:
			how.Flags &^= unix.O_NOATIME
			continue
		}
		return fd, err
	}
}

// openLowerFile opens rel, a regular file of the read-only layer li, for
// reading, in one openat2 beneath the layer that follows no symlink on the way:
// what openDir and openFile do in three calls. ok is false where it cannot be
// done so (a path too long for one call, a dir on the way that denies search,
// which openDir's walk handles); the caller then takes that way.
func (s *stack) openLowerFile(li int, rel string) (fd int, ok bool, err error) {
	if len(rel) > maxOpenPath || s.layers[li].upper {
		return -1, false, nil
	}
	fd, err = openat2Beneath(s.layers[li].fd, rel, unix.O_RDONLY|unix.O_NOATIME)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENAMETOOLONG) {
		return -1, false, nil
	}
	return fd, true, err
}

// entry is what one name resolves to in the union.
type entry struct {
	layers []int // for a dir: every contributing layer, top first; else exactly one
	st     attrs
	ino    uint64
	gen    uint64
	one    [1]int // layers' array when there is one (lookupOne): one allocation less
}

// attrs is what an entry keeps of its stat(2): 96 bytes instead of 144. A walk
// leaves the kernel holding an inode, and so this process an entry, per name.
type attrs struct {
	Dev, Ino, Rdev                        uint64
	Size, Blocks                          int64
	atimSec, mtimSec, ctimSec             int64
	Nlink, Mode, Uid, Gid                 uint32
	blksize, atimNsec, mtimNsec, ctimNsec int32
}

func attrsOf(st *unix.Stat_t) attrs {
	return attrs{
		Dev: st.Dev, Ino: st.Ino, Rdev: st.Rdev, Size: st.Size, Blocks: st.Blocks,
		atimSec: st.Atim.Sec, mtimSec: st.Mtim.Sec, ctimSec: st.Ctim.Sec,
		Nlink: uint32(min(st.Nlink, math.MaxUint32)), Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		blksize: int32(st.Blksize), atimNsec: int32(st.Atim.Nsec), mtimNsec: int32(st.Mtim.Nsec), ctimNsec: int32(st.Ctim.Nsec),
	}
}

// full returns the stat that a was made from.
func (a *attrs) full() unix.Stat_t {
	return unix.Stat_t{
		Dev: a.Dev, Ino: a.Ino, Nlink: uint64(a.Nlink), Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Rdev: a.Rdev,
		Size: a.Size, Blksize: int64(a.blksize), Blocks: a.Blocks,
		Atim: unix.Timespec{Sec: a.atimSec, Nsec: int64(a.atimNsec)},
		Mtim: unix.Timespec{Sec: a.mtimSec, Nsec: int64(a.mtimNsec)},
		Ctim: unix.Timespec{Sec: a.ctimSec, Nsec: int64(a.ctimNsec)},
	}
}

// fstatat sets e.st from a stat of name in dfd.
func (e *entry) fstatat(dfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	e.st = attrsOf(&st)
	return nil
}

func (e *entry) isDir() bool { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (e *entry) isReg() bool { return e.st.Mode&unix.S_IFMT == unix.S_IFREG }

// inUpper reports whether the entry's top layer is the upper dir.
func (e *entry) inUpper(s *stack) bool { return s.layers[e.layers[0]].upper }

// lookupIn resolves name inside the directory rel whose contributing layers are
// dirLayers. It returns unix.ENOENT when the name is absent or whited out.
func (s *stack) lookupIn(dirLayers []int, rel, name string) (*entry, error) {
	if cow.IsReservedName(name) {
		return nil, unix.ENOENT
	}
	var e *entry
	for _, li := range dirLayers {
		dfd, err := s.openDir(li, rel, unix.O_PATH)
		if err != nil {
			if notInLayer(err) {
				continue
			}
			return nil, err
		}
		stop, err := s.lookupOne(dfd, li, name, &e)
		unix.Close(dfd)
		if err != nil {
			return nil, err
		}
		if stop {
			break
		}
	}
	if e == nil {
		return nil, unix.ENOENT
	}
	return e, nil
}

// dirFds holds the directory rel open in each of its layers, for many lookups.
type dirFds struct {
	layers []int
	fds    []int // -1 where the layer lacks the dir
	weight int64 // of dirFdSlots, given back at close
}

// dirFdSlots bounds the fds open dirFds hold at once, for every mount of the
// process: each holds one per layer of its directory, so concurrent listings of
// a deep image went past the open-file limit that MaxLayers sized its depth to
// (review rev21-diff2: 40 at once under 1,200 files, 321 layers). It has room
// for a listing of the deepest image MaxLayers allows; past that, listings and
// removals wait for each other. A holder never opens another, so none waits
// while holding.
var dirFdSlots struct {
	once sync.Once
	sem  *semaphore.Weighted
	max  int64
}

func dirFdSem() (*semaphore.Weighted, int64) {
	dirFdSlots.once.Do(func() {
		dirFdSlots.max = int64(MaxLayers() + 1)
		dirFdSlots.sem = semaphore.NewWeighted(dirFdSlots.max)
	})
	return dirFdSlots.sem, dirFdSlots.max
}

func (s *stack) openDirFds(dirLayers []int, rel string) (*dirFds, error) {
	sem, most := dirFdSem()
	d := &dirFds{layers: dirLayers, weight: min(int64(len(dirLayers)), most)}
	_ = sem.Acquire(context.Background(), d.weight) // (fails only for a cancelled context)
	for _, li := range dirLayers {
		fd, err := s.openDir(li, rel, unix.O_PATH)
		if err != nil {
			if notInLayer(err) {
				fd = -1
			} else {
				d.close()
				return nil, err
			}
		}
		d.fds = append(d.fds, fd)
	}
	return d, nil
}

// upperFd returns the directory's fd in the upper layer (an O_PATH fd, for *at
// calls), or -1 if it is not there.
func (d *dirFds) upperFd(s *stack) int {
	if len(d.layers) > 0 && s.layers[d.layers[0]].upper {
		return d.fds[0]
	}
	return -1
}

// fdOf returns the directory's fd in layer li, or -1.
func (d *dirFds) fdOf(li int) int {
	for i, l := range d.layers {
		if l == li {
			return d.fds[i]
		}
	}
	return -1
}

// lowerHasIn is lowerHas through the open dirs.
func (s *stack) lowerHasIn(d *dirFds, name string) bool {
	if cow.IsReservedName(name) {
		return false
	}
	var e *entry
	for i, li := range d.layers {
		if d.fds[i] < 0 || s.layers[li].upper {
			continue
		}
		stop, err := s.lookupOne(d.fds[i], li, name, &e)
		if err != nil {
			return false
		}
		if stop {
			break
		}
	}
	return e != nil
}

func (d *dirFds) close() {
	for _, fd := range d.fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if d.weight > 0 {
		sem, _ := dirFdSem()
		sem.Release(d.weight)
		d.weight = 0
	}
}

// lookup is lookupIn through the open dirs.
func (s *stack) lookup(d *dirFds, name string) (*entry, error) {
	return s.lookupFrom(d, name, -1)
}

// lookupFrom is lookup of a name that a listing of the directory (readDir) found
// first in layer from: the layers above hold neither the name nor its whiteout,
// so it starts there, sparing a stat of the name and of its whiteout in each.
func (s *stack) lookupFrom(d *dirFds, name string, from int) (*entry, error) {
	if cow.IsReservedName(name) {
		return nil, unix.ENOENT
	}
	var e *entry
	skip := from >= 0 && slices.Contains(d.layers, from)
	for i, li := range d.layers {
		if skip && li != from {
			continue
		}
		skip = false
		if d.fds[i] < 0 {
			continue
		}
		stop, err := s.lookupOne(d.fds[i], li, name, &e)
		if err != nil {
			return nil, err
		}
		if stop {
			break
		}
	}
	if e == nil {
		return nil, unix.ENOENT
	}
	return e, nil
}

// lookupOne looks name up in one layer's directory dfd, extending *e. It reports
// whether the lower layers are hidden from here on.
//
// Unprivileged, a layer's copy of a dir may deny its owner, the user, search or
// read (0000, 0300: a user's chmod through the mount, an image's 0000 dir) while
// the kernel has allowed the lookup by the merged dir's mode (that of the top
// copy): the stat, and the open for the opaque check (O_PATH, then
// cow.IsOpaqueDir), go through cow.WithDirAccess. The opaque check is never
// skipped: "not opaque" from a check it could not make would show the lower
// entries an opaque dir hides once its mode lets them be listed.
func (s *stack) lookupOne(dfd, li int, name string, e **entry) (stop bool, err error) {
	var st unix.Stat_t
	// (The fallbacks run only on EACCES: this is every LOOKUP's path.)
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.EACCES) {
		err = cow.WithDirAccess(dfd, func() error { return unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	}
	if errors.Is(err, unix.ENOENT) {
		var wst unix.Stat_t
		werr := unix.Fstatat(dfd, cow.WhiteoutName(name), &wst, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(werr, unix.EACCES) {
			werr = cow.WithDirAccess(dfd, func() error {
				return unix.Fstatat(dfd, cow.WhiteoutName(name), &wst, unix.AT_SYMLINK_NOFOLLOW)
			})
		}
		if werr == nil {
			return true, nil
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	cow.ShownMode(&st) // not a mode this process has widened for the moment
	if cow.IsOverlayWhiteout(&st) {
		return true, nil
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if *e == nil {
		if l := s.layers[li]; l.override != nil {
			l.overrideAt(&st, dfd, name)
		}
		ne := &entry{st: attrsOf(&st), one: [1]int{li}}
		ne.layers = ne.one[:1:1]
		if err := s.identify(dfd, li, name, ne); err != nil {
			return false, err
		}
		*e = ne
		if !isDir {
			return true, nil
		}
	} else {
		if !isDir {
			return true, nil // a dir above hides a non-dir below
		}
		(*e).layers = append((*e).layers, li)
	}
	if li == len(s.layers)-1 {
		return true, nil
	}
	cfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		err = cow.WithDirAccess(dfd, func() (err error) {
			cfd, err = unix.Openat(dfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			return err
		})
	}
	if err != nil {
		return false, err
	}
	opaque, err := cow.IsOpaqueDir(cfd)
	unix.Close(cfd)
	return opaque, err
}

// origin xattr: 16 bytes, inode number and generation, little endian.
const originXattr = "trusted.layerfs.origin"

// identify fills e.ino and e.gen for the entry name in layer li. Lower entries take
// their inode number from the layer (lowers never change), or from its inode map
// (inomap.go); upper entries copied up from a lower keep the origin's number,
// stored in an xattr at copy-up.
func (s *stack) identify(dfd, li int, name string, e *entry) error {
	e.ino, e.gen = s.lowerIno(li, e.st.Dev, e.st.Ino)
	if !s.layers[li].upper {
		return nil
	}
	if v, ok := getOrigin(dfd, name, e.st.Mode); ok {
		e.ino, e.gen = v[0], v[1]
		return nil
	}
	e.gen = nativeGen(dfd, name, e.gen)
	return nil
}

// statxAt is fstatat for an entry this process just made in the upper dir dfd,
// which also returns its generation as nativeGen does (0: the filesystem keeps no
// birth time), from the same system call.
func (e *entry) statxAt(dfd int, name string) (gen uint64, err error) {
	var sx unix.Statx_t
	err = unix.Statx(dfd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx)
	if err != nil || sx.Mask&unix.STATX_BASIC_STATS != unix.STATX_BASIC_STATS {
		if err := e.fstatat(dfd, name); err != nil {
			return 0, err
		}
		return nativeGen(dfd, name, 0), nil
	}
	st := unix.Stat_t{
		Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Ino: sx.Ino, Nlink: uint64(sx.Nlink),
		Mode: uint32(sx.Mode), Uid: sx.Uid, Gid: sx.Gid, Rdev: unix.Mkdev(sx.Rdev_major, sx.Rdev_minor),
		Size: int64(sx.Size), Blksize: int64(sx.Blksize), Blocks: int64(sx.Blocks),
		Atim: unix.Timespec{Sec: sx.Atime.Sec, Nsec: int64(sx.Atime.Nsec)},
		Mtim: unix.Timespec{Sec: sx.Mtime.Sec, Nsec: int64(sx.Mtime.Nsec)},
		Ctim: unix.Timespec{Sec: sx.Ctime.Sec, Nsec: int64(sx.Ctime.Nsec)},
	}
	e.st = attrsOf(&st)
	if sx.Mask&unix.STATX_BTIME != 0 {
		return btimeGen(&sx), nil
	}
	return 0, nil
}

// nativeGen is the generation of an entry made in the upper dir (no origin):
// its birth time tells apart files that reuse a freed inode number; def where
// the filesystem keeps none.
func nativeGen(dfd int, name string, def uint64) uint64 {
	var sx unix.Statx_t
	if unix.Statx(dfd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &sx) == nil && sx.Mask&unix.STATX_BTIME != 0 {
		return btimeGen(&sx)
	}
	return def
}

// btimeGen is the generation of an upper entry with birth time sx.Btime.
func btimeGen(sx *unix.Statx_t) uint64 {
	return uint64(sx.Btime.Sec)*1e9 + uint64(sx.Btime.Nsec) | 2
}

// CarryOrigin returns the xattr (name and value) that makes a copy of the
// upper dir entry name (in the upper dir open as dfd) keep, in another upper
// dir, the identity a mount gives it now: ino is its inode number as the
// mount shows it (lstat through the mount). An entry copied up keeps the
// origin it has; one made in the upper dir gets ino and its generation. For
// what commit --rebase carries into the new upper dir: a name that stays the
// node it was keeps the kernel's entry, and what is mounted on it.
func CarryOrigin(dfd int, name string, ino uint64) (string, []byte, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return "", nil, err
	}
	if v, ok := getOrigin(dfd, name, st.Mode); ok {
		return originXattr, originValue(v[0], v[1]), nil
	}
	return originXattr, originValue(ino, nativeGen(dfd, name, 1)), nil
}

// lowerIno returns the inode number and generation of the file st of lower layer
// li: its number in the layer, or the one its inode map keeps.
func (s *stack) lowerIno(li int, dev, ino uint64) (uint64, uint64) {
	if v, ok := s.layers[li].inos[ino]; ok {
		return v[0], v[1]
	}
	return s.freeIno(s.mapIno(dev, ino)), 1
}

func (s *stack) mapIno(dev, ino uint64) uint64 {
	swapped := (dev << 32) | (dev >> 32)
	base := (s.dev << 32) | (s.dev >> 32)
	r := swapped ^ base ^ ino
	if r <= 1 {
		r += 1 << 62 // 0 and 1 are reserved by go-fuse
	}
	return r
}

func getOrigin(dfd int, name string, mode uint32) ([2]uint64, bool) {
	var out [2]uint64
	buf := make([]byte, 16)
	var n int
	var err error
	if mode&unix.S_IFMT == unix.S_IFLNK {
		// The symlink itself (copy-up sets trusted.* on it; user.* cannot be).
		n, err = unix.Lgetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", dfd, name), originXattr, buf)
	} else {
		fd, oerr := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if oerr != nil {
			return out, false
		}
		defer unix.Close(fd)
		p := procFd(fd)
		n, err = unix.Getxattr(p, originXattr, buf)
		if err != nil {
			n, err = unix.Getxattr(p, "user.layerfs.origin", buf)
		}
	}
	if err != nil || n != 16 {
		return out, false
	}
	out[0] = binary.LittleEndian.Uint64(buf)
	out[1] = binary.LittleEndian.Uint64(buf[8:])
	return out, true
}

func originValue(ino, gen uint64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, ino)
	binary.LittleEndian.PutUint64(b[8:], gen)
	return b
}

func procFd(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// dirent is one merged directory entry.
type dirent struct {
	name string
	li   int
	typ  uint8
}

// readDir lists the merged directory rel with contributing layers dirLayers, hiding
// whiteouts and markers. Names are in the order the top-most layer lists them.
func (s *stack) readDir(dirLayers []int, rel string) ([]dirent, error) {
	seen := map[string]bool{} // true: visible, false: hidden
	var out []dirent
	for _, li := range dirLayers {
		var dfd int
		var err error
		if !s.layers[li].upper {
			// Listing a read-only layer must not write its atime.
			dfd, err = s.openDir(li, rel, unix.O_RDONLY|unix.O_NOATIME)
		}
		if s.layers[li].upper || errors.Is(err, unix.EPERM) {
			dfd, err = s.openDir(li, rel, unix.O_RDONLY)
		}
		if errors.Is(err, unix.EACCES) {
			// Unprivileged: this layer's copy denies its owner read (see lookupOne).
			dfd, err = s.openDir(li, rel, unix.O_PATH)
			if err == nil {
				pfd := dfd
				dfd, err = cow.ReopenAsOwner(pfd, unix.O_RDONLY|unix.O_DIRECTORY)
				unix.Close(pfd)
			}
		}
		if err != nil {
			if notInLayer(err) {
				continue
			}
			return nil, err
		}
		ents, err := getdents(dfd)
		if err != nil {
			unix.Close(dfd)
			return nil, err
		}
		var hide []string
		for _, d := range ents {
			if d.name == "." || d.name == ".." {
				continue
			}
			if cow.IsReservedName(d.name) {
				if t, ok := cow.WhiteoutTarget(d.name); ok {
					hide = append(hide, t)
				}
				continue
			}
			if _, ok := seen[d.name]; ok {
				continue
			}
			if d.typ == unix.DT_CHR || d.typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				if unix.Fstatat(dfd, d.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
					if cow.IsOverlayWhiteout(&st) {
						seen[d.name] = false
						continue
					}
					d.typ = dtype(st.Mode)
				}
			}
			seen[d.name] = true
			out = append(out, dirent{name: d.name, li: li, typ: d.typ})
		}
		for _, h := range hide {
			if _, ok := seen[h]; !ok {
				seen[h] = false
			}
		}
		unix.Close(dfd)
	}
	return out, nil
}

func dtype(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	}
	return unix.DT_UNKNOWN
}

type rawDirent struct {
	name string
	typ  uint8
}

func getdents(fd int) ([]rawDirent, error) {
	var out []rawDirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		b := buf[:n]
		for len(b) > 0 {
			reclen := int(binary.LittleEndian.Uint16(b[16:18]))
			typ := b[18]
			nameb := b[19:reclen]
			if i := strings.IndexByte(string(nameb), 0); i >= 0 {
				nameb = nameb[:i]
			}
			out = append(out, rawDirent{name: string(nameb), typ: typ})
			b = b[reclen:]
		}
	}
}

// lowerHas reports whether any non-upper layer among dirLayers holds name in rel,
// ignoring whiteouts in the upper dir: when it does, removing or renaming name away
// must leave a whiteout, and a dir moved to name must be opaque.
func (s *stack) lowerHas(dirLayers []int, rel, name string) bool {
	var lower []int
	for _, li := range dirLayers {
		if !s.layers[li].upper {
			lower = append(lower, li)
		}
	}
	if len(lower) == 0 {
		return false
	}
	_, err := s.lookupIn(lower, rel, name)
	return err == nil
}

// notInLayer reports whether opening a directory in one layer failed only because
// that layer has no such directory (missing, or a file or symlink in its place): the
// lookup goes on in the layers below.
func notInLayer(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}
