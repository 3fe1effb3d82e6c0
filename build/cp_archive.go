package build

// docker cp's two halves, on file descriptors. WriteTree archives one object
// (for a dir, everything below it) without following a symlink below it;
// ExtractInRoot unpacks a tar into a dir resolved inside a root with the copier
// COPY uses, so neither the tar nor a symlink in the root can lead a write
// outside the root.

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
)

// OpenIn opens name inside the root dir root, every symlink and ".." resolved
// inside it (openat2 RESOLVE_IN_ROOT); flags as for open(2), O_PATH and
// O_NOFOLLOW (the final component not followed) included. The caller closes the
// file; root stays the caller's.
func OpenIn(root *os.File, name string, flags int) (*os.File, error) {
	return openat2InRoot(root, name, flags)
}

// BindIn bind-mounts b.Source on b.Target inside root (made if missing, as
// run makes a bind's mountpoint), read-only all the way down with
// b.ReadOnly: cp's view of a stopped container's volumes. The caller is in a
// mount namespace of its own.
func BindIn(root *os.File, b Bind) error { return bindIn(root, b) }

// WriteTree writes obj (an fd of a file, dir, symlink, device or fifo, O_PATH
// will do) to tw as entries named name, and for a dir name/... for everything
// below it, sorted. Below obj each name is opened relative to its parent's fd
// with O_NOFOLLOW: a symlink is archived as a symlink and never followed, so the
// walk stays inside obj's tree whatever the tree holds or however it changes
// meanwhile. A regular file met again under another name (same dev/ino) becomes
// a hard link to the first. Owners are numeric, mtimes whole seconds (as docker
// writes them); of the xattrs only a regular file's security.capability is
// stored, as docker's archive does (ReadSecurityXattrToTarHeader, a namespaced
// v3 capability made v2), and sockets are skipped. name "." archives
// a dir's contents. The caller closes obj and tw.
func WriteTree(tw *tar.Writer, obj *os.File, name string) error {
	t := &treeWriter{tw: tw, links: map[fileID]string{}, buf: make([]byte, 1<<20)}
	return t.entry(int(obj.Fd()), name)
}

type fileID struct{ dev, ino uint64 }

type treeWriter struct {
	tw    *tar.Writer
	links map[fileID]string
	buf   []byte
}

func (t *treeWriter) entry(fd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return t.dir(fd, hdr)
	case unix.S_IFREG:
		return t.regular(fd, hdr, &st)
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: name, Err: err}
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(buf[:n])
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets: tar cannot hold them
	}
	return t.tw.WriteHeader(hdr)
}

func (t *treeWriter) dir(fd int, hdr *tar.Header) error {
	name := hdr.Name
	hdr.Typeflag = tar.TypeDir
	if !strings.HasSuffix(hdr.Name, "/") {
		hdr.Name += "/"
	}
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	d := os.NewFile(uintptr(dfd), name)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read dir %s: %w", name, err)
	}
	sort.Strings(names)
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	for _, n := range names {
		cfd, err := unix.Openat(dfd, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			continue // removed meanwhile
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: path.Join(name, n), Err: err}
		}
		err = t.entry(cfd, path.Join(name, n))
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *treeWriter) regular(fd int, hdr *tar.Header, st *unix.Stat_t) error {
	if st.Nlink > 1 {
		id := fileID{st.Dev, st.Ino}
		if first, ok := t.links[id]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return t.tw.WriteHeader(hdr)
		}
		t.links[id] = hdr.Name
	}
	// Reopen the O_PATH fd for reading: /proc/self/fd/N is exactly that file.
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", hdr.Name, err)
	}
	defer f.Close()
	if c := fileCapability(int(f.Fd())); c != nil {
		hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(c)}
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	// holes as zeros, not read (SEEK_DATA): a sparse file of 2 GiB took 10 s
	if err := cow.CopyData(t.tw, int(f.Fd()), st.Size, st.Blocks*512 < st.Size, t.buf); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	return nil
}

// fileCapability is the security.capability of the open file fd, nil if none,
// as docker's archive carries it: a VFS_CAP_REVISION_3 value (a capability
// for a user namespace's root) becomes revision 2, since that root means
// nothing where the archive is unpacked. The other xattrs are left, as docker
// cp leaves them.
func fileCapability(fd int) []byte {
	const (
		capV2Size     = 20 // linux/capability.h XATTR_CAPS_SZ_2
		versionOffset = 3  // the high byte of magic_etc, little endian
	)
	buf := make([]byte, 64)
	n, err := unix.Fgetxattr(fd, "security.capability", buf)
	if err != nil || n == 0 {
		return nil
	}
	c := buf[:n]
	if len(c) > capV2Size && c[versionOffset] == 3 {
		c[versionOffset] = 2
		c = c[:capV2Size]
	}
	return c
}

