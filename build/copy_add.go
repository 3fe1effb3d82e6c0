package build

// ADD's extras: unpacking local tarballs and downloading URLs.

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
)

// decompress returns f's content decompressed: gzip, zstd, bzip2 or xz (through
// xz(1), whose failure is a read error at the end), or as it is.
func decompress(f *os.File) (io.ReadCloser, error) { return blobstore.Decompress(f) }

// isArchive reports whether a file is a tar archive (plain, gzip, bzip2, xz or
// zstd), which ADD unpacks instead of copying.
func isArchive(p string) bool {
	// Non-blocking, and only a regular file is read: an open of a FIFO in the
	// context waited for a writer for good, a device's read its driver's.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return isArchiveFile(f)
}

// isArchiveFile is isArchive of an open file, left at its start.
func isArchiveFile(f *os.File) bool {
	r, err := decompress(f)
	if err != nil {
		return false
	}
	_, err = tar.NewReader(r).Next()
	r.Close()
	_, serr := f.Seek(0, io.SeekStart)
	return err == nil && serr == nil
}

// extract unpacks a tar archive into dest, keeping the archive's owners (unless
// --chown), modes and times. Names are held inside dest.
func (cp *copier) extract(p, dest string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return cp.extractFrom(f, dest)
}

// extractFrom is extract of an open archive. --chmod is not applied, to the
// entries nor to dest: as buildkit unpacks (dest made 0755, --chown's), the
// archive's modes are kept.
func (cp *copier) extractFrom(f *os.File, dest string) error {
	defer func(m *chmodFlag) { cp.chmod = m }(cp.chmod)
	cp.chmod = nil
	r, err := decompress(f)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := cp.mkdir(dest, 0o755, time.Now(), 0, 0, nil); err != nil {
		return err
	}
	lift, err := cp.confineTo(dest)
	if err != nil {
		return err
	}
	defer lift()
	return cp.extractTar(tar.NewReader(r), dest, true)
}

// extractTar writes tr's entries under dest, every path resolved inside the
// root: what ADD unpacks and what cp copies into a container. Whiteouts mean
// nothing outside a layer: ADD skips them, cp refuses them (errWhiteoutName),
// and nodes with noNodes are skipped. With
// updateDirs (ADD) a dir entry already there takes the entry's metadata
// (mkdirOver); without (cp), it is left as it is.
func (cp *copier) extractTar(tr *tar.Reader, dest string, updateDirs bool) error {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if cp.confine != nil && leavesDir(h.Name) {
			return cp.outside(h.Name, &escapeError{})
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		if cow.IsReservedName(path.Base(name)) {
			if updateDirs {
				continue // ADD of a tar: a whiteout, as umoci reads one
			}
			// cp: a file of the user's, which the container cannot hold; it
			// was dropped without a word
			return fmt.Errorf("copy to %s: %w", path.Join(dest, name), errWhiteoutName)
		}
		target := path.Join(dest, name)
		if cp.uid < 0 { // the entry's owner is kept: refuse one chown would wrap
			if err := cow.CheckOwner(h); err != nil {
				return fmt.Errorf("extract %s: %w", h.Name, err)
			}
		}
		if err := cow.CheckDevice(h); err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
		mode := fs.FileMode(h.Mode&0o777) | FileModeBits(uint32(h.Mode))
		xs := tarXattrs(h)
		switch h.Typeflag {
		case tar.TypeDir:
			if updateDirs {
				err = cp.mkdirOver(target, mode, h.ModTime, h.Uid, h.Gid, xs)
			} else {
				err = cp.mkdir(target, mode, h.ModTime, h.Uid, h.Gid, xs)
			}
		case tar.TypeReg:
			err = cp.writeFile(target, tr, unixMode(mode), h.ModTime, h.Uid, h.Gid, xs)
		case tar.TypeSymlink:
			err = cp.symlink(h.Linkname, target, h.ModTime, h.Uid, h.Gid, xs)
		case tar.TypeLink:
			if cp.confine != nil && leavesDir(h.Linkname) {
				return cp.outside(h.Name, fmt.Errorf("its link target %s: %w", h.Linkname, &escapeError{}))
			}
			old := path.Join(dest, path.Clean("/"+h.Linkname))
			if old == target {
				continue // GNU tar's record of a file named twice: it is there
			}
			err = cp.hardlink(old, target)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if cp.noNodes {
				continue
			}
			err = cp.mknod(target, h)
		default:
			continue
		}
		if esc := (*escapeError)(nil); errors.As(err, &esc) {
			if h.Typeflag == tar.TypeLink {
				return cp.outside(h.Name, fmt.Errorf("its link target %s: %w", h.Linkname, esc))
			}
			return cp.outside(h.Name, esc)
		}
		if err != nil {
			return err
		}
	}
}

