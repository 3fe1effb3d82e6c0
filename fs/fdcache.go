package fs

import (
	"container/list"
	"fmt"
	"sync"
	"sync/atomic"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// In no-open mode a node keeps its file open as its data fd (noopen.go), and the
// kernel keeps its inodes, so without a bound every file read through a mount
// held an fd until the kernel forgot its inode: a grep -r of a tree of more files
// than RLIMIT_NOFILE allows failed with EMFILE, and then so did every request.
// dataFds bounds them, for every mount of the process: past its budget, the
// least recently used data fds that no request is using are closed. A node whose
// fd is closed opens its file again by name on its next use. Fds that are all a
// file has left are kept (node.keepFd): a file whose name is going or gone
// (unlinked or renamed over while open), an O_TMPFILE file, an unnamed copy.
var dataFds = &fdCache{}

// fdCache is a least-recently-used list of nodes with a data fd.
type fdCache struct {
	mu  sync.Mutex
	lru list.List // *node, most recently used at the front
	max int       // 0: set from RLIMIT_NOFILE on first use

	// over is set when a victim in use was put back, leaving the list past
	// its budget: the end of a use trims it (putFd), so that a mount left
	// idle does not keep one fd more than its budget until the next read.
	over atomic.Bool
}

// fdBudget is the share of the open-file limit data fds may take: a quarter, at
// least 256 but never more than half.
func fdBudget() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 256
	}
	return int(min(max(rl.Cur/4, min(256, rl.Cur/2)), 1<<16))
}

// MaxLayers is the most image layers (lowers) a mount of this process can stack
// under its open-file limit: a layer and the upper dir keep a dir fd open, a
// directory's listing and lookups open it in every layer at once, and the data
// fds take their budget besides, and 64 are left for the rest. An image deeper
// than that mounted, then failed every listing with EMFILE (review
// rev21-hostile: 10,000 layers under a limit of 20,000 files); Mount now refuses
// it, naming the limit. 7,467 layers under 20,000 files, 351 under 1,024, 95
// under 512.
func MaxLayers() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 127
	}
	return max(int((int64(min(rl.Cur, 1<<30))-int64(fdBudget())-64)/2)-1, 1)
}

// touch marks n's data fd as just used, and closes the least recently used ones
// past the budget.
func (c *fdCache) touch(n *node) {
	c.mu.Lock()
	if c.max == 0 {
		c.max = fdBudget()
	}
	if n.fst().fdcElem != nil {
		c.lru.MoveToFront(n.fst().fdcElem)
	} else {
		n.fst().fdcElem = c.lru.PushFront(n)
	}
	c.evict()
}

// trim closes the least recently used data fds past the budget, after a use
// ended while the list was over it.
func (c *fdCache) trim() {
	if !c.over.CompareAndSwap(true, false) {
		return
	}
	c.mu.Lock()
	c.evict()
}

// evict takes the least recently used nodes past the budget off the list and
// closes their data fds; c.mu is held, and unlocked on return.
func (c *fdCache) evict() {
	var victims []*node
	for c.lru.Len() > c.max {
		e := c.lru.Back()
		v := e.Value.(*node)
		c.lru.Remove(e)
		v.fst().fdcElem = nil
		victims = append(victims, v)
	}
	c.mu.Unlock()
	var kept []*node
	for _, v := range victims {
		switch v.closeDataFd() {
		case fdBusy:
			c.readd(v) // in use right now: closed on a later round
			c.over.Store(true)
			if !v.fdInUse() {
				c.trim() // the use ended before over was set: its putFd saw nothing to do
			}
		case fdPinned:
			if _, p := v.Parent(); p != nil { // else kept until forgotten
				kept = append(kept, v)
			}
		}
	}
	if len(kept) > 0 {
		// Not from the request: it may hold what a resolve waits for.
		go c.releaseNamed(kept)
	}
}

// releaseNamed closes the fds kept for nodes whose removed name was not their
// last (hard links): once such a node's other name is in go-fuse's tree, its
// file is reached by that name as any file's, so the fd is not all it has left.
// Kept until the kernel forgot them, `ln f g; rm g` cost an fd each until the
// server ran out (EMFILE on every request, then a go-fuse panic: a soak review).
// A node still without a name leaves the list and keeps its fds until the kernel
// forgets it, as before; one whose name does not resolve right now (a rename
// settling) is tried again on a later round, a few times.
func (c *fdCache) releaseNamed(nodes []*node) {
	for _, n := range nodes {
		if n.releaseIfNamed() {
			c.readd(n)
		}
	}
}

