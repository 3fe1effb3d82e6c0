package build

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	symmode "github.com/tonistiigi/dchapes-mode"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/cow"
)

// copier writes COPY/ADD content into a container root. Every path is resolved
// inside the root (openat2 RESOLVE_IN_ROOT), so a symlink in the image cannot send
// a write to the host; final components are never followed.
type copier struct {
	rfd      *os.File
	uid, gid int        // -1: from the source (0 for context files, the header's for tars)
	chmod    *chmodFlag // --chmod; nil: entries keep their source's mode
	// keepOwners: copied entries keep their source's owner (COPY --from, as
	// buildkit copies); else they are root's (context files).
	keepOwners bool
	// noNodes: extract skips device nodes and FIFOs (a context from stdin).
	noNodes  bool
	dirTimes []dirTime // set last, deepest first, after their contents are written
	// confine: writes below this destination resolve beneath it (ADD of
	// an archive, copy_confine.go); nil: anywhere in the root.
	confine  *confinement
	rootReal string // the root's host path, once inRootPath has read it
	// links: where this COPY wrote each hard-linked source file (by
	// device and inode), to link the others to.
	links map[[2]uint64]string
	// link: COPY --link. BuildKit copies onto an empty layer, so no
	// symlink (or file) of the image on the way to an entry is followed:
	// it is replaced by a dir, as the layer's dir hides it (copy_link.go).
	link bool
	buf  []byte // writeFile's copy buffer
}

type dirTime struct {
	path  string
	mtime time.Time
}

func newCopier(rootfs, chown string, chmod *chmodFlag) (*copier, error) {
	rfd, err := openRootDir(rootfs)
	if err != nil {
		return nil, err
	}
	cp := &copier{rfd: rfd, uid: -1, gid: -1, chmod: chmod}
	if chown != "" {
		u, g, err := parseChown(chown, rootfs)
		if err != nil {
			rfd.Close()
			return nil, err
		}
		cp.uid, cp.gid = u, g
	}
	return cp, nil
}

func (cp *copier) close() { cp.rfd.Close() }

// parseChown resolves --chown=user[:group] in the image: names through its
// /etc/passwd and /etc/group. Without a group (or with an empty one), a user
// name gets its primary group from /etc/passwd and a numeric uid gets gid =
// uid, as buildkit's readUser and buildah do; the Dockerfile reference's
// "gid = uid" for a name is not what docker build makes. An unknown name is an
// error (buildkit quietly takes root).
func parseChown(spec, rootfs string) (int, int, error) {
	user, group, _ := strings.Cut(spec, ":")
	u, err := LookupUserInRoot(user, rootfs)
	if err != nil {
		return 0, 0, err
	}
	gid := u.GID
	if _, err := strconv.ParseUint(user, 10, 32); err == nil {
		gid = u.UID
	}
	if group != "" {
		g, err := LookupUserInRoot("0:"+group, rootfs)
		if err != nil {
			return 0, 0, err
		}
		gid = g.GID
	}
	return int(u.UID), int(gid), nil
}

// chmodFlag is COPY/ADD --chmod: an octal mode that replaces each copied
// entry's, or a symbolic one as chmod(1) takes it (u+x, go-w, a=rX) applied to
// each entry's own mode, as buildkit does (Dockerfile syntax 1.14 and later,
// docker 28's builtin frontend; its parser, with a umask of 0).
type chmodFlag struct {
	octal    *fs.FileMode
	symbolic *symmode.Set
}

