package cow

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The tar writer shared by Diff and Export: one reproducible header per entry.
//
//   - PAX format; names relative, no "./" prefix, directories end in "/"; long and
//     non-ASCII (also non-UTF-8) names and link targets go in PAX path/linkpath records.
//   - uid/gid numeric, uname/gname empty; mode is the permission bits with
//     setuid/setgid/sticky; mtime to the nanosecond (a PAX record when it has a
//     fraction), clamped to SourceDateEpoch; atime and ctime are not stored.
//   - xattrs as SCHILY.xattr.<name> records, sorted by the writer; private xattrs
//     (trusted/user.overlay.*, trusted/user.layerfs.*: IsPrivateXattr) are never stored.
//   - hard links: the first name of an inode (by dev/ino) met in the walk carries the
//     data, the others are tar hard links to it. Only names inside the walked tree
//     are ever link targets, so a layer whose other names live in lower layers still
//     extracts on its own.
//   - sparse files are stored as plain data, holes as zeros. Go's archive/tar cannot
//     write GNU or PAX sparse entries, and plain data is what every extractor handles
//     (busybox tar and old Docker do not understand PAX sparse); the zero runs cost
//     almost nothing once compressed, holes are read with SEEK_DATA/SEEK_HOLE and not
//     from disk, and Apply turns zero runs back into holes.
//   - sockets are skipped (tar cannot hold them).

type devIno struct{ dev, ino uint64 }

// linkFirst is the first name of a hard-linked inode met in a walk, and the owner
// its header got: rootless, that comes from the inode's RootlessXattr, which the
// later names' link headers (written without reading xattrs) share.
type linkFirst struct {
	name     string
	uid, gid int
}

type tarEmitter struct {
	tw    *tar.Writer
	bw    *bufio.Writer
	links map[devIno]*linkFirst
	buf   []byte
	epoch *time.Time
	xbuf  []byte
	// rootless: the store is unprivileged, its files the user's; owners come
	// from RootlessXattr, root's where there is none (rootless.go).
	rootless bool
	// layer: the tar is a layer (Diff), whose paths Apply must take back.
	layer bool
}

// checkPath refuses, in a layer, a path Apply would refuse (maxPath): a commit
// of a tree made deeper than that through a mount made an image no mount could
// unpack (review rev21-diff2). Export writes it: a rootfs tar is not a layer.
func (e *tarEmitter) checkPath(p string) error {
	if n := pathLen(p); e.layer && n > maxPath {
		return fmt.Errorf("%w: a path of %d bytes (at most %d)", ErrUnsupported, n, maxPath)
	}
	return nil
}

func newTarEmitter(w io.Writer, epoch *time.Time) *tarEmitter {
	bw := bufio.NewWriterSize(w, 1<<20)
	return &tarEmitter{
		tw: tar.NewWriter(bw), bw: bw, links: map[devIno]*linkFirst{},
		buf: make([]byte, 1<<20), epoch: epoch, xbuf: make([]byte, 4096),
		rootless: os.Geteuid() != 0,
	}
}

// close writes the end-of-archive marker and flushes.
func (e *tarEmitter) close() error {
	if err := e.tw.Close(); err != nil {
		return err
	}
	return e.bw.Flush()
}

func (e *tarEmitter) mtime(sec, nsec int64) time.Time {
	t := time.Unix(sec, nsec)
	if e.epoch != nil && t.After(*e.epoch) {
		t = *e.epoch
	}
	return t
}

// marker writes an empty whiteout or opaque marker file. Markers carry no metadata
// of their own (mode 0, owner 0, mtime 0) so a deletion gives the same bytes
// whenever it was made.
func (e *tarEmitter) marker(name string) error {
	if err := e.checkPath(name); err != nil {
		return err
	}
	return e.tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Mode: 0, ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
	})
}

