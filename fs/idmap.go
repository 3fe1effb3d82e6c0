package fs

import "golang.org/x/sys/unix"

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
