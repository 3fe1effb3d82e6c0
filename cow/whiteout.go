package cow

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Whiteouts: the one home of both encodings of "this name was deleted" and "this
// directory hides everything below it".
//
// OCI (layer tars, and the unpacked layers/ and upper dirs of the store):
//   - a regular file ".wh.<name>" beside the deleted <name>;
//   - a regular file ".wh..wh..opq" inside a directory that is opaque.
//
// Overlay (kernel overlayfs, fuse-overlayfs and containers/storage upper dirs):
//   - a character device with device number 0/0 in place of the deleted name;
//   - the xattr "trusted.overlay.opaque" (or "user.overlay.opaque" without root)
//     set to "y" on an opaque directory.
//
// Names beginning with ".wh." are reserved in both: the union filesystem hides them
// from lookup and readdir and refuses to create them.
//
// Long names: the OCI whiteout of a name of 252-255 bytes is longer than NAME_MAX. It
// is a valid tar name (a PAX path record) that docker, containerd and umoci apply,
// but no directory can hold it as a file, so an OCI dir (an unpacked layer, an upper
// dir) holds such a whiteout in the overlay encoding, a 0/0 device named <name>, and
// readers of OCI dirs take a 0/0 device as a whiteout for such names only
// (IsWhiteoutDevice). Layer tars still carry ".wh.<name>": Apply reads it, Diff
// writes it. Since Linux 5.8 anyone may make a 0/0 device (mknod allows whiteouts
// without CAP_MKNOD); before, only root.

const (
	// WhiteoutPrefix starts the name of an OCI whiteout file: ".wh.<name>".
	WhiteoutPrefix = ".wh."
	// WhiteoutMetaPrefix starts names reserved for markers (".wh..wh.").
	WhiteoutMetaPrefix = WhiteoutPrefix + WhiteoutPrefix
	// OpaqueMarker is the OCI marker file making its directory opaque.
	OpaqueMarker = WhiteoutMetaPrefix + ".opq"

	// OverlayOpaqueXattr marks an opaque directory in kernel overlayfs (needs root).
	OverlayOpaqueXattr = "trusted.overlay.opaque"
	// UserOverlayOpaqueXattr is the unprivileged form (overlayfs "userxattr").
	UserOverlayOpaqueXattr = "user.overlay.opaque"
	// OverlayRedirectXattr records a renamed directory's origin in kernel overlayfs.
	OverlayRedirectXattr = "trusted.overlay.redirect"
	// FuseOverlayfsOpaqueXattr is fuse-overlayfs's own opaque marker, found in upper
	// dirs it wrote unprivileged; read as opaque like the overlay xattrs.
	FuseOverlayfsOpaqueXattr = "user.fuseoverlayfs.opaque"
)

// Format selects how a directory encodes whiteouts and opaque directories.
type Format int

const (
	// FormatOCI uses ".wh.<name>" files and the ".wh..wh..opq" marker.
	FormatOCI Format = iota
	// FormatOverlay uses 0/0 character devices and the overlay opaque xattr.
	FormatOverlay
)

func (f Format) String() string {
	if f == FormatOverlay {
		return "overlay"
	}
	return "oci"
}

// ErrReservedName is returned when a user tries to create a name reserved for markers.
var ErrReservedName = errors.New("name is reserved for whiteouts")

// IsReservedName reports whether name (one path component) is reserved for whiteout
// markers and must never be visible or creatable through the union filesystem.
func IsReservedName(name string) bool { return strings.HasPrefix(name, WhiteoutPrefix) }

// WhiteoutName returns the OCI whiteout file name for name: ".wh.<name>".
func WhiteoutName(name string) string { return WhiteoutPrefix + name }

// WhiteoutTarget returns the name an OCI whiteout file deletes, and whether name is
// such a whiteout at all. The opaque marker and other ".wh..wh." names are not.
func WhiteoutTarget(name string) (string, bool) {
	if !strings.HasPrefix(name, WhiteoutPrefix) || strings.HasPrefix(name, WhiteoutMetaPrefix) {
		return "", false
	}
	t := name[len(WhiteoutPrefix):]
	return t, t != "" && t != "." && t != ".."
}

// nameMax is NAME_MAX, the longest name a directory entry may have.
const nameMax = 255

// HasLongWhiteout reports whether name's OCI whiteout ".wh.<name>" is longer than
// NAME_MAX, so that an OCI dir holds it as a 0/0 device (see Long names above).
func HasLongWhiteout(name string) bool { return len(WhiteoutPrefix)+len(name) > nameMax }