// entry writes name (the entry base in the dir open as dirfd, already lstat'ed as
// st) into the tar as path p. Sockets are skipped, and so is an entry that vanished
// (ENOENT) before its header was written: without a write barrier the walk is not a
// consistent cut anyway, and leaving out a file deleted meanwhile is what a later
// walk would do. Every other error is returned.
//
// Unprivileged, an entry whose mode denies its owner read (a 0000 /etc/shadow, a
// 4111 sudo; a 0000 or 0300 dir, whose user.* xattrs cannot be read either), or one
// in a dir its owner may not search, is read as umoci's rootless mode does: the
// first try fails with EACCES before anything is written, and the second runs with
// the entry made u+r (and the dir u+x), its modes put back as soon as its xattrs
// are read and it is open (unpriv.go).
func (e *tarEmitter) entry(dirfd int, base, p string, st *unix.Stat_t) error {
	if err := e.checkPath(p); err != nil {
		return err
	}
	err := e.entry1(dirfd, base, p, st, nop)
	if errors.Is(err, unix.EACCES) && unprivileged {
		e.forget(st, p)
		undo := widenAt(dirfd, base)
		err = e.entry1(dirfd, base, p, st, undo)
		undo()
	}
	if errors.Is(err, errVanished) {
		e.forget(st, p)
		return nil
	}
	return err
}

// forget drops p as the first name of its inode when its entry was not written.
func (e *tarEmitter) forget(st *unix.Stat_t, p string) {
	if k := (devIno{uint64(st.Dev), st.Ino}); e.links[k] != nil && e.links[k].name == p {
		delete(e.links, k)
	}
}

// errVanished marks an entry that disappeared before anything of it was written.
var errVanished = errors.New("vanished")

func vanished(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return errVanished
	}
	return err
}

