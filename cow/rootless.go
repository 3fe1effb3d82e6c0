package cow

import (
	"encoding/binary"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Unprivileged, the layer and upper dirs cannot hold the owners of an image's files:
// every entry is the user's. As umoci's rootless mode (and the rootless containers
// convention, rootlesscontaine.rs) does, the user stands for the image's root, and an
// owner that is not root is kept in a user.rootlesscontainers xattr: Apply writes it
// for entries owned by anyone but root (uid or gid), copy-up carries it like any
// xattr, and the tar writer turns it back into the entry's owner (root where there
// is none) and leaves it out of the layer. Symlinks cannot hold user xattrs (the
// kernel refuses), so theirs are root's, as with umoci.

// RootlessXattr is the xattr holding an entry's owner in an unprivileged store.
const RootlessXattr = "user.rootlesscontainers"

// rootlessNoop marks an id of the owner that is root's (umoci's NoopID).
const rootlessNoop = 1<<32 - 1

// encodeRootless encodes the owner uid, gid as the rootless containers protobuf
// message (Resource{uint32 uid = 1; uint32 gid = 2}), root's ids as rootlessNoop; nil
// if both are root's.
func encodeRootless(uid, gid int) []byte {
	if uid == 0 && gid == 0 {
		return nil
	}
	id := func(v int) uint64 {
		if v == 0 {
			return rootlessNoop
		}
		return uint64(uint32(v))
	}
	b := []byte{0x08} // field 1, varint
	b = binary.AppendUvarint(b, id(uid))
	b = append(b, 0x10) // field 2, varint
	return binary.AppendUvarint(b, id(gid))
}

// decodeRootless decodes a Resource message into the owner it holds: root's id for
// a field that is rootlessNoop, and (proto3) for one that is absent.
func decodeRootless(b []byte) (uid, gid int, err error) {
	ids := [3]uint64{}
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, 0, errBadRootless
		}
		b = b[n:]
		field, wire := key>>3, key&7
		switch wire {
		case 0:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return 0, 0, errBadRootless
			}
			b = b[n:]
			if field == 1 || field == 2 {
				ids[field] = v
			}
		case 1, 5:
			size := map[uint64]int{1: 8, 5: 4}[wire]
			if len(b) < size {
				return 0, 0, errBadRootless
			}
			b = b[size:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return 0, 0, errBadRootless
			}
			b = b[n+int(l):]
		default:
			return 0, 0, errBadRootless
		}
	}
	id := func(v uint64) int {
		if v == rootlessNoop || v > rootlessNoop {
			return 0
		}
		return int(v)
	}
	return id(ids[1]), id(ids[2]), nil
}

var errBadRootless = errors.New("bad " + RootlessXattr + " value")

// renameAsOwner renames the built copy tmp in the work dir open as work to name in
// the directory open as dir (RENAME_NOREPLACE). Unprivileged, the copy of an
// image's 0555 dir (moving a dir needs write permission on it, for its "..") or
// a parent of that mode refuses it with EACCES; the user stands for the image's
// root, whom the modes would not stop, and the kernel has already allowed the
// user's own request (a chmod of a file in such a dir copies the dir and the file
// up). So the directories of ours in the way are made u+wx for the rename and
// given their modes back after.
func renameAsOwner(work int, tmp string, dir int, name string) error {
	rename := func() error { return unix.Renameat2(work, tmp, dir, name, unix.RENAME_NOREPLACE) }
	err := rename()
	if !errors.Is(err, unix.EACCES) || os.Geteuid() == 0 {
		return err
	}
	// The dirs of ours in the way are made u+wx (widen: through this process's
	// map of widenings, so a chmod through the mount meanwhile is kept).
	undoDst := widen(dir, 0o300, 0)
	defer undoDst()
	if fd, err := unix.Openat(work, tmp, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
		defer unix.Close(fd)
		defer widen(fd, 0o300, 0)() // by fd: it holds the inode wherever the rename puts it
	}
	return rename()
}
