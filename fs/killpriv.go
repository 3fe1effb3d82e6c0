package fs

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Killing suid/sgid here (FUSE_HANDLE_KILLPRIV_V2).
//
// Without it the kernel asks for security.capability before every write(2) (FUSE
// clears SB_NOSEC) and re-reads the attributes before every chown and truncate, to
// clear the set-id bits itself: a GETXATTR per write and a GETATTR per chown, a
// quarter of an untar's requests, and most of what a passthrough write costs over
// kernel overlayfs. With it the kernel asks once per file and flags the requests of
// callers without CAP_FSETID instead; this process, which has CAP_FSETID and so
// clears nothing by writing, clears the bits for them, as a local filesystem does:
// S_ISUID always, S_ISGID when the group may execute. (chown clears them by itself:
// this process chowns the upper file. security.capability goes at every write by
// anyone, as the upper's filesystem removes it when this process or a passthrough
// write changes the file.)
//
// Passthrough writes never reach this process, and FALLOCATE and COPY_FILE_RANGE
// carry no flag, but the kernel asks for them too: before a write (or fallocate,
// or copy_file_range) by a caller without
// CAP_FSETID to a file whose mode it holds with set-id bits, file_remove_privs
// sends a SETATTR that changes nothing (the kill bits stripped, ATTR_FORCE left).
// Such an empty SETATTR from a caller without CAP_FSETID (capget of the calling
// thread, hasFsetid, which tells it from the same SETATTR meant to go with the
// removal of security.capability for a privileged writer) clears the bits; its
// reply carries the new mode, so the kernel asks no more.

// killMode returns mode without the set-id bits a write by an unprivileged caller
// clears, and whether any was set.
func killMode(mode uint32) (uint32, bool) {
	kill := mode & unix.S_ISUID
	if mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		kill |= unix.S_ISGID
	}
	return mode &^ kill, kill != 0
}

// killSuidgid clears the set-id bits of the node h names, if it has any, and tells
// the kernel its cached mode is stale.
func (w *noOpendirFS) killSuidgid(cancel <-chan struct{}, h *fuse.InHeader) {
	var ao fuse.AttrOut
	if !w.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: *h}, &ao).Ok() {
		return
	}
	mode, kill := killMode(ao.Mode)
	if !kill {
		return
	}
	in := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: *h, Valid: fuse.FATTR_MODE, Mode: mode & 0o7777}}
	if w.RawFileSystem.SetAttr(cancel, &in, &ao).Ok() && w.server != nil {
		// Attributes only (offset < 0): takes no lock the pending write holds.
		go w.server.InodeNotify(h.NodeId, -1, 0)
	}
}

func (w *noOpendirFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer w.change()()
	n, st := w.RawFileSystem.Write(cancel, in, data)
	if st.Ok() && in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		w.killSuidgid(cancel, &in.InHeader)
	}
	return n, st
}

func (w *noOpendirFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	defer w.change()()
	n, st := w.RawFileSystem.Writev(cancel, in, data)
	if st.Ok() && in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		w.killSuidgid(cancel, &in.InHeader)
	}
	return n, st
}

func (w *noOpendirFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer w.change()()
	kill := in.Valid&fuse.FATTR_KILL_SUIDGID != 0 && in.Valid&fuse.FATTR_MODE == 0
	// An empty SETATTR is also what chown(f, -1, -1) sends, which anyone who can
	// look the file up may do: it clears the bits only for a caller that may
	// write the file, as a writer the kernel asks for must.
	empty := in.Valid&^(fuse.FATTR_FH|fuse.FATTR_LOCKOWNER) == 0 && !hasFsetid(in.Caller.Pid)
	if kill || empty {
		var ao fuse.AttrOut
		if st := w.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: in.InHeader}, &ao); !st.Ok() {
			return st
		}
		mode, setid := killMode(ao.Mode)
		if setid && ao.Mode&unix.S_IFMT == unix.S_IFREG && (kill || w.mayWrite(cancel, in, &ao.Attr) || holdsWriter(in.Caller.Pid, ao.Ino)) {
			in2 := *in
			in2.Valid |= fuse.FATTR_MODE
			in2.Mode = mode & 0o7777
			return w.RawFileSystem.SetAttr(cancel, &in2, out)
		}
	}
	return w.RawFileSystem.SetAttr(cancel, in, out)
}

// mayWrite reports whether the caller of in may write the file with attributes a,
// as the kernel would check it: by its access ACL if it has one, else by its mode
// bits, counting the caller's supplementary groups.
func (w *noOpendirFS) mayWrite(cancel <-chan struct{}, in *fuse.SetAttrIn, a *fuse.Attr) bool {
	c := &in.Caller
	inGroupOf := func(gid uint32) bool { return c.Gid == gid || inGroup(c.Pid, gid) }
	buf := make([]byte, 1024)
	if n, st := w.RawFileSystem.GetXAttr(cancel, &in.InHeader, aclAccessXattr, buf); st.Ok() && int(n) <= len(buf) {
		if ok, valid := aclMayWrite(buf[:n], c.Uid, a.Uid, a.Gid, inGroupOf); valid {
			return ok
		}
	}
	switch {
	case c.Uid == a.Uid:
		return a.Mode&0o200 != 0
	case inGroupOf(a.Gid):
		return a.Mode&0o020 != 0
	}
	return a.Mode&0o002 != 0
}