// leavesDir reports whether the tar name p, taken relative to the dir it is
// unpacked in, leads out of it ("../x", "a/../../x").
func leavesDir(p string) bool {
	p = path.Clean(strings.TrimLeft(p, "/"))
	return p == ".." || strings.HasPrefix(p, "../")
}

// outside is the error for the entry name that would land outside the
// confining destination.
func (cp *copier) outside(name string, why error) error {
	return fmt.Errorf("entry %s would land outside %s: %w", name, cp.confine.dest, why)
}

func (cp *copier) hardlink(old, target string) error {
	od, obase, err := cp.parentDir(old)
	if err != nil {
		return fmt.Errorf("link %s: %w", target, err)
	}
	defer od.Close()
	d, base, err := cp.parentDir(target)
	if err != nil {
		return fmt.Errorf("link %s: %w", target, err)
	}
	defer d.Close()
	if err := replaceable(int(d.Fd()), base); err != nil {
		return fmt.Errorf("link %s: %w", target, err)
	}
	if err := unix.Linkat(int(od.Fd()), obase, int(d.Fd()), base, 0); err != nil {
		return fmt.Errorf("link %s to %s: %w", target, old, err)
	}
	return nil
}

func (cp *copier) mknod(target string, h *tar.Header) error {
	t := uint32(unix.S_IFIFO)
	switch h.Typeflag {
	case tar.TypeChar:
		t = unix.S_IFCHR
	case tar.TypeBlock:
		t = unix.S_IFBLK
	}
	return cp.makeNode(target, t, uint32(h.Mode&0o7777), unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)), h.ModTime, h.Uid, h.Gid)
}

// makeNode makes target a node of type typ (S_IFCHR, S_IFBLK or S_IFIFO)
// with device number rdev, the st_mode bits mode (or --chmod's), mtime and
// owner (as owner makes it).
func (cp *copier) makeNode(target string, typ, mode uint32, rdev uint64, mtime time.Time, uid, gid int) error {
	d, base, err := cp.parentDir(target)
	if err != nil {
		return fmt.Errorf("mknod %s: %w", target, err)
	}
	defer d.Close()
	dfd := int(d.Fd())
	if err := replaceable(dfd, base); err != nil {
		return fmt.Errorf("mknod %s: %w", target, err)
	}
	if cp.chmod != nil {
		mode = unixMode(cp.chmod.apply(fs.FileMode(mode&0o777) | FileModeBits(mode)))
	}
	if err := unix.Mknodat(dfd, base, typ|mode, int(rdev)); err != nil {
		return fmt.Errorf("mknod %s: %w", target, err)
	}
	u, g := cp.owner(uid, gid)
	if err := unix.Fchownat(dfd, base, u, g, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", target, err)
	}
	// The mode asked for, not what the umask left (and after the chown,
	// which clears set-id bits).
	if err := chmodNoFollow(dfd, base, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", target, err)
	}
	return setTimes(dfd, base, mtime)
}

// download is an ADD source fetched from a URL into a temp file.
type download struct {
	url   string
	name  string // the file name ADD gives it in a dest dir
	file  string
	sum   string // sha256 of the content
	mtime time.Time
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// fetchURL downloads an ADD source (as docker: mode 0600, mtime from
// Last-Modified, not unpacked).
func fetchURL(ctx context.Context, raw, tmpDir string) (*download, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		return nil, fmt.Errorf("ADD %s: cannot determine a file name from the URL; give a destination file", raw)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ADD %s: %s", raw, resp.Status)
	}
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(tmpDir, "download-")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	d := &download{url: raw, name: name, file: f.Name(), sum: hex.EncodeToString(h.Sum(nil))}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		d.mtime = lm
	}
	return d, nil
}