// IsWhiteoutDevice reports whether the entry name, of stat st, in a dir whose
// whiteouts are in format f, is a whiteout device: any 0/0 device in the overlay
// format, one whose name has a long whiteout in the OCI format.
func IsWhiteoutDevice(f Format, name string, st *unix.Stat_t) bool {
	return IsOverlayWhiteout(st) && (f == FormatOverlay || HasLongWhiteout(name))
}

// IsOverlayWhiteout reports whether st describes an overlay whiteout: a character
// device with device number 0/0.
func IsOverlayWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// IsOverlayOpaqueValue reports whether an opaque xattr value marks the directory opaque.
func IsOverlayOpaqueValue(v []byte) bool { return len(v) == 1 && v[0] == 'y' }

// IsOverlayXattr reports whether an xattr name belongs to overlay's private namespace
// (kernel overlayfs's trusted.overlay.* and user.overlay.*, and fuse-overlayfs's
// user.fuseoverlayfs.*), which the union filesystem hides from listxattr and refuses
// to set, and which never goes into a layer.
func IsOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") ||
		strings.HasPrefix(name, "user.fuseoverlayfs.")
}

// IsOpaqueDir reports whether the directory open as dirfd (O_PATH is fine) is
// opaque in either encoding. It checks for the OCI marker first, then the overlay
// xattrs (both kernel ones and fuse-overlayfs's). Unprivileged, a dir of the
// user's whose mode denies its owner search (for the marker) or read (for a
// user.* xattr), 0000 or 0300, is made u+rx for the check and given its mode back
// at once (unpriv.go): "not opaque" from a check it could not make would let a
// union show the lower entries the dir hides.
func IsOpaqueDir(dirfd int) (bool, error) {
	opq, err := isOpaqueDir(dirfd)
	if errors.Is(err, unix.EACCES) && unprivileged {
		undo := widenFd(dirfd)
		opq, err = isOpaqueDir(dirfd)
		undo()
	}
	var denied *xattrDenied
	if errors.As(err, &denied) {
		return false, nil // as before: an xattr nobody may read marks nothing
	}
	return opq, err
}

// xattrDenied is an overlay opaque xattr that could not be read (EACCES).
type xattrDenied struct{ name string }

func (e *xattrDenied) Error() string { return "getxattr " + e.name + ": permission denied" }
func (e *xattrDenied) Unwrap() error { return unix.EACCES }

func isOpaqueDir(dirfd int) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, OpaqueMarker, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return false, &os.PathError{Op: "stat", Path: OpaqueMarker, Err: err}
	}
	buf := make([]byte, 8)
	for _, x := range []string{OverlayOpaqueXattr, UserOverlayOpaqueXattr, FuseOverlayfsOpaqueXattr} {
		n, err := unix.Fgetxattr(dirfd, x, buf)
		if errors.Is(err, unix.EBADF) { // an O_PATH fd
			n, err = unix.Getxattr(fdPath(dirfd), x, buf)
		}
		if err == nil && IsOverlayOpaqueValue(buf[:n]) {
			return true, nil
		}
		if errors.Is(err, unix.EACCES) {
			return false, &xattrDenied{x}
		}
	}
	return false, nil
}

// MakeWhiteout records in the directory open as dirfd that name is deleted, in format f
// (a 0/0 device in FormatOCI too for a name whose whiteout is long: HasLongWhiteout).
// It replaces nothing: the caller removes any existing entry first.
func MakeWhiteout(dirfd int, name string, f Format) error {
	if f == FormatOverlay || HasLongWhiteout(name) {
		if err := unix.Mknodat(dirfd, name, unix.S_IFCHR|0o000, 0); err != nil {
			return &os.PathError{Op: "mknod whiteout", Path: name, Err: err}
		}
		return nil
	}
	fd, err := unix.Openat(dirfd, WhiteoutName(name), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o000)
	if err != nil {
		return &os.PathError{Op: "create whiteout", Path: WhiteoutName(name), Err: err}
	}
	return unix.Close(fd)
}

// MakeOpaque marks the directory open as dirfd opaque in format f. For FormatOverlay it
// sets trusted.overlay.opaque, falling back to user.overlay.opaque without privilege.
func MakeOpaque(dirfd int, f Format) error {
	if f == FormatOverlay {
		err := unix.Fsetxattr(dirfd, OverlayOpaqueXattr, []byte("y"), 0)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
			err = unix.Fsetxattr(dirfd, UserOverlayOpaqueXattr, []byte("y"), 0)
		}
		if err != nil {
			return &os.PathError{Op: "setxattr opaque", Path: ".", Err: err}
		}
		return nil
	}
	fd, err := unix.Openat(dirfd, OpaqueMarker, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o000)
	if err != nil {
		return &os.PathError{Op: "create opaque marker", Path: OpaqueMarker, Err: err}
	}
	return unix.Close(fd)
}