// ExtractInRoot unpacks the tar r into dir, a directory inside the root dir root
// (docker cp's extraction). Every path is resolved inside root (openat2
// RESOLVE_IN_ROOT) and final components are never followed: an absolute or ".."
// name, a link in the tar or a symlink already in root cannot send a write
// outside root. A missing parent is created (0755). Existing dirs are kept as
// they are (mode, owner, times); an existing non-dir at an entry's name is
// replaced; a dir is never replaced by a non-dir nor a non-dir by a dir (an
// error). Every entry gets owner uid:gid, or with -1, -1 the tar's. A tar from
// outside is checked whole first (cow.CheckLayer): this refuses nothing of its
// own, so a bad entry found halfway leaves the entries before it written. root
// stays the caller's.
func ExtractInRoot(root *os.File, dir string, r io.Reader, uid, gid int) error {
	cp := &copier{rfd: root, uid: uid, gid: gid}
	if err := cp.extractTar(tar.NewReader(r), dir, false); err != nil {
		return err
	}
	return cp.finish()
}

// WriteTreeTar writes obj as a whole tar archive (WriteTree, then the end
// marker) to w and returns its size.
func WriteTreeTar(w io.Writer, obj *os.File, name string) (int64, error) {
	cw := &countingWriter{w: w}
	tw := tar.NewWriter(cw)
	err := WriteTree(tw, obj, name)
	if err == nil {
		err = tw.Close()
	}
	return cw.n, err
}

// CopyTree pipes obj, archived under name (WriteTree), into extract, which reads
// the tar; it returns the tar's size and the first error of either side.
func CopyTree(obj *os.File, name string, extract func(io.Reader) error) (int64, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := WriteTree(tw, obj, name)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	cr := &cow.CountingReader{R: pr}
	err := extract(cr)
	if err == nil {
		_, err = io.Copy(io.Discard, cr) // to the writer's end, and its error
	}
	pr.CloseWithError(errors.New("extraction stopped"))
	if werr := <-done; werr != nil && err == nil {
		err = werr
	}
	return cr.N, err
}

// ExtractChecked is ExtractInRoot of a tar from outside (docker cp's STDIN): in
// is copied to an unnamed file in spool, refused whole if any entry is unsafe
// (cow.CheckLayer: ".." escapes, entries below a symlink it made, hard links to
// outside it; and whiteout names, which mean nothing outside a layer and which
// the union refuses to create), and only then extracted, so a refused tar
// changes nothing. Absolute names count from dir, as in docker cp. It returns
// the tar's size.
func ExtractChecked(root *os.File, dir string, in io.Reader, spool string, uid, gid int) (int64, error) {
	f, err := unnamedFile(spool)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n, err := cow.CopySparse(int(f.Fd()), in, buf) // a sparse file's zeros take no space
	if err != nil {
		return n, fmt.Errorf("read tar: %w", err)
	}
	// gzip, bzip2, xz or zstd too, as docker's API takes them: the plain tar
	// goes to a second spool (a plain one is used as it is), checked and
	// extracted from there.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return n, err
	}
	r, c, err := blobstore.DecompressDetect(f)
	if err != nil {
		return n, fmt.Errorf("refusing the tar archive: %w", err)
	}
	if c != blobstore.None {
		plain, err := unnamedFile(spool)
		if err != nil {
			r.Close()
			return n, err
		}
		defer plain.Close()
		_, err = cow.CopySparse(int(plain.Fd()), r, buf)
		r.Close()
		if err != nil {
			return n, fmt.Errorf("refusing the tar archive: %w", err)
		}
		f.Close() // the compressed spool's space goes now
		f = plain
	} else {
		r.Close()
	}
	if err := checkTar(f); err != nil {
		return n, fmt.Errorf("refusing the tar archive: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return n, err
	}
	return n, ExtractInRoot(root, dir, f, uid, gid)
}

func checkTar(f *os.File) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := cow.CheckLayer(f); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if cow.IsReservedName(path.Base(h.Name)) {
			return fmt.Errorf("%s: %w: whiteout name", h.Name, cow.ErrUnsafePath)
		}
	}
}

// unnamedFile is an O_TMPFILE file in dir (where the filesystem has none, a
// named one removed at once): a killed copy leaves nothing behind.
func unnamedFile(dir string) (*os.File, error) {
	if fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600); err == nil {
		return os.NewFile(uintptr(fd), path.Join(dir, "(spool)")), nil
	}
	f, err := os.CreateTemp(dir, ".spool-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
