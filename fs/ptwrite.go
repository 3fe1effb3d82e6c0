package fs

import (
	"errors"
	"io"
	"log"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// Passthrough opens that write (Options.Passthrough mode).
//
// The kernel writes through such opens without asking this process, so the two
// things that hold or redirect writes do more for them:
//   - Pause stops the processes that hold them (as every process with a file of
//     the mount open for writing: MountPoint.pause), as docker pause freezes a
//     container;
//   - after a Rebase their writes go to the old upper's file, which commit already
//     took: at the open's release, a file changed since the Rebase is copied into
//     the current stack (landRebased), so no write is lost.
// (In no-open mode no open passes through: see the note at the top of noopen.go.)

// fileStamp is what tells whether a file's data changed: size and mtime (not
// ctime: removing the old upper changes that).
type fileStamp struct {
	size  int64
	mtime unix.Timespec
}

func stampOf(fd int) (fileStamp, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: st.Size, mtime: st.Mtim}, nil
}

// markRebased records, for each passthrough open of n that may write to an upper
// file, how its file looked when the stack it belongs to was retired; n.mu is held.
func (n *node) markRebased() {
	for h := range n.fst().handles {
		if !h.pt || h.acc == unix.O_RDONLY {
			continue
		}
		h.mu.Lock()
		if h.upper && h.rebased == nil {
			if st, err := stampOf(h.fd); err == nil {
				h.rebased, h.rebasedRel = &st, n.rel()
			}
		}
		h.mu.Unlock()
	}
}

// landRebased copies the file of a released passthrough open into the node's
// current stack if it changed after a Rebase retired the stack it belongs to.
func (h *fileHandle) landRebased() error {
	h.mu.Lock()
	was, fd := h.rebased, h.fd
	h.mu.Unlock()
	if was == nil {
		return nil
	}
	now, err := stampOf(fd)
	if err != nil || now == *was {
		return err
	}
	n := h.n
	n.fs.paths.RLock() // it lands by path (pathlock.go)
	defer n.fs.paths.RUnlock()
	n.fs.barrier.RLock()
	defer n.fs.barrier.RUnlock()
	n.fs.landings.Add(1) // lookups meanwhile answer uncached (node.Lookup)
	n.fs.landing.Add(1)
	defer n.fs.landing.Add(-1)
	// The Rebase dropped the kernel's entries: a lookup since may have made a new
	// node for the name (the committed copy has another inode number) and go-fuse
	// then took n out of its tree. Land by the path n had, in the current stack.
	rel := n.rel()
	if at := n.fs.nodesAt(rel); len(at) == 0 || at[len(at)-1] != n {
		h.mu.Lock()
		rel = h.rebasedRel
		h.mu.Unlock()
	}
	if replaced, err := n.fs.replacedSinceCommit(rel); err != nil || replaced {
		if replaced {
			log.Printf("layerfs: release %s: not landing the writes made after a commit: the name holds another file now", rel)
		}
		return nil // the name is gone or holds another file: nothing to land on
	}
	e, s, err := n.fs.copyUpPath(rel, 0)
	if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
		return nil // the name is gone: nothing to land
	}
	if err != nil {
		return err
	}
	dst, err := openAt(s, e, rel, unix.O_WRONLY|unix.O_TRUNC)
	if err != nil {
		return err
	}
	df := os.NewFile(uintptr(dst), "")
	defer df.Close()
	if h.unpriv {
		// Its writes went to the old inode, whose cached mode a chmod through
		// the path since did not reach: the kernel asked for no clearing. As
		// a local filesystem does, the bits go before the data lands (after,
		// a reader could meet the new data in a set-id file).
		var st unix.Stat_t
		if unix.Fstat(dst, &st) == nil {
			if mode, kill := killMode(st.Mode); kill {
				_ = unix.Fchmod(dst, mode&0o7777)
			}
		}
	}
	// A private fd: the handle's offset is the kernel's business, not ours.
	src, err := unix.Open(procFd(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	sf := os.NewFile(uintptr(src), "")
	defer sf.Close()
	if _, err := io.Copy(df, sf); err != nil { // copy_file_range where it can
		return err
	}
	n.mu.Lock()
	n.dropLowerFd()
	n.mu.Unlock()
	// The Rebase dropped the kernel's entries, so a stat right after close(2),
	// racing this RELEASE, may have looked the path up again into new nodes that
	// resolved before this copy-up (the file to the committed layer's copy, its
	// dirs without the upper dir). Make them, and n, resolve and ask again.
	cur := n.fs.nodesAt(rel)
	for _, m := range append(cur, n) {
		m.invalidateEntry()
	}
	go n.NotifyContent(0, 0)
	if len(cur) > 0 && cur[len(cur)-1] != n {
		go cur[len(cur)-1].NotifyContent(0, 0)
	}
	return nil
}

// replacedSinceCommit reports whether the name rel no longer holds the file the
// last commit took (the new top lower layer's, or an upper copy of it): a file
// renamed over it since must not get an old writer's data. An error: the name is
// gone.
func (fsys *unionFS) replacedSinceCommit(rel string) (bool, error) {
	s := fsys.stack.Load()
	if len(s.layers) < 2 || s.layers[1].upper {
		return false, nil
	}
	cur, _, err := fsys.lookupPath(s, rel)
	if err != nil {
		return false, err
	}
	dir, name := path.Split(rel)
	dfd, err := s.openDir(1, dir, unix.O_PATH)
	if err != nil {
		return true, nil // not in the committed layer: another file
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return true, nil
	}
	ino, _ := s.lowerIno(1, st.Dev, st.Ino)
	return cur.ino != ino, nil
}

// nodesAt returns the nodes the kernel now knows along rel, from its first
// component; it stops where the kernel knows none.
func (fsys *unionFS) nodesAt(rel string) []*node {
	var out []*node
	in := fsys.root.EmbeddedInode()
	for _, c := range splitRel(rel) {
		if in = in.GetChild(c); in == nil {
			break
		}
		n, ok := in.Operations().(*node)
		if !ok {
			break
		}
		out = append(out, n)
	}
	return out
}
