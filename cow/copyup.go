package cow

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Copy-up: the first change to an entry that lives in a read-only lower layer copies
// it into the upper dir. CopyUp copies one entry; the caller (package fs) walks the
// path top-down so every parent exists in the upper dir first.
//
// The copy is built under a temporary name in the work dir (which must be on the
// upper dir's filesystem) and renamed into place, so a crash leaves either no entry
// or a complete one in the upper dir, never a half-written file.
//
// Data is cloned with FICLONE where the filesystem can share extents (btrfs, xfs),
// else copied segment by segment (holes stay holes): with copy_file_range where the
// kernel may offload it, else read and written here, large segments in two halves
// at once (ext4 and tmpfs, where copy_file_range is slower; see offloads). There is no metadata-only copy-up: an upper entry
// that only pointed at its lower data would need every reader of the upper dir (diff,
// export) to know about it. chmod/chown of a big file therefore copies its data; on a
// reflink filesystem that costs no data blocks.

// PrivateXattrPrefixes start the xattr names layerfs keeps for itself on upper
// entries (the origin inode of a copied-up entry). They are hidden from listxattr,
// refused by setxattr, and must not be written into layer tars.
var PrivateXattrPrefixes = []string{"trusted.layerfs.", "user.layerfs."}

// IsPrivateXattr reports whether name is private to layerfs or to overlay: such
// xattrs are never shown through the mount, copied up, or committed.
func IsPrivateXattr(name string) bool {
	if IsOverlayXattr(name) {
		return true
	}
	for _, p := range PrivateXattrPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// CopyUpOptions tune one CopyUp.
type CopyUpOptions struct {
	// Work is an open directory on the upper dir's filesystem used for temp names.
	Work int
	// DataLimit, if >= 0, copies only the first DataLimit bytes of a regular file and
	// sets its size to DataLimit (a truncate or O_TRUNC needs no more). -1 copies all.
	DataLimit int64
	// Xattrs are set on the copy in addition to the source's (e.g. the origin inode).
	Xattrs map[string][]byte
	// KeepDirTimes puts dstDir's atime and mtime back after the copy is placed in
	// it: a copy-up is not a change of the directory that a user made, and kernel
	// overlayfs keeps the parent's times too.
	KeepDirTimes bool
	// PlaceLock, if set, is held while the copy is placed and dstDir's times are
	// put back (not while data is copied), so that the caller can keep its users'
	// own changes of dstDir, which must move its mtime, out of that window.
	PlaceLock sync.Locker
	// Build, if set, is called with the step that builds the copy under its temp
	// name (data, metadata: nothing a reader of dstDir sees) and must run it and
	// return its error, or another to abandon the copy-up (the temp is removed
	// and the error returned): so that a caller can let go of its own locks for
	// the data copy of a big file, and check on getting them back that the copy
	// is still wanted.
	Build func(build func() error) error
	// Place, if set, is called once the copy is built, with PlaceLock held, right
	// before the copy is placed; an error abandons the copy-up (the temp is
	// removed and the error returned): the caller's last look at dstDir, which no
	// change holding PlaceLock shared can overtake.
	Place func() error
}

var tmpSeq atomic.Uint64

// CopyUp copies the entry name of the directory open as srcDir (a lower layer) to the
// same name in the directory open as dstDir (in the upper dir), which must not hold
// that name. It copies the type, data, mode, owner, user-visible xattrs and times.
// Symlinks are read with readlinkat and never followed. Safe for concurrent use on
// different names; the caller serialises copy-ups of one name.
func CopyUp(srcDir, dstDir int, name string, opts CopyUpOptions) error {
	var st unix.Stat_t
	if err := lstatAt(srcDir, name, &st); err != nil {
		return &os.PathError{Op: "copy-up stat", Path: name, Err: err}
	}
	tmp := fmt.Sprintf("copyup-%d-%d", os.Getpid(), tmpSeq.Add(1))
	build := func() error { return copyToTemp(srcDir, name, &st, opts, tmp) }
	var err error
	if opts.Build != nil {
		err = opts.Build(build)
	} else {
		err = build()
	}
	if err != nil {
		cleanupTemp(opts.Work, tmp)
		return fmt.Errorf("copy-up %s: %w", name, err)
	}
	if opts.PlaceLock != nil {
		opts.PlaceLock.Lock()
		defer opts.PlaceLock.Unlock()
	}
	if opts.Place != nil {
		if err := opts.Place(); err != nil {
			cleanupTemp(opts.Work, tmp)
			return fmt.Errorf("copy-up %s: %w", name, err)
		}
	}
	restore := func() error { return nil }
	if opts.KeepDirTimes {
		r, err := KeepTimes(dstDir)
		if err != nil {
			cleanupTemp(opts.Work, tmp)
			return fmt.Errorf("copy-up %s: %w", name, err)
		}
		restore = r
	}
	err = renameAsOwner(opts.Work, tmp, dstDir, name)
	if err != nil {
		cleanupTemp(opts.Work, tmp)
		return &os.PathError{Op: "copy-up rename", Path: name, Err: err}
	}
	if err := restore(); err != nil {
		return fmt.Errorf("copy-up %s: restore parent times: %w", name, err)
	}
	return nil
}

// CopyUnnamed copies the regular file open as src (any fd of it, O_PATH too) into a
// new file on the filesystem of the directory open as work that has no name
// (O_TMPFILE, so it may be linked in later; where that is unsupported, a file made
// and unlinked at once), with its data, mode, owner, user-visible xattrs and times,
// and returns it open read-write; xattrs are private ones to set on it (as
// CopyUpOptions.Xattrs). For a file whose last name in a read-only layer went away
// while it was open: it can change from now on without changing the layer.
func CopyUnnamed(src, work int, xattrs map[string][]byte) (int, error) {
	rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", src), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		rfd, err = unix.Open(fmt.Sprintf("/proc/self/fd/%d", src), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, &os.PathError{Op: "copy-up reopen", Path: "(unlinked file)", Err: err}
	}
	defer unix.Close(rfd)
	var st unix.Stat_t
	if err := unix.Fstat(rfd, &st); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, &os.PathError{Op: "copy-up", Path: "(unlinked file)", Err: unix.EINVAL}
	}
	dst, err := unix.Openat(work, ".", unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		tmp := fmt.Sprintf("copyup-%d-%d", os.Getpid(), tmpSeq.Add(1))
		if dst, err = unix.Openat(work, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600); err != nil {
			return -1, &os.PathError{Op: "copy-up create", Path: tmp, Err: err}
		}
		_ = unix.Unlinkat(work, tmp, 0)
	}
	fail := func(err error) (int, error) {
		unix.Close(dst)
		return -1, fmt.Errorf("copy-up of an unlinked file: %w", err)
	}
	if err := copyData(dst, rfd, st.Size); err != nil {
		return fail(err)
	}
	if err := unix.Ftruncate(dst, st.Size); err != nil {
		return fail(err)
	}
	if err := unix.Fchown(dst, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, unix.EPERM) {
		return fail(err)
	}
	// xattrs before the mode: unprivileged, a user xattr needs write permission.
	if err := copyXattrs(fdXattrs(dst), fdXattrs(rfd)); err != nil {
		return fail(err)
	}
	for k, v := range xattrs {
		if err := setPrivateXattr(dst, k, v); err != nil {
			return fail(err)
		}
	}
	if err := unix.Fchmod(dst, st.Mode&0o7777); err != nil {
		return fail(err)
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", dst), ts, 0); err != nil {
		return fail(err)
	}
	return dst, nil
}