// apply is the mode an entry whose source mode is m gets (m's type bits tell
// a dir, for X).
func (c *chmodFlag) apply(m fs.FileMode) fs.FileMode {
	if c.octal != nil {
		return *c.octal
	}
	return c.symbolic.Apply(m) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

func parseChmod(s string) (*chmodFlag, error) {
	if s == "" {
		return nil, nil
	}
	octalErr := fmt.Errorf("invalid --chmod %q: want an octal mode from 0 to 07777 or a symbolic one (u+x)", s)
	if n, err := strconv.ParseUint(s, 8, 32); err == nil {
		if n > 0o7777 {
			return nil, octalErr
		}
		m := fs.FileMode(n&0o777) | FileModeBits(uint32(n))
		return &chmodFlag{octal: &m}, nil
	}
	set, err := symmode.ParseWithUmask(s, 0)
	if err != nil {
		if errors.As(err, new(*strconv.NumError)) {
			return nil, octalErr // looks numeric
		}
		return nil, fmt.Errorf("invalid --chmod %q: %w", s, err)
	}
	return &chmodFlag{symbolic: &set}, nil
}

// FileModeBits is st_mode's set-id and sticky bits as fs.FileMode bits.
func FileModeBits(u uint32) fs.FileMode {
	var m fs.FileMode
	if u&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if u&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if u&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// errSeveralToFile: COPY or ADD of several sources, files among them, to a
// destination that is no dir and does not end in "/".
var errSeveralToFile = errors.New("more than one source file to a destination that is not a directory")

// copyAll copies every source to dest with docker's rules: dest is a dir if it
// ends in "/" or if it is a dir in the image; a source dir's contents (not the
// dir) are copied; ADD unpacks local tar archives. Several sources that are
// not all dirs (or unpacked archives) need a dir dest (errSeveralToFile): the
// Dockerfile reference says so and the classic builder refuses them; buildkit
// copies each to the same path, keeping the last (moby/buildkit#1853, #4550).
// Several dirs merge into dest, as buildkit does (the classic builder refuses
// that too).
func (cp *copier) copyAll(bc *buildContext, srcs []source, urls []*download, inline []inlineFile, dest string, unpack, unpackURLs bool) error {
	destIsDir := strings.HasSuffix(dest, "/")
	if !destIsDir {
		open := openat2InRoot
		if cp.link {
			open = openNoSymlinks
		}
		if f, err := open(cp.rfd, dest, unix.O_PATH|unix.O_DIRECTORY); err == nil {
			f.Close()
			destIsDir = true
		}
	}
	if !destIsDir && len(srcs)+len(urls)+len(inline) > 1 {
		files := len(inline) > 0
		for _, s := range srcs {
			files = files || !s.fi.IsDir() && !(unpack && bc.isArchive(s.abs))
		}
		for _, d := range urls {
			files = files || !(unpackURLs && isArchive(d.file))
		}
		if files {
			return errSeveralToFile
		}
	}
	dest = path.Clean(dest)
	for _, s := range srcs {
		switch {
		case s.fi.IsDir():
			if err := cp.copyTree(bc, s, dest); err != nil {
				return err
			}
		default:
			target := dest
			if destIsDir {
				target = path.Join(dest, path.Base(s.rel))
			}
			if err := cp.copySource(bc, s, target, dest, unpack); err != nil {
				return err
			}
		}
	}
	for _, d := range urls {
		if unpackURLs && isArchive(d.file) { // ADD --unpack=true URL
			if err := cp.extract(d.file, dest); err != nil {
				return fmt.Errorf("unpack %s: %w", d.url, err)
			}
			continue
		}
		target := dest
		if destIsDir {
			target = path.Join(dest, d.name)
		}
		if err := cp.copyFileMode(d.file, 0o600, d.mtime, target, 0, 0); err != nil {
			return err
		}
	}
	for _, f := range inline {
		target := dest
		if destIsDir {
			target = path.Join(dest, f.name)
		}
		if err := cp.writeFile(target, strings.NewReader(f.data), 0o644, time.Now(), 0, 0, nil); err != nil {
			return err
		}
	}
	return cp.finish()
}

// inlineFile is a COPY <<EOF source: a file named after the heredoc.
type inlineFile struct{ name, data string }

// copyTree copies the contents of a context dir into dest.
func (cp *copier) copyTree(bc *buildContext, s source, dest string) error {
	return bc.walk(s, func(rel, abs string, fi fs.FileInfo) error {
		target := path.Join(dest, rel)
		if isNode(fi) {
			return cp.copyNode(fi, target)
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
			return nil // sockets: a layer cannot hold one
		}
		xs, err := bc.xattrs(abs, fi)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			uid, gid := cp.srcOwner(fi)
			mode := fi.Mode().Perm() | fi.Mode()&(fs.ModeSetgid|fs.ModeSticky)
			if rel == "." {
				// A new dest dir is root's and 0755 (or --chmod's),
				// as fsutil's prepareTargetDir makes it, with none
				// of the source dir's xattrs: docker never gave the
				// top dir the source's mode (moby/moby#38710).
				uid, gid, xs, mode = 0, 0, nil, 0o755
			}
			if rel == "." {
				return cp.mkdir(target, mode, fi.ModTime(), uid, gid, xs)
			}
			return cp.mkdirOver(target, mode, fi.ModTime(), uid, gid, xs)
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := bc.readlink(abs)
			if err != nil {
				return err
			}
			uid, gid := cp.srcOwner(fi)
			return cp.symlink(t, target, fi.ModTime(), uid, gid, xs)
		default:
			return cp.copyFile(bc, abs, fi, nil, xs, target)
		}
	})
}

// copyFile copies the regular source file abs (open as f, or nil) to target
// with the xattrs xs. A file hard-linked in its source is linked to the copy
// of it this COPY made before, if any, as BuildKit's fsutil copy keeps hard
// links (by device and inode); if that link fails it is copied.
func (cp *copier) copyFile(bc *buildContext, abs string, fi fs.FileInfo, f *os.File, xs map[string][]byte, target string) error {
	st, linked := fi.Sys().(*syscall.Stat_t)
	linked = linked && st.Nlink > 1
	var key [2]uint64
	if linked {
		key = [2]uint64{st.Dev, st.Ino}
		if old, ok := cp.links[key]; ok && cp.hardlink(old, target) == nil {
			return nil
		}
	}
	if f == nil {
		var err error
		if f, err = bc.openFile(abs); err != nil {
			return err
		}
		defer f.Close()
	}
	uid, gid := cp.srcOwner(fi)
	if err := cp.writeFile(target, f, unixMode(fi.Mode()), fi.ModTime(), uid, gid, xs); err != nil {
		return err
	}
	if linked {
		if cp.links == nil {
			cp.links = map[[2]uint64]string{}
		}
		cp.links[key] = target
	}
	return nil
}

// copySource copies the file source s to target, or with unpack, if it is a tar
// archive, unpacks it into dest. The file is opened beneath the source root
// with no symlink on the way (what resolve found), so swapping a path
// component for a symlink during the build cannot make it read a host file.
func (cp *copier) copySource(bc *buildContext, s source, target, dest string, unpack bool) error {
	if isNode(s.fi) {
		return cp.copyNode(s.fi, target)
	}
	f, err := bc.openFile(s.abs)
	if err != nil {
		return err
	}
	defer f.Close()
	if unpack && isArchiveFile(f) {
		if err := cp.extractFrom(f, dest); err != nil {
			return fmt.Errorf("unpack %s: %w", s.rel, err)
		}
		return nil
	}
	xs, err := bc.xattrs(s.abs, s.fi)
	if err != nil {
		return err
	}
	return cp.copyFile(bc, s.abs, s.fi, f, xs, target)
}

// isNode reports whether fi is a device node or a FIFO.
func isNode(fi fs.FileInfo) bool { return fi.Mode()&(fs.ModeDevice|fs.ModeNamedPipe) != 0 }

// copyNode makes target a device node or FIFO as the source fi is, with its
// mode (or --chmod's), mtime and owner (srcOwner, or --chown's): buildkit's
// COPY recreates them (fsutil copy's copyDevice), and its context transfer
// sends them. Their content is never read (a FIFO would hang the copy, a
// device give the host's data).
func (cp *copier) copyNode(fi fs.FileInfo, target string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("mknod %s: no stat of its source", target)
	}
	uid, gid := cp.srcOwner(fi)
	return cp.makeNode(target, st.Mode&unix.S_IFMT, unixMode(fi.Mode()), st.Rdev, fi.ModTime(), uid, gid)
}