// entry1 writes one entry; opened is called once everything read by name is read
// (its xattrs, a symlink's target) and, for a regular file, it is open: the rest
// needs no access to it by name.
func (e *tarEmitter) entry1(dirfd int, base, p string, st *unix.Stat_t, opened func()) error {
	hdr := &tar.Header{
		Name:    p,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: e.mtime(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
	if e.rootless {
		hdr.Uid, hdr.Gid = 0, 0
	}
	ft := st.Mode & unix.S_IFMT
	if ft == unix.S_IFSOCK {
		return nil
	}
	var first *linkFirst
	if ft != unix.S_IFDIR && st.Nlink > 1 {
		k := devIno{uint64(st.Dev), st.Ino}
		if l, ok := e.links[k]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = l.name
			hdr.Uid, hdr.Gid = l.uid, l.gid
			return e.tw.WriteHeader(hdr)
		}
		first = &linkFirst{name: p}
		e.links[k] = first
	}
	xattrs, err := e.readXattrs(dirfd, base)
	if err != nil {
		return vanished(err)
	}
	if v, ok := xattrs[paxXattrPrefix+RootlessXattr]; ok && e.rootless {
		delete(xattrs, paxXattrPrefix+RootlessXattr)
		if uid, gid, err := decodeRootless([]byte(v)); err == nil {
			hdr.Uid, hdr.Gid = uid, gid
		}
	}
	if first != nil {
		first.uid, first.gid = hdr.Uid, hdr.Gid
	}
	if len(xattrs) > 0 {
		hdr.PAXRecords = xattrs
	}
	switch ft {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name = p + "/"
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		if hdr.Linkname, err = readlinkat(dirfd, base, int(st.Size)); err != nil {
			return vanished(fmt.Errorf("readlink: %w", err))
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if ft == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		return e.regular(dirfd, base, hdr, st, opened)
	default:
		opened()
		return fmt.Errorf("%w: file type %#o", ErrUnsupported, ft)
	}
	opened() // after the readlink: it needs search on the dir
	return e.tw.WriteHeader(hdr)
}

func (e *tarEmitter) regular(dirfd int, base string, hdr *tar.Header, st *unix.Stat_t, opened func()) error {
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs ownership
		fd, err = unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	opened()
	if err != nil {
		return vanished(fmt.Errorf("open: %w", err))
	}
	defer unix.Close(fd)
	if err := e.tw.WriteHeader(hdr); err != nil {
		return err
	}
	return CopyData(e.tw, fd, hdr.Size, st.Blocks*512 < hdr.Size, e.buf)
}

// CopyData writes the first size bytes of the file open as fd to w, to the
// byte, through buf; with sparse (fewer blocks allocated than its size) its
// holes are found with SEEK_DATA/SEEK_HOLE and written as zeros without being
// read. A file that shrinks meanwhile is an error.
func CopyData(w io.Writer, fd int, size int64, sparse bool, buf []byte) error {
	var off int64
	for off < size {
		end := size
		if sparse {
			data, err := unix.Seek(fd, off, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) { // only a hole up to EOF, or the file shrank
				var now unix.Stat_t
				if err := unix.Fstat(fd, &now); err != nil {
					return fmt.Errorf("stat: %w", err)
				}
				if now.Size < size {
					return fmt.Errorf("read: file shrank from %d to %d bytes while read", size, now.Size)
				}
				data = size
			} else if err != nil {
				sparse = false // no SEEK_DATA here: read everything
				data = off
			}
			if data > size {
				data = size
			}
			if err := writeZeros(w, data-off); err != nil {
				return err
			}
			off = data
			if off >= size {
				break
			}
			if sparse {
				hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
				if err == nil && hole < size {
					end = hole
				}
			}
		}
		for off < end {
			n := int64(len(buf))
			if end-off < n {
				n = end - off
			}
			m, err := unix.Pread(fd, buf[:n], off)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return fmt.Errorf("read: %w", err)
			}
			if m == 0 {
				return fmt.Errorf("read: file shrank from %d to %d bytes while read", size, off)
			}
			if _, err := w.Write(buf[:m]); err != nil {
				return err
			}
			off += int64(m)
		}
	}
	return nil
}

var zeroBuf = make([]byte, 1<<20)

func writeZeros(w io.Writer, n int64) error {
	for n > 0 {
		k := int64(len(zeroBuf))
		if n < k {
			k = n
		}
		if _, err := w.Write(zeroBuf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// readXattrs returns the entry's xattrs as PAX records, without the private ones of
// overlay and layerfs (IsPrivateXattr).
// Kernel overlayfs redirect and metacopy entries cannot be turned into a layer from
// the upper dir alone and give ErrUnsupported.
func (e *tarEmitter) readXattrs(dirfd int, base string) (map[string]string, error) {
	names, err := listXattrs(dirfd, base)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	recs := map[string]string{}
	for _, n := range names {
		if IsPrivateXattr(n) {
			if strings.HasSuffix(n, ".overlay.redirect") || strings.HasSuffix(n, ".overlay.metacopy") {
				return nil, fmt.Errorf("%w: overlay xattr %s (mount overlayfs with redirect_dir=off,metacopy=off)", ErrUnsupported, n)
			}
			continue
		}
		v, err := getXattr(dirfd, base, n, &e.xbuf)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("getxattr %s: %w", n, err)
		}
		recs[paxXattrPrefix+n] = string(v)
	}
	return recs, nil
}

// listXattrs lists the xattr names of base in dirfd, without following it.
func listXattrs(dirfd int, base string) ([]string, error) {
	p := procPath(dirfd, base)
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Llistxattr(p, nil)
			if err != nil {
				return nil, fmt.Errorf("listxattr: %w", err)
			}
			buf = make([]byte, sz+64)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr: %w", err)
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		sort.Strings(names)
		return names, nil
	}
}

func getXattr(dirfd int, base, name string, buf *[]byte) ([]byte, error) {
	p := procPath(dirfd, base)
	for {
		n, err := unix.Lgetxattr(p, name, *buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Lgetxattr(p, name, nil)
			if err != nil {
				return nil, err
			}
			*buf = make([]byte, sz+64)
			continue
		}
		if err != nil {
			return nil, err
		}
		return (*buf)[:n], nil
	}
}

func readlinkat(dirfd int, base string, size int) (string, error) {
	if size <= 0 {
		size = 256
	}
	for {
		buf := make([]byte, size+1)
		n, err := unix.Readlinkat(dirfd, base, buf)
		if err != nil {
			return "", err
		}
		if n <= size {
			return string(buf[:n]), nil
		}
		size *= 2
	}
}

// readDirNames returns the names in the dir open as fd, sorted bytewise. It reads
// through a dup so fd stays usable.
//
// Unprivileged, a dir of the user's whose mode denies its owner read or search
// (0000, 0300) is made u+rx for the reopen (withDirAccess): the listing reads
// through the new fd.
func readDirNames(fd int) ([]string, error) {
	var dup int
	err := withDirAccess(fd, func() (err error) {
		dup, err = unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}
