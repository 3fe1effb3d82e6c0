package fs

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// IDRange maps Size ids from Stored (as the layers and the upper dir hold them) to
// Shown (as the mount shows them): fuse-overlayfs's "uidmapping=Stored:Shown:Size".
type IDRange struct{ Stored, Shown, Size uint32 }

// IDMapping shifts owners between the dirs and the mount, as fuse-overlayfs's
// uidmapping=, gidmapping=, squash_to_uid=, squash_to_gid= and squash_to_root do:
// podman and buildah hand a container's user namespace mapping to their
// mount_program instead of chowning the image's layers. Owners are shown mapped
// and new or chowned entries are stored mapped back; an id outside every range
// becomes the overflow id (65534). A nil *IDMapping maps nothing.
type IDMapping struct {
	UIDs, GIDs []IDRange
	// SquashUID and SquashGID, if set, are shown as the owner of every entry.
	SquashUID, SquashGID *uint32
}

// overflowID is what an id outside the mapping becomes, as the kernel's
// overflowuid/overflowgid.
const overflowID = 65534

func mapID(ranges []IDRange, id uint32, toShown bool) uint32 {
	if len(ranges) == 0 {
		return id
	}
	for _, r := range ranges {
		from, to := r.Stored, r.Shown
		if !toShown {
			from, to = to, from
		}
		if id >= from && id-from < r.Size {
			return to + (id - from)
		}
	}
	return overflowID
}

// shown returns st with its owner as the mount shows it (st itself if m maps
// nothing).
func (m *IDMapping) shown(st *unix.Stat_t) *unix.Stat_t {
	if m == nil {
		return st
	}
	c := *st
	c.Uid, c.Gid = mapID(m.UIDs, st.Uid, true), mapID(m.GIDs, st.Gid, true)
	if m.SquashUID != nil {
		c.Uid = *m.SquashUID
	}
	if m.SquashGID != nil {
		c.Gid = *m.SquashGID
	}
	return &c
}

// stored returns the owner to store for a uid and gid the mount shows (chown
// arguments: -1 stays -1).
func (m *IDMapping) stored(uid, gid int) (int, int) {
	if m == nil {
		return uid, gid
	}
	if uid != -1 {
		uid = int(mapID(m.UIDs, uint32(uid), false))
	}
	if gid != -1 {
		gid = int(mapID(m.GIDs, uint32(gid), false))
	}
	return uid, gid
}

// POSIX ACL xattr values (include/uapi/linux/posix_acl_xattr.h): a version, then
// entries of a tag, permissions and an id, little-endian.
const (
	aclHeaderSize = 4
	aclEntrySize  = 8
	aclTagUser    = 0x02 // ACL_USER: a named user
	aclTagGroup   = 0x08 // ACL_GROUP: a named group
)

// mapACL shifts, in place, the ids of the named users and groups in the value b of
// the xattr attr if it is an ACL: to those the mount shows (toShown) or back to
// those stored. The kernel checks access against these ACLs with the ids it sees,
// so they are shifted as the owners are. A value of another shape is left alone
// (the upper filesystem refuses it).
func (m *IDMapping) mapACL(attr string, b []byte, toShown bool) {
	if m == nil || (attr != aclAccessXattr && attr != aclDefaultXattr) ||
		len(b) < aclHeaderSize || (len(b)-aclHeaderSize)%aclEntrySize != 0 {
		return
	}
	for e := b[aclHeaderSize:]; len(e) >= aclEntrySize; e = e[aclEntrySize:] {
		var ranges []IDRange
		switch binary.LittleEndian.Uint16(e) {
		case aclTagUser:
			ranges = m.UIDs
		case aclTagGroup:
			ranges = m.GIDs
		default:
			continue
		}
		binary.LittleEndian.PutUint32(e[4:], mapID(ranges, binary.LittleEndian.Uint32(e[4:]), toShown))
	}
}