func (cp *copier) copyFileMode(abs string, mode fs.FileMode, mtime time.Time, target string, uid, gid int) error {
	f, err := os.Open(abs)
	if err != nil {
		return err
	}
	defer f.Close()
	return cp.writeFile(target, f, unixMode(mode), mtime, uid, gid, nil)
}

// srcOwner is the owner a copied entry gets (before --chown): its source's with
// keepOwners, else root.
func (cp *copier) srcOwner(fi fs.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && cp.keepOwners {
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}

// unixMode is fs.FileMode's permission and special bits as st_mode bits.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}

func (cp *copier) owner(uid, gid int) (int, int) {
	if cp.uid >= 0 {
		uid, gid = cp.uid, cp.gid
	}
	// Without root the user stands for the image's root: the step mount shows
	// root's files as the user's and stores the user's as root's. A chown to 0
	// there is refused by the kernel (it made rootless COPY fail with EPERM).
	if os.Geteuid() != 0 {
		if uid == 0 {
			uid = os.Geteuid()
		}
		if gid == 0 {
			gid = os.Getegid()
		}
	}
	return uid, gid
}

// errWhiteoutName is the error for an entry named like a whiteout: in a
// layer ".wh.x" deletes x, so the union refuses to make one (it failed with
// a bare EINVAL). Import and ADD of a tar drop such entries, as umoci does.
var errWhiteoutName = fmt.Errorf("%w (a name starting with .wh. marks a deletion in an image layer)", cow.ErrReservedName)

// parentDir creates target's parent dirs (root-owned 0755, or --chown's owner)
// and returns the parent opened for *at calls. A target with a name like a
// whiteout on its path is refused (errWhiteoutName).
func (cp *copier) parentDir(target string) (*os.File, string, error) {
	for _, c := range strings.Split(target, "/") {
		if cow.IsReservedName(c) {
			return nil, "", errWhiteoutName
		}
	}
	if rel, ok := cp.confined(target); ok {
		return cp.confinedParent(rel)
	}
	if cp.link {
		return cp.linkParent(target)
	}
	dir, base := path.Split(path.Clean("/" + target))
	if base == "" {
		return nil, "", fmt.Errorf("copy to /: not a file")
	}
	d, err := mkdirAllInRootOwned(cp.rfd, dir, cp.uid, cp.gid)
	if err != nil {
		return nil, "", err
	}
	d.Close()
	f, err := openat2InRoot(cp.rfd, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	return f, base, err
}

// replaceable removes a non-dir at base so that a new entry can take its place.
func replaceable(dfd int, base string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("cannot overwrite directory %s with a non-directory", base)
	}
	return unix.Unlinkat(dfd, base, 0)
}

// writeFile writes r as the regular file target with mode, mtime, owner (as
// owner makes it) and the xattrs xs (setXattrs).
func (cp *copier) writeFile(target string, r io.Reader, mode uint32, mtime time.Time, uid, gid int, xs map[string][]byte) error {
	d, base, err := cp.parentDir(target)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", target, err)
	}
	defer d.Close()
	dfd := int(d.Fd())
	if err := replaceable(dfd, base); err != nil {
		return fmt.Errorf("copy to %s: %w", target, err)
	}
	if cp.chmod != nil {
		mode = unixMode(cp.chmod.apply(fs.FileMode(mode&0o777) | FileModeBits(mode)))
	}
	fd, err := unix.Openat(dfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", target, err)
	}
	f := os.NewFile(uintptr(fd), target)
	if cp.buf == nil {
		cp.buf = make([]byte, 1<<20)
	}
	// zeros as holes: what a tar (cp) or a reader brings of a sparse file
	_, err = cow.CopySparse(fd, r, cp.buf)
	u, g := cp.owner(uid, gid)
	if err == nil {
		err = unix.Fchown(fd, u, g)
	}
	if err == nil { // after the chown, which drops security.capability
		err = cp.setXattrs(func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }, xs)
	}
	if err == nil {
		err = unix.Fchmod(fd, mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy to %s: %w", target, err)
	}
	return setTimes(dfd, base, mtime)
}

