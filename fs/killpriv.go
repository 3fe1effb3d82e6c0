package fs

import (
	"context"
	"fmt"
	"os"
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
// write changes the file.) FALLOCATE and COPY_FILE_RANGE carry no flag: the caller
// is asked (callerHasFsetid).
//
// Passthrough writes never reach this process, so a passthrough open that may
// write, made by a caller without CAP_FSETID (fileHandle.unpriv), is handled at its
// ends instead:
//   - at open, a file with set-id bits loses them (a local filesystem clears them
//     at the first write; an open that never writes clears them here too);
//   - set-id bits added while it lives (chmod u+s by the owner while a group
//     member has the file open for writing) are cleared when it is closed (FLUSH,
//     which only such opens ask for: all others carry FOPEN_NOFLUSH) or the mount
//     paused for a commit, if the file's data changed since they were added. Until
//     then the writer holds the file open for writing, so nobody can execute it
//     (ETXTBSY).

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
	n, st := w.RawFileSystem.Write(cancel, in, data)
	if st.Ok() && in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		w.killSuidgid(cancel, &in.InHeader)
	}
	return n, st
}

func (w *noOpendirFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	n, st := w.RawFileSystem.Writev(cancel, in, data)
	if st.Ok() && in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		w.killSuidgid(cancel, &in.InHeader)
	}
	return n, st
}

func (w *noOpendirFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_KILL_SUIDGID != 0 && in.Valid&fuse.FATTR_MODE == 0 {
		var ao fuse.AttrOut
		if st := w.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: in.InHeader}, &ao); !st.Ok() {
			return st
		}
		if mode, kill := killMode(ao.Mode); kill && ao.Mode&unix.S_IFMT == unix.S_IFREG {
			in2 := *in
			in2.Valid |= fuse.FATTR_MODE
			in2.Mode = mode & 0o7777
			return w.RawFileSystem.SetAttr(cancel, &in2, out)
		}
	}
	return w.RawFileSystem.SetAttr(cancel, in, out)
}

func (w *noOpendirFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := w.retryMoved(func() fuse.Status { return w.RawFileSystem.Open(cancel, in, out) })
	if st.Ok() && in.Mode&fuse.OPEN_KILL_SUIDGID != 0 {
		w.killSuidgid(cancel, &in.InHeader)
	}
	return st
}

func (w *noOpendirFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	st := w.RawFileSystem.Fallocate(cancel, in)
	if st.Ok() && !hasFsetid(in.Caller.Pid) {
		w.killSuidgid(cancel, &in.InHeader)
	}
	return st
}

func (w *noOpendirFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	n, st := w.RawFileSystem.CopyFileRange(cancel, in)
	if st.Ok() && n > 0 && !hasFsetid(in.Caller.Pid) {
		h := in.InHeader
		h.NodeId = in.NodeIdOut
		w.killSuidgid(cancel, &h)
	}
	return n, st
}

// callerHasFsetid reports whether the thread that sent ctx's request may keep
// set-id bits when it writes (hasFsetid).
func callerHasFsetid(ctx context.Context) bool {
	c, ok := fuse.FromContext(ctx)
	return ok && hasFsetid(c.Pid)
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

// killSetidAtOpen clears the set-id bits of the file h just opened, when h is a
// passthrough open that may write, by a caller without CAP_FSETID; h.n.mu is held.
func (h *fileHandle) killSetidAtOpen() {
	var st unix.Stat_t
	if unix.Fstat(h.fd, &st) != nil {
		return
	}
	if mode, kill := killMode(st.Mode); kill && st.Mode&unix.S_IFMT == unix.S_IFREG {
		if unix.Fchmod(h.fd, mode&0o7777) == nil {
			h.n.NotifyContent(-1, 0) // attributes only
		}
	}
}

// setidAdded records, for each passthrough open of n that may write and was made
// by a caller without CAP_FSETID, how the file looks now that set-id bits were set
// on it (see killSetidWritten).
func (n *node) setidAdded() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for h := range n.handles {
		if !h.unpriv {
			continue
		}
		h.mu.Lock()
		if st, err := stampOf(h.fd); err == nil {
			h.setid = &st
		}
		h.mu.Unlock()
	}
}

// killSetidWritten clears the file's set-id bits if set-id bits were added while h
// lived (setidAdded) and its data changed since: what a local filesystem does at
// such a writer's next write.
func (h *fileHandle) killSetidWritten() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.setid == nil {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(h.fd, &st) != nil {
		return
	}
	if (fileStamp{size: st.Size, mtime: st.Mtim}) == *h.setid {
		return
	}
	h.setid = nil
	if mode, kill := killMode(st.Mode); kill {
		if unix.Fchmod(h.fd, mode&0o7777) == nil {
			h.n.NotifyContent(-1, 0)
		}
	}
}

// killSetidWritten runs killSetidWritten for every open of n.
func (n *node) killSetidWritten() {
	n.mu.Lock()
	hs := make([]*fileHandle, 0, len(n.handles))
	for h := range n.handles {
		if h.unpriv {
			hs = append(hs, h)
		}
	}
	n.mu.Unlock()
	for _, h := range hs {
		h.killSetidWritten()
	}
}