// KeepTimes saves the atime and mtime of the directory (or any inode) open as fd,
// O_PATH allowed, and returns a func that sets them back, for changes made on the
// filesystem's own account (copy-up, markers) rather than by a user.
func KeepTimes(fd int) (restore func() error, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	return func() error {
		ts := []unix.Timespec{st.Atim, st.Mtim}
		return unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), ts, 0)
	}, nil
}

func cleanupTemp(work int, tmp string) {
	if unix.Unlinkat(work, tmp, 0) != nil {
		_ = unix.Unlinkat(work, tmp, unix.AT_REMOVEDIR)
	}
}

func copyToTemp(srcDir int, name string, st *unix.Stat_t, opts CopyUpOptions, tmp string) error {
	mode := st.Mode & 0o7777
	var xsrc int = -1 // fd to read xattrs from
	var xdst int = -1 // fd to write xattrs to
	special := false  // xsrc and xdst are O_PATH fds of special files
	link := false     // a symlink: its xattrs go through its name, never an fd
	var srcX *xattrIO // xsrc's xattrs, read while it was open to its owner (openSource)
	defer func() {
		if xsrc >= 0 {
			unix.Close(xsrc)
		}
		if xdst >= 0 {
			unix.Close(xdst)
		}
	}()
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		src, x, err := openSource(srcDir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return err
		}
		xsrc, srcX = src, x
		dst, err := unix.Openat(opts.Work, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		xdst = dst
		limit := st.Size
		if opts.DataLimit >= 0 && opts.DataLimit < limit {
			limit = opts.DataLimit
		}
		if err := copyData(dst, src, limit); err != nil {
			return err
		}
		size := st.Size
		if opts.DataLimit >= 0 {
			size = opts.DataLimit
		}
		if err := unix.Ftruncate(dst, size); err != nil {
			return err
		}
	case unix.S_IFDIR:
		if err := unix.Mkdirat(opts.Work, tmp, 0o700); err != nil {
			return err
		}
		src, x, err := openSource(srcDir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return err
		}
		xsrc, srcX = src, x
		dst, err := unix.Openat(opts.Work, tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		xdst = dst
	case unix.S_IFLNK:
		var target string
		err := withDirAccess(srcDir, func() (err error) {
			target, err = fdReadlinkat(srcDir, name)
			return err
		})
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, opts.Work, tmp); err != nil {
			return err
		}
		link = true
	default: // fifo, socket, devices: never opened; xattrs go through O_PATH fds
		if err := unix.Mknodat(opts.Work, tmp, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
		var src int
		err := withDirAccess(srcDir, func() (err error) {
			src, err = unix.Openat(srcDir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			return err
		})
		if err != nil {
			return err
		}
		xsrc = src
		dst, err := unix.Openat(opts.Work, tmp, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		xdst = dst
		special = true
	}
	if err := unix.Fchownat(opts.Work, tmp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	// xattrs before the mode: unprivileged, a user xattr needs write permission
	// (a 0555 dir, a 0444 file).
	switch {
	case special:
		if err := copyXattrs(procXattrs(xdst), procXattrs(xsrc)); err != nil {
			return err
		}
		for k, v := range opts.Xattrs {
			_ = unix.Setxattr(procFdPath(xdst), k, v, 0) // best effort (user.* is refused here)
		}
		if err := unix.Fchmodat(opts.Work, tmp, mode, 0); err != nil {
			return err
		}
	case link:
		// A symlink's own xattrs (trusted.*, security.* such as SELinux labels;
		// Linux refuses user.* on symlinks), as overlayfs copies them up. The
		// private ones are set best effort, as for special files.
		if err := withDirAccess(srcDir, func() error {
			return copyXattrs(linkXattrs(opts.Work, tmp), linkXattrs(srcDir, name))
		}); err != nil {
			return err
		}
		for k, v := range opts.Xattrs {
			_ = unix.Lsetxattr(procPath(opts.Work, tmp), k, v, 0)
		}
	case xdst >= 0:
		from := fdXattrs(xsrc)
		if srcX != nil {
			from = *srcX
		}
		if err := copyXattrs(fdXattrs(xdst), from); err != nil {
			return err
		}
		for k, v := range opts.Xattrs {
			if err := setPrivateXattr(xdst, k, v); err != nil {
				return err
			}
		}
		if err := unix.Fchmod(xdst, mode); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(opts.Work, tmp, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// setPrivateXattr sets a private xattr, falling back from trusted.* to user.*
// without privilege.
func setPrivateXattr(fd int, k string, v []byte) error {
	err := unix.Fsetxattr(fd, k, v, 0)
	if (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP)) && strings.HasPrefix(k, "trusted.") {
		err = unix.Fsetxattr(fd, "user."+strings.TrimPrefix(k, "trusted."), v, 0)
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil // the filesystem keeps no xattrs: the origin is lost, nothing else
	}
	return err
}

func fdReadlinkat(dir int, name string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		l, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if l < n {
			return string(buf[:l]), nil
		}
	}
}

// copyData copies the first limit bytes of src to dst (both at offset 0), keeping
// holes: it clones when it can, else copies each data segment in the kernel.
func copyData(dst, src int, limit int64) error {
	if limit == 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err == nil && limit == st.Size {
		if unix.IoctlFileClone(dst, src) == nil {
			return nil
		}
	}
	copyFn := copyRangeKernel
	if !offloads(dst) {
		copyFn = copyRangeUser
	}
	off := int64(0)
	for off < limit {
		data, err := unix.Seek(src, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains; ftruncate makes it
		}
		if err != nil {
			data = off // no SEEK_DATA support: treat everything as data
		}
		if data >= limit {
			return nil
		}
		hole, err := unix.Seek(src, data, unix.SEEK_HOLE)
		if err != nil || hole > limit {
			hole = limit
		}
		if err := copyFn(dst, src, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// copyRangeKernel copies with copy_file_range, falling back to copyRangeUser where
// the kernel refuses (another filesystem, no support).
func copyRangeKernel(dst, src int, off, n int64) error {
	for n > 0 {
		in, out := off, off
		w, err := unix.CopyFileRange(src, &in, dst, &out, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				return copyRangeUser(dst, src, off, n)
			}
			return err
		}
		if w == 0 {
			return nil // source shorter than expected
		}
		off += int64(w)
		n -= int64(w)
	}
	return nil
}

// offloads reports whether copy_file_range into fd may do better than a copy
// through this process: everywhere but on ext2/3/4 and tmpfs, where it copies the
// data through a pipe a page at a time (FICLONE has already failed there). Measured
// on Linux 6.18 for a cached 256 MiB file: ext4 to ext4 69 ms with
// copy_file_range, 58 ms with pread/pwrite of 1 MiB, 52 ms with two of those
// running at once; to tmpfs (EXDEV) 100 and 92 ms.
func offloads(fd int) bool {
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil {
		return true
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.TMPFS_MAGIC:
		return false
	}
	return true
}

// parallelCopyMin is the size from which copyRangeMem splits a range in two
// halves copied at once: one copies from the source's page cache while the other
// writes into the destination's.
const parallelCopyMin = 16 << 20

// copyRangeUser copies n bytes at off from src to dst where copy_file_range
// does not offload: by sendfile(2), which moves the data in the kernel through
// its own pipe (a cached 256 MiB file to tmpfs: 60 ms, against 66 ms in two
// halves of preads and pwrites at once and 74 ms in one; to ext4 47, 45 and
// 52 ms), and where the kernel refuses that, by copyRangeMem.
func copyRangeUser(dst, src int, off, n int64) error {
	if _, err := unix.Seek(dst, off, io.SeekStart); err != nil {
		return copyRangeMem(dst, src, off, n)
	}
	for n > 0 {
		in := off
		w, err := unix.Sendfile(dst, src, &in, int(min(n, 1<<30)))
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
			return copyRangeMem(dst, src, off, n)
		}
		if err != nil {
			return err
		}
		if w == 0 {
			return io.ErrUnexpectedEOF
		}
		off += int64(w)
		n -= int64(w)
	}
	return nil
}

// copyRangeMem copies n bytes at off from src to dst through this process's
// memory, in two halves at once for large ranges.
func copyRangeMem(dst, src int, off, n int64) error {
	if n < parallelCopyMin {
		return copyRangeSlow(dst, src, off, n)
	}
	half := n / 2
	var wg sync.WaitGroup
	var errA error
	wg.Add(1)
	go func() {
		defer wg.Done()
		errA = copyRangeSlow(dst, src, off, half)
	}()
	errB := copyRangeSlow(dst, src, off+half, n-half)
	wg.Wait()
	return errors.Join(errA, errB)
}

func copyRangeSlow(dst, src int, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		r, err := unix.Pread(src, buf[:min(n, int64(len(buf)))], off)
		if err != nil {
			return err
		}
		if r == 0 {
			return io.ErrUnexpectedEOF
		}
		if err := pwriteFull(dst, buf[:r], off); err != nil {
			return err
		}
		off += int64(r)
		n -= int64(r)
	}
	return nil
}

// pwriteFull writes all of b at off: pwrite may write less than asked (a
// filesystem that fills up part way), and the rest must not be taken for written.
func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		w, err := unix.Pwrite(fd, b, off)
		if err != nil {
			return err
		}
		if w == 0 {
			return io.ErrShortWrite
		}
		b = b[w:]
		off += int64(w)
	}
	return nil
}

// xattrIO reads and writes the xattrs of one inode.
type xattrIO struct {
	list func(buf []byte) (int, error)
	get  func(name string, buf []byte) (int, error)
	set  func(name string, v []byte) error
}

// fdXattrs works through an fd opened for reading or writing.
func fdXattrs(fd int) xattrIO {
	return xattrIO{
		list: func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		get:  func(k string, buf []byte) (int, error) { return unix.Fgetxattr(fd, k, buf) },
		set:  func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) },
	}
}

// procXattrs works through the /proc/self/fd link of an O_PATH fd (the f*xattr
// calls refuse those), for fifos and device nodes, which must not be opened. Not
// for symlinks: the path calls would follow them.
func procXattrs(fd int) xattrIO {
	p := procFdPath(fd)
	return xattrIO{
		list: func(buf []byte) (int, error) { return unix.Listxattr(p, buf) },
		get:  func(k string, buf []byte) (int, error) { return unix.Getxattr(p, k, buf) },
		set:  func(k string, v []byte) error { return unix.Setxattr(p, k, v, 0) },
	}
}

func procFdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// linkXattrs works on the entry name of the directory open as dir (any fd of it,
// O_PATH too) without following it, for symlinks: the l*xattr calls on name below
// the dir's /proc/self/fd link, so that only the last component is looked up, in
// that dir and that the call, by its definition, does not follow. (The f*xattr
// calls refuse a symlink's O_PATH fd, and the plain calls on its /proc link rest on
// how procfs ends a magic link at a symlink.)
func linkXattrs(dir int, name string) xattrIO {
	p := procPath(dir, name)
	return xattrIO{
		list: func(buf []byte) (int, error) { return unix.Llistxattr(p, buf) },
		get:  func(k string, buf []byte) (int, error) { return unix.Lgetxattr(p, k, buf) },
		set:  func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) },
	}
}