func setTimes(dfd int, base string, mtime time.Time) error {
	ts := unix.Timespec{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())} // not UnixNano: it wraps after 2262
	return unix.UtimesNanoAt(dfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// mkdir creates target (parents too) if missing; a new dir gets mode, owner
// and xattrs, an existing one is left as it is. Its mtime is set in finish.
func (cp *copier) mkdir(target string, mode fs.FileMode, mtime time.Time, uid, gid int, xs map[string][]byte) error {
	return cp.mkdirMeta(target, mode, mtime, uid, gid, xs, false)
}

// mkdirOver is mkdir that gives a dir already there the mode, owner, xattrs
// and mtime too, as BuildKit does to the dirs below a COPY's destination
// (fsutil copyDirectory, overwriteTargetMetadata) and to the dirs ADD
// unpacks (go-archive createTarFile); the destination itself is left as it is.
func (cp *copier) mkdirOver(target string, mode fs.FileMode, mtime time.Time, uid, gid int, xs map[string][]byte) error {
	return cp.mkdirMeta(target, mode, mtime, uid, gid, xs, true)
}

func (cp *copier) mkdirMeta(target string, mode fs.FileMode, mtime time.Time, uid, gid int, xs map[string][]byte, over bool) error {
	target = path.Clean("/" + target)
	if target == "/" {
		return nil
	}
	d, base, err := cp.parentDir(target)
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", target, err)
	}
	defer d.Close()
	dfd := int(d.Fd())
	m := unixMode(mode)
	if cp.chmod != nil {
		m = unixMode(cp.chmod.apply(mode | fs.ModeDir))
	}
	err = unix.Mkdirat(dfd, base, 0o700)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		err = unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			if !over {
				return nil
			}
		case err == nil && cp.link: // --link: the layer's dir hides it
			if err = unix.Unlinkat(dfd, base, 0); err == nil {
				err = unix.Mkdirat(dfd, base, 0o700)
			}
			if err != nil {
				return fmt.Errorf("mkdir %s: %w", target, err)
			}
		default:
			return fmt.Errorf("mkdir %s: exists and is not a directory", target)
		}
	}
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", target, err)
	}
	// Owner and mode through an fd of the dir, never by name: a
	// process in a running container (cp) could swap the name for a symlink
	// to a host file in between, and fchmodat follows symlinks.
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", target, err)
	}
	defer unix.Close(fd)
	u, g := cp.owner(uid, gid)
	if err := unix.Fchown(fd, u, g); err != nil {
		return fmt.Errorf("chown %s: %w", target, err)
	}
	if err := cp.setXattrs(func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }, xs); err != nil {
		return fmt.Errorf("mkdir %s: %w", target, err)
	}
	if err := unix.Fchmod(fd, m); err != nil {
		return fmt.Errorf("chmod %s: %w", target, err)
	}
	// Its times are set in finish by the path it has now, free of
	// symlinks: one that a later entry makes or retargets cannot send them
	// elsewhere.
	real, err := cp.inRootPath(fd)
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", target, err)
	}
	cp.dirTimes = append(cp.dirTimes, dirTime{real, mtime})
	return nil
}

