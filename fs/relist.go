package fs

import (
	"sync"
	"time"
)

// Stale atimes and cached listings.
//
// Every READ makes the kernel mark the file's cached atime stale (on any mount not
// read-only, whatever noatime says), so the next stat(2) of the file costs a
// GETATTR although nothing changed. A program that reads and then stats (tar) pays
// that right away; one that stats and then reads (grep -r) leaves every file stale,
// and its second pass over a tree sends one GETATTR per file. A READDIRPLUS,
// though, refreshes the attributes of every child it lists, atime included, and
// keeps their page cache (same size and mtime): one or two requests per directory
// instead of one per file.
//
// So the relister counts, per directory, the children whose data was read since it
// was listed and that no GETATTR refreshed since, and once the reads in a directory
// stop for a moment (a stat right after a read comes within microseconds) drops the
// kernel's cached listing of each directory still counting any, once per listing. The next walk
// then lists it again. Only performance hangs on this: a listing dropped too often
// costs a READDIRPLUS, one dropped too late a GETATTR per file, as without it.
type relister struct {
	mu    sync.Mutex
	dirs  map[*node]struct{} // directories that counted a stale child
	armed bool               // a sweep is due
	drops int                // listings dropped, for tests
	delay time.Duration      // relistDelay when mounted
}

// relistDelay is how long a directory's stale count must stand, without a new
// read in it, before its listing is dropped. A variable for tests.
var relistDelay = 20 * time.Millisecond

// dataRead notes that the kernel read n's data from this process.
func (r *relister) dataRead(n *node) {
	_, p := n.Parent()
	if p == nil {
		return
	}
	pn, ok := p.Operations().(*node)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n.staleIn == pn && n.staleGen == pn.listGen {
		return // counted already
	}
	n.staleIn, n.staleGen = pn, pn.listGen
	pn.staleKids++
	pn.staleAt = time.Now()
	if pn.staleKids > 1 {
		return
	}
	if r.dirs == nil {
		r.dirs = make(map[*node]struct{})
	}
	r.dirs[pn] = struct{}{}
	r.arm()
}

// arm schedules a sweep if none is due; r.mu is held.
func (r *relister) arm() {
	if !r.armed {
		r.armed = true
		time.AfterFunc(r.delay, r.sweep)
	}
}

// attrFresh notes that the kernel is about to get n's current attributes.
func (r *relister) attrFresh(n *node) {
	r.mu.Lock()
	if pn := n.staleIn; pn != nil {
		if n.staleGen == pn.listGen && pn.staleKids > 0 {
			pn.staleKids--
		}
		n.staleIn = nil
	}
	r.mu.Unlock()
}

// listed notes that directory n is being listed: every child's attributes are
// refreshed.
func (r *relister) listed(n *node) {
	r.mu.Lock()
	n.listGen++
	n.staleKids = 0
	r.mu.Unlock()
}

// sweep drops the cached listing of every directory that still counts a stale
// child and saw no read for relistDelay; those that did wait for the next sweep.
// A dropped directory stays counted (and is not dropped again) until it is listed
// or its count falls to zero.
func (r *relister) sweep() {
	r.mu.Lock()
	var drop []*node
	now := time.Now()
	for d := range r.dirs {
		switch {
		case d.staleKids == 0:
			delete(r.dirs, d)
		case now.Sub(d.staleAt) >= r.delay:
			drop = append(drop, d)
			delete(r.dirs, d)
		}
	}
	r.armed = false
	if len(r.dirs) > 0 {
		r.arm()
	}
	r.drops += len(drop)
	r.mu.Unlock()
	for _, d := range drop {
		d.NotifyContent(0, 0)
	}
}

func (r *relister) dropCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drops
}