// aclMayWrite evaluates the access ACL acl (its xattr value) for a write by uid,
// of a file owned by owner and group, as POSIX.1e does: the owner entry for the
// owner; a named user entry, within the mask; else the group entries the caller is
// in (inGroup), any of them granting within the mask; else the other entry. valid
// is false for a value that is not an ACL.
func aclMayWrite(acl []byte, uid, owner, group uint32, inGroup func(gid uint32) bool) (ok, valid bool) {
	const write = 2
	if len(acl) < aclHeaderSize || (len(acl)-aclHeaderSize)%aclEntrySize != 0 || binary.LittleEndian.Uint32(acl) != 2 {
		return false, false
	}
	type ent struct {
		tag, perm uint16
		id        uint32
	}
	var ents []ent
	mask := uint16(7)
	for e := acl[aclHeaderSize:]; len(e) >= aclEntrySize; e = e[aclEntrySize:] {
		x := ent{binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])}
		if x.tag == 0x10 { // ACL_MASK
			mask = x.perm
		}
		ents = append(ents, x)
	}
	find := func(match func(ent) bool) (ent, bool) {
		for _, x := range ents {
			if match(x) {
				return x, true
			}
		}
		return ent{}, false
	}
	if uid == owner {
		x, _ := find(func(x ent) bool { return x.tag == 0x01 }) // ACL_USER_OBJ
		return x.perm&write != 0, true
	}
	if x, ok := find(func(x ent) bool { return x.tag == aclTagUser && x.id == uid }); ok {
		return x.perm&mask&write != 0, true
	}
	matched := false
	for _, x := range ents {
		if (x.tag == 0x04 && inGroup(group)) || (x.tag == aclTagGroup && inGroup(x.id)) { // ACL_GROUP_OBJ, ACL_GROUP
			matched = true
			if x.perm&mask&write != 0 {
				return true, true
			}
		}
	}
	if matched {
		return false, true
	}
	x, _ := find(func(x ent) bool { return x.tag == 0x20 }) // ACL_OTHER
	return x.perm&write != 0, true
}

// holdsWriter reports whether the process of thread tid has a file with inode
// number ino open for writing: a writer that opened the file while its mode let
// it, before a chmod took that away, still writes (the kernel checked at open). A
// caller this process cannot see (tid 0) counts as one: clearing is the safe side.
// Read from /proc, never by a stat through the mount (this process serves it).
func holdsWriter(tid uint32, ino uint64) bool {
	if tid == 0 {
		return true
	}
	dir := fmt.Sprintf("/proc/%d/fdinfo", tid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := "ino:\t" + strconv.FormatUint(ino, 10) + "\n"
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil || !strings.Contains(string(b), want) {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "flags:\t"); ok {
				if fl, err := strconv.ParseUint(strings.TrimSpace(f), 8, 64); err == nil && fl&unix.O_ACCMODE != unix.O_RDONLY {
					return true
				}
			}
		}
	}
	return false
}

// inGroup reports whether thread tid has gid among its supplementary groups.
func inGroup(tid uint32, gid uint32) bool {
	if tid == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(g) {
				if f == strconv.FormatUint(uint64(gid), 10) {
					return true
				}
			}
		}
	}
	return false
}

func (w *noOpendirFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.Flags&(unix.O_ACCMODE|unix.O_TRUNC) != unix.O_RDONLY {
		defer w.change()() // it may copy up (pathlock.go); a read-only open is a read
	}
	st := w.retryMoved(func() fuse.Status { return w.RawFileSystem.Open(cancel, in, out) })
	if st.Ok() && in.Mode&fuse.OPEN_KILL_SUIDGID != 0 {
		w.killSuidgid(cancel, &in.InHeader)
	}
	return st
}

// hasFsetid reports whether thread tid has CAP_FSETID in this process's user
// namespace, which is what the kernel asks (capable(CAP_FSETID)) before it leaves
// set-id bits on a write. A caller this process cannot see (tid 0: another pid
// namespace) or one in a child user namespace, whose capabilities count only
// there, has not.
func hasFsetid(tid uint32) bool {
	if tid == 0 {
		return false
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3, Pid: int32(tid)}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil || data[0].Effective&(1<<unix.CAP_FSETID) == 0 {
		return false
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", tid))
	return err == nil && ns == ownUserNS()
}

var ownUserNS = sync.OnceValue(func() string {
	ns, _ := os.Readlink("/proc/self/ns/user")
	return ns
})