// chmodNoFollow sets the mode of dfd/base, which must not be a symlink,
// through an O_PATH fd of it (fchmodat follows symlinks; a device node or
// fifo cannot be opened for a plain fchmod).
func chmodNoFollow(dfd int, base string, mode uint32) error {
	fd, err := unix.Openat(dfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.ELOOP
	}
	return unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode)
}

func (cp *copier) symlink(linkTarget, target string, mtime time.Time, uid, gid int, xs map[string][]byte) error {
	d, base, err := cp.parentDir(target)
	if err != nil {
		return fmt.Errorf("symlink %s: %w", target, err)
	}
	defer d.Close()
	dfd := int(d.Fd())
	if err := replaceable(dfd, base); err != nil {
		return fmt.Errorf("symlink %s: %w", target, err)
	}
	if err := unix.Symlinkat(linkTarget, dfd, base); err != nil {
		return fmt.Errorf("symlink %s: %w", target, err)
	}
	u, g := cp.owner(uid, gid)
	if err := unix.Fchownat(dfd, base, u, g, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", target, err)
	}
	lp := fmt.Sprintf("/proc/self/fd/%d/%s", dfd, base) // the link itself: l*xattr on it
	if err := cp.setXattrs(func(k string, v []byte) error { return unix.Lsetxattr(lp, k, v, 0) }, xs); err != nil {
		return fmt.Errorf("symlink %s: %w", target, err)
	}
	return setTimes(dfd, base, mtime)
}

// finish sets the mtimes of the dirs it created, deepest first.
func (cp *copier) finish() error {
	for i := len(cp.dirTimes) - 1; i >= 0; i-- {
		dt := cp.dirTimes[i]
		d, base, err := cp.parentDir(dt.path)
		if err != nil {
			return err
		}
		err = setTimes(int(d.Fd()), base, dt.mtime)
		d.Close()
		if err != nil {
			return fmt.Errorf("set times of %s: %w", dt.path, err)
		}
	}
	cp.dirTimes = nil
	return nil
}