// copyXattrs copies every xattr of src to dst except private and overlay ones.
// A source filesystem without xattrs copies nothing.
func copyXattrs(dst, src xattrIO) error {
	return eachXattr(src, func(k string, v []byte) error {
		if err := dst.set(k, v); err != nil {
			if errors.Is(err, unix.EPERM) && strings.HasPrefix(k, "trusted.") {
				return nil
			}
			return fmt.Errorf("setxattr %s: %w", k, err)
		}
		return nil
	})
}

// EachXattr calls fn with every xattr of the entry open as fd (O_PATH too;
// not a symlink, whose /proc link the calls would follow) but private and
// overlay ones (IsPrivateXattr), as copy-up copies them; a filesystem without
// xattrs has none. COPY in a build copies them so.
func EachXattr(fd int, fn func(name string, value []byte) error) error {
	return eachXattr(procXattrs(fd), fn)
}

// EachLinkXattr is EachXattr of the entry name in the dir open as dir, not
// followed: a symlink's own xattrs.
func EachLinkXattr(dir int, name string, fn func(name string, value []byte) error) error {
	return eachXattr(linkXattrs(dir, name), fn)
}

// eachXattr calls fn with every xattr of src but private ones; a source
// filesystem without xattrs has none.
func eachXattr(src xattrIO, fn func(k string, v []byte) error) error {
	names, err := listXattrsOf(src)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	for _, k := range names {
		if IsPrivateXattr(k) {
			continue
		}
		v, err := getXattrOf(src, k)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return fmt.Errorf("getxattr %s: %w", k, err)
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func listXattrsOf(x xattrIO) ([]string, error) {
	for {
		n, err := x.list(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = x.list(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
}

func getXattrOf(x xattrIO, k string) ([]byte, error) {
	for {
		n, err := x.get(k, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = x.get(k, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// openSource opens the regular file or dir name of the lower dir open as srcDir
// for a copy-up (OpenNoatime). Unprivileged, one of the user's whose mode denies
// its owner read (a 0000 /etc/shadow, a 4111 sudo, a 0000 or 0300 dir; in a dir
// its owner may not search, too) is made u+r (u+rx) for the open and the read of
// its xattrs (user.* ones need read permission), which are returned (x, else nil),
// and given its mode back at once: lower layers are shared with other mounts and
// readers (docs/NOTES.md says what a racing one may see).
func openSource(srcDir int, name string, flags int) (fd int, x *xattrIO, err error) {
	fd, err = OpenNoatime(srcDir, name, flags)
	if !errors.Is(err, unix.EACCES) || !unprivileged {
		return fd, nil, err
	}
	undo := widenAt(srcDir, name)
	defer undo()
	if fd, err = OpenNoatime(srcDir, name, flags); err != nil {
		return -1, nil, err
	}
	snap, err := snapshotXattrs(fdXattrs(fd))
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, &snap, nil
}

// snapshotXattrs reads every xattr of src but private ones (as copyXattrs
// copies them) and returns them as a read-only xattrIO.
func snapshotXattrs(src xattrIO) (xattrIO, error) {
	vals := map[string][]byte{}
	var names []string
	if err := eachXattr(src, func(k string, v []byte) error {
		vals[k] = v
		names = append(names, k)
		return nil
	}); err != nil {
		return xattrIO{}, err
	}
	packed := []byte(strings.Join(names, "\x00") + "\x00")
	if len(names) == 0 {
		packed = nil
	}
	return xattrIO{
		list: func(buf []byte) (int, error) {
			if buf == nil {
				return len(packed), nil
			}
			if len(buf) < len(packed) {
				return 0, unix.ERANGE
			}
			return copy(buf, packed), nil
		},
		get: func(k string, buf []byte) (int, error) {
			v, ok := vals[k]
			switch {
			case !ok:
				return 0, unix.ENODATA
			case buf == nil:
				return len(v), nil
			case len(buf) < len(v):
				return 0, unix.ERANGE
			}
			return copy(buf, v), nil
		},
		set: func(string, []byte) error { return unix.EPERM },
	}, nil
}

// openNoatime opens a file of a lower layer for reading without touching its atime
// (O_NOATIME) where the caller may: copying up must not write to the layers.
func OpenNoatime(dfd int, name string, flags int) (int, error) {
	fd, err := unix.Openat(dfd, name, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = unix.Openat(dfd, name, flags, 0)
	}
	return fd, err
}