// releaseIfNamed closes n's kept fds if it has a name again that resolves to it;
// retry reports a name that did not resolve, worth another try later.
func (n *node) releaseIfNamed() (retry bool) {
	n.mu.Lock()
	f := n.fstIf()
	ok := f.namedPin && (f.dfd >= 0 || f.pin >= 0 || len(f.oldFds) > 0) // a Rebase parks dfd in oldFds
	n.mu.Unlock()
	if !ok {
		return false
	}
	if _, p := n.Parent(); p == nil {
		return false
	}
	// Removals hold dirMu shared from their pin to their unlink: none is half
	// done while this holds it, so a name that resolves now stays until it is
	// unlocked, and a removal that comes later pins again.
	n.fs.dirMu.Lock()
	defer n.fs.dirMu.Unlock()
	e, _, err := n.resolve()
	n.mu.Lock()
	defer n.mu.Unlock()
	f = n.fstIf()
	if !f.namedPin || f.fdRefs > 0 {
		return f.namedPin
	}
	if err != nil || e.ino != n.StableAttr().Ino || e.gen != n.StableAttr().Gen {
		f.relTries++
		return f.relTries < 3
	}
	f.keepFd, f.namedPin = false, false
	if f.dfd >= 0 {
		unix.Close(f.dfd)
		f.dfd, f.dfdUpper = -1, false
	}
	n.closeOldFds()
	if f.pin >= 0 {
		unix.Close(f.pin)
		f.pin, f.pinUpper = -1, false
	}
	return false
}

// readd puts n back at the front of the list, closing nothing.
func (c *fdCache) readd(n *node) {
	c.mu.Lock()
	if n.fst().fdcElem == nil {
		n.fst().fdcElem = c.lru.PushFront(n)
	}
	c.mu.Unlock()
}

// dropFS closes the data fds of every node of fsys, an unmounted filesystem:
// those in its tree, and those in the list (a removed file's node has left the
// tree). The kernel sends no FORGET at an unmount, so without this a process that
// mounts again and again (a build's steps) kept every data fd of every mount.
func (c *fdCache) dropFS(fsys *unionFS) {
	var walk func(in *fusefs.Inode)
	walk = func(in *fusefs.Inode) {
		n := in.Operations().(*node)
		n.forgetFds()
		c.remove(n)
		for _, ch := range in.Children() {
			walk(ch)
		}
	}
	walk(fsys.root.EmbeddedInode())
	c.mu.Lock()
	var left []*node
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if n := e.Value.(*node); n.fs == fsys {
			c.lru.Remove(e)
			n.fst().fdcElem = nil
			left = append(left, n)
		}
		e = next
	}
	c.mu.Unlock()
	for _, n := range left {
		n.forgetFds()
	}
}

// remove drops n from the list.
func (c *fdCache) remove(n *node) {
	f := n.file.Load()
	if f == nil {
		return // never had a data fd
	}
	c.mu.Lock()
	if f.fdcElem != nil {
		c.lru.Remove(f.fdcElem)
		f.fdcElem = nil
	}
	c.mu.Unlock()
}

// What became of a node's fds in closeDataFd.
type fdFate int

const (
	fdDone   fdFate = iota // closed, or kept until the kernel forgets the node
	fdBusy                 // a request uses them
	fdPinned               // taken for a removal: see releaseNamed
)

// closeDataFd closes n's data fd, and the fds it replaced, unless a request is
// using them or the node must keep them.
func (n *node) closeDataFd() fdFate {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fst().keepFd || n.fst().pin >= 0 {
		if n.fst().namedPin {
			return fdPinned
		}
		return fdDone
	}
	if n.fst().fdRefs > 0 {
		return fdBusy
	}
	if n.fst().dfd >= 0 {
		unix.Close(n.fst().dfd)
		n.fst().dfd, n.fst().dfdUpper = -1, false
	}
	n.closeOldFds() // a Rebase parks the data fd there
	return fdDone
}

// closeOldFds closes the fds the data fd replaced once no request uses them;
// n.mu is held.
func (n *node) closeOldFds() {
	if n.fst().fdRefs > 0 || n.fst().keepFd {
		return
	}
	for _, fd := range n.fst().oldFds {
		unix.Close(fd)
	}
	n.fst().oldFds = nil
}

// fdInUse reports whether a request uses n's data fd right now.
func (n *node) fdInUse() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fst().fdRefs > 0
}

// putFd ends a use of the data fd that dataFd began.
func (n *node) putFd() {
	n.mu.Lock()
	n.fst().fdRefs--
	if len(n.fst().oldFds) > 0 {
		n.closeOldFds()
	}
	n.mu.Unlock()
	dataFds.trim()
}

// keepDataFd makes n keep its data fds until the kernel forgets it, for a use as
// the file's last fd; n.mu is held.
func (n *node) keepDataFd() {
	n.fst().keepFd = true
	n.fst().namedPin = false
}

// fdRead is a read spliced or copied from a node's data fd after Read returned:
// the use of the fd ends when go-fuse is done with it.
type fdRead struct {
	fuse.ReadResult
	n    *node
	once sync.Once
}

// seekable is go-fuse's interface of results it can splice from an fd.
type seekable interface {
	Seekable() (fd uintptr, off int64, sz int)
}

func (r *fdRead) Seekable() (uintptr, int64, int) {
	return r.ReadResult.(seekable).Seekable()
}

func (r *fdRead) Done() {
	r.ReadResult.Done()
	r.once.Do(r.n.putFd)
}

// TooManyLayers is the error for an image of n layers, past most (MaxLayers, or
// less where the mount stacks layers of its own).
func TooManyLayers(n, most int) error {
	var rl unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	return fmt.Errorf("%d layers: more than %d, the most a mount can stack under this process's limit of %d open files (ulimit -n)", n, most, rl.Cur)
}
