package cow

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// paxXattrPrefix starts the PAX records that carry extended attributes.
const paxXattrPrefix = "SCHILY.xattr."

// setMeta restores owner, mode, xattrs and times of an entry just created. fd is an
// open fd of the entry (a regular file or dir) or -1, then the entry is reached as
// base in the dir open as pfd, without following it.
func (a *applier) setMeta(pfd int, base string, fd int, hdr *tar.Header, symlink bool) error {
	if hdr.Uid != a.euid || hdr.Gid != a.egid {
		var err error
		if fd >= 0 {
			err = unix.Fchown(fd, hdr.Uid, hdr.Gid)
		} else {
			err = unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil && !(a.euid != 0 && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL))) {
			return fmt.Errorf("chown: %w", err)
		}
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if ok && IsPrivateXattr(name) {
			p, _ := cleanName(hdr.Name)
			a.private.add(fmt.Sprintf("%s (xattr %s)", p, name))
			continue
		}
		if !ok || (a.euid != 0 && name == RootlessXattr) {
			continue // unprivileged, the owner below is the one that counts
		}
		if name == capabilityXattr && v == "" {
			// An empty record is no capability (POSIX pax reads an empty
			// value as "unset", as Go's Header.Xattrs and umoci do). Set, the
			// kernel keeps it but then refuses the file: exec, getxattr and so
			// copy-up and commit fail with EINVAL. Any other empty value is
			// kept, as GNU tar and containerd restore it.
			continue
		}
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, name, []byte(v), 0)
		} else {
			err = unix.Lsetxattr(procPath(pfd, base), name, []byte(v), 0)
		}
		// Like Docker: an xattr namespace the filesystem does not support is skipped
		// (ENOTSUP), and so is one we may not set unprivileged (EPERM). The kernel
		// allows user.* xattrs only on regular files and directories (fd >= 0):
		// on a symlink, device or fifo they fail with EPERM even for root, and
		// CheckLayer, which cannot know, has accepted the layer.
		if err != nil && !errors.Is(err, unix.ENOTSUP) && !(a.euid != 0 && errors.Is(err, unix.EPERM)) &&
			!(fd < 0 && strings.HasPrefix(name, "user.") && errors.Is(err, unix.EPERM)) {
			return fmt.Errorf("setxattr %s: %w", name, err)
		}
		if a.euid != 0 && errors.Is(err, unix.EPERM) && !strings.HasPrefix(name, "user.") {
			p, _ := cleanName(hdr.Name)
			a.dropped.add(fmt.Sprintf("%s (xattr %s)", p, name))
		}
	}
	if a.euid != 0 {
		if v := encodeRootless(hdr.Uid, hdr.Gid); v != nil && fd >= 0 {
			// Unprivileged: the entry is the user's, the image's owner is kept
			// here (rootless.go). Only regular files and dirs take user xattrs.
			if err := unix.Fsetxattr(fd, RootlessXattr, v, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
				return fmt.Errorf("setxattr %s: %w", RootlessXattr, err)
			}
		}
	}
	// The mode after the xattrs: unprivileged, setting a user xattr needs write
	// permission, which the entry's mode may not give (a 0555 dir).
	if !symlink {
		mode := uint32(hdr.Mode) & 0o7777
		var err error
		if fd >= 0 {
			err = unix.Fchmod(fd, mode)
		} else {
			err = unix.Fchmodat(pfd, base, mode, 0)
		}
		if err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	mt := hdr.ModTime
	at := hdr.AccessTime
	if at.IsZero() {
		at = mt
	}
	ts := []unix.Timespec{toTimespec(at), toTimespec(mt)}
	var err error
	if fd >= 0 {
		err = unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
	} else {
		err = unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// Limits setxattr(2) applies whatever the filesystem (XATTR_NAME_MAX,
// XATTR_SIZE_MAX).
const (
	xattrNameMax = 255
	xattrSizeMax = 64 << 10
)

// checkXattrs refuses an entry whose xattr records setxattr(2) refuses on any
// filesystem: a name empty, longer than 255 bytes or a bare namespace ("user."),
// a value over 64 KiB, a security.capability value the kernel cannot parse.
// Private ones are not checked: Apply drops them.
func checkXattrs(hdr *tar.Header) error {
	var bad []string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || IsPrivateXattr(name) {
			continue
		}
		switch name {
		case "", "user.", "trusted.", "security.":
			bad = append(bad, fmt.Sprintf("xattr name %q", name))
		}
		if len(name) > xattrNameMax {
			bad = append(bad, fmt.Sprintf("xattr name of %d bytes", len(name)))
		}
		if len(v) > xattrSizeMax {
			bad = append(bad, fmt.Sprintf("xattr %s of %d bytes", name, len(v)))
		}
		if name == capabilityXattr && !validCapability(v) {
			bad = append(bad, fmt.Sprintf("xattr %s of %d bytes the kernel refuses", name, len(v)))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad) // the same tar always gives the same error
	return fmt.Errorf("%w: %s", ErrUnsupported, bad[0])
}

const capabilityXattr = "security.capability"

// validCapability reports whether setxattr(2) takes v as security.capability
// (security/commoncap.c: cap_convert_nscap): empty, a VFS_CAP_REVISION_2 value of
// 20 bytes, or a VFS_CAP_REVISION_3 one of 24 bytes whose root uid is not -1.
// Revision 1 values and any other size fail with EINVAL.
func validCapability(v string) bool {
	if v == "" {
		return true
	}
	if len(v) != 20 && len(v) != 24 {
		return false
	}
	rev := binary.LittleEndian.Uint32([]byte(v[:4])) &^ 1 // bit 0: VFS_CAP_FLAGS_EFFECTIVE
	if len(v) == 20 {
		return rev == 0x02000000
	}
	return rev == 0x03000000 && binary.LittleEndian.Uint32([]byte(v[20:])) != 0xffffffff
}

func toTimespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{}
	}
	// Not through UnixNano, which wraps for times before 1678 or after 2262.
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// procPath names base in the dir open as dirfd for the path-only syscalls
// (lsetxattr, lgetxattr): the magic link resolves the dir, base is not followed.
func procPath(dirfd int, base string) string {
	if base == "" {
		return "/proc/self/fd/" + strconv.Itoa(dirfd)
	}
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
}

const (
	holeBlock = 4096     // zero runs are detected in blocks of this size
	sparseMin = 64 << 10 // files smaller than this are written as they come
)

var zeroBlock [holeBlock]byte

// writeData copies size bytes from r into the new file fd, then checks that r
// ends there. Files of sparseMin and more get holes for every all-zero 4 KiB
// block, so a sparse file in the tar (GNU or PAX sparse, or plain zeros) is sparse
// again on disk.
func writeData(fd int, r io.Reader, size int64, buf []byte) error {
	var off, end int64 // end: just past the last byte written
	for off < size {
		n := int64(len(buf))
		if size-off < n {
			n = size - off
		}
		b := buf[:n]
		if _, err := io.ReadFull(r, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		var err error
		if end, err = writeChunk(fd, b, off, end, size >= sparseMin); err != nil {
			return err
		}
		off += n
	}
	if end < size {
		if err := unix.Ftruncate(fd, size); err != nil {
			return err
		}
	}
	// Read on to the entry's end, which must come now: archive/tar reports a
	// sparse map that leaves stored data unreferenced only there (CheckLayer reads
	// every file to its end as well).
	_, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r, buf)
	return err
}

// CopySparse copies r to its end into fd, a new empty file, as writeData
// writes a layer's file: a file of sparseMin or more gets a hole for every
// all-zero 4 KiB block. For copies whose size is not known before (docker cp's
// tar stream, a spool): a sparse file there arrives as zeros, and was written
// out whole (review rev22-big: a cp of a 20 GiB file of 7 MiB of data took 20
// GiB in the container). buf is the copy buffer (at least sparseMin; 1 MiB
// does). It returns the bytes copied.
func CopySparse(fd int, r io.Reader, buf []byte) (int64, error) {
	var off, end int64
	sparse := false
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			// all of a file under sparseMin comes in one read
			sparse = sparse || off > 0 || err == nil || n >= sparseMin
			var werr error
			if end, werr = writeChunk(fd, buf[:n], off, end, sparse); werr != nil {
				return off, werr
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return off, err
		}
	}
	if end < off {
		if err := unix.Ftruncate(fd, off); err != nil {
			return off, err
		}
	}
	return off, nil
}

// writeChunk writes b at off in fd, leaving out its all-zero 4 KiB blocks if
// sparse; end is just past the last byte written so far, and it returns the
// new one.
func writeChunk(fd int, b []byte, off, end int64, sparse bool) (int64, error) {
	n := int64(len(b))
	if !sparse {
		return off + n, pwriteAll(fd, b, off)
	}
	for i := int64(0); i < n; {
		j := i + holeBlock
		if j > n {
			j = n
		}
		if bytes.Equal(b[i:j], zeroBlock[:j-i]) {
			i = j
			continue
		}
		// Extend the data run over every following non-zero block.
		for j < n {
			k := j + holeBlock
			if k > n {
				k = n
			}
			if bytes.Equal(b[j:k], zeroBlock[:k-j]) {
				break
			}
			j = k
		}
		if err := pwriteAll(fd, b[i:j], off+i); err != nil {
			return end, err
		}
		end = off + j
		i = j
	}
	return end, nil
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}
