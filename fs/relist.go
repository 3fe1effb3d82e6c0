package fs

import (
	"sync"
	"sync/atomic"
	"time"
	"weak"
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
// have paused for relistDelay (a stat right after a read comes within microseconds)
// drops the kernel's cached listing of each directory still counting relistMin or
// more, once per listing. The next walk then lists it again. Only performance hangs
// on this: a listing dropped too often costs a READDIRPLUS, one dropped too late a
// GETATTR per file, as without it.
//
// The dropped directories are then listed again by this process itself, while
// nobody waits on them (refresh.go).
//
// Sweeps run on the requests themselves (READ, GETATTR, LOOKUP, READDIR), not on a
// timer: a Go timer kept armed through a cold grep -r made the server's threads
// hand off and wake so much more that the pass took 1.2x as long. The directories
// whose reads end a burst are dropped by the next request, typically the first stat
// of the next walk.
type relister struct {
	mu      sync.Mutex
	dirs    map[*node]struct{} // directories that counted a stale child
	pending atomic.Int32       // len(dirs), read without mu
	next    time.Time          // no sweep before
	delay   time.Duration      // relistDelay when mounted
	drops   int                // listings dropped, for tests
	refill  func([]*node)      // lists dropped directories again (refresh.go); nil: no

	// Directories a reader listed to their end, whose atimes the kernel holds
	// stale, in the order listed (see listedEnd); weak, so that a directory the
	// kernel forgot is not kept with its listing.
	ends      []weak.Pointer[node]
	lastStale time.Time             // the last GETATTR of a directory in ends
	restat    func([]*node)         // stats directories through the mount (refresh.go); nil: no
	own       func(pid uint32) bool // whether a request came from the refresher's thread
	idle      func() bool           // whether the refresher has nothing under way (tests)
}

// Stale directory atimes. Each listing the kernel reads from this process rather
// than from its cache makes it mark the directory's own atime stale too (again on
// any mount not read-only), so the next stat of the directory costs a GETATTR:
// the second walk of the bench's tree sent one for 604 of its 626 directories,
// which took as long as the rest of that walk (a third walk sent none and was
// 1.4x faster; kernel overlayfs sends nothing to anyone).
//
// Stating each directory right after its listing, from the refresher, took those
// GETATTRs off the second walk's path but made the first walk 1.2x slower on two
// CPUs, a first walk being all most trees get. So the refresher waits for a sign
// of a second walk: two GETATTRs of listed directories within restatBurst (a
// walker stats a directory before it lists it, and a second walker finds every
// one stale). It then stats every listed directory still stale, in the order
// they were listed, which is the order the walker comes by them, on an idle CPU
// and ahead of the walker. A first walk sends a few such GETATTRs too (GNU find
// and tar stat a directory again after reading it), but far apart.
var restatBurst = 2 * time.Millisecond // a variable for tests

// maxEnds bounds the directories remembered as listed; older ones are forgotten.
const maxEnds = 1 << 16

// listedEnd notes that the kernel got the end of directory n's listing from a
// request of process (thread) pid.
func (r *relister) listedEnd(n *node, pid uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.restat == nil || n.atimeStale || (r.own != nil && r.own(pid)) {
		return // (the refresher stats what it lists itself)
	}
	if len(r.ends) == maxEnds {
		for _, w := range r.ends[:maxEnds/2] {
			if d := w.Value(); d != nil {
				d.atimeStale = false
			}
		}
		r.ends = append(r.ends[:0], r.ends[maxEnds/2:]...)
	}
	n.atimeStale = true
	r.ends = append(r.ends, weak.Make(n))
}

// gotAttr notes a GETATTR of n; the second of a listed directory within
// restatBurst hands every listed directory still stale to the refresher. r.mu is
// held.
func (r *relister) gotAttr(n *node) {
	if !n.atimeStale {
		return
	}
	n.atimeStale = false
	now := time.Now()
	burst := now.Sub(r.lastStale) < restatBurst
	r.lastStale = now
	if !burst || r.restat == nil {
		return
	}
	var dirs []*node
	for _, w := range r.ends {
		if d := w.Value(); d != nil && d.atimeStale {
			d.atimeStale = false
			dirs = append(dirs, d)
		}
	}
	r.ends = r.ends[:0]
	if len(dirs) > 0 {
		r.restat(dirs)
	}
}

// relistDelay is how long a directory's stale count must stand, without a new
// read in it, before its listing is dropped. A variable for tests.
var relistDelay = 20 * time.Millisecond

// relistMin is the fewest stale children worth a relisting. Relisting costs two
// READDIRPLUS (the listing, then its empty end) and, since an uncached listing makes
// the kernel drop the directory's own atime, a GETATTR of the directory: three
// requests, each heavier than the GETATTR per stale child it saves.
const relistMin = 4

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
	r.sweep()
	f := n.fst()
	if f.staleIn == pn && f.staleGen == pn.dst().listGen {
		return // counted already
	}
	r.uncount(n) // in another directory it was renamed from
	f.staleIn, f.staleGen = pn, pn.dst().listGen
	pn.dst().staleKids++
	pn.dst().staleAt = time.Now()
	if pn.dst().staleKids < relistMin || pn.dst().dropped {
		return
	}
	if r.dirs == nil {
		r.dirs = make(map[*node]struct{})
	}
	if _, ok := r.dirs[pn]; !ok {
		r.dirs[pn] = struct{}{}
		r.pending.Store(int32(len(r.dirs)))
	}
}

// poke gives a request that is not otherwise counted the chance to sweep.
func (r *relister) poke() {
	if r.pending.Load() == 0 {
		return
	}
	r.mu.Lock()
	r.sweep()
	r.mu.Unlock()
}

// attrFresh notes that the kernel is about to get n's current attributes.
func (r *relister) attrFresh(n *node) {
	r.mu.Lock()
	r.gotAttr(n)
	r.uncount(n)
	r.sweep() // after: a stat however long after its read leaves nothing stale
	r.mu.Unlock()
}

// uncount takes n out of the stale count of the directory it was counted in, if
// that listing still stands. r.mu is held.
func (r *relister) uncount(n *node) {
	f := n.file.Load()
	if f == nil {
		return // never read
	}
	if pn := f.staleIn; pn != nil {
		if f.staleGen == pn.dst().listGen && pn.dst().staleKids > 0 {
			pn.dst().staleKids--
		}
		f.staleIn = nil
	}
}

// listed notes that directory n is being listed: every child's attributes are
// refreshed.
func (r *relister) listed(n *node) {
	r.mu.Lock()
	if _, ok := r.dirs[n]; ok {
		// Not to be dropped by the sweep below, in the middle of its listing.
		delete(r.dirs, n)
		r.pending.Store(int32(len(r.dirs)))
	}
	r.sweep()
	n.dst().listGen++
	n.dst().staleKids = 0
	n.dst().dropped = false
	r.mu.Unlock()
}

// sweep drops the cached listing of every directory that still counts relistMin
// stale children and saw no read for relistDelay; those that did wait for a later
// sweep, those whose count fell below relistMin leave the set until it reaches it
// again. A dropped directory is not dropped again until it is listed. r.mu is held;
// at most one sweep per relistDelay.
func (r *relister) sweep() {
	if len(r.dirs) == 0 {
		return
	}
	now := time.Now()
	if now.Before(r.next) {
		return
	}
	r.next = now.Add(r.delay)
	var drop []*node
	for d := range r.dirs {
		switch {
		case d.dst().staleKids < relistMin:
			delete(r.dirs, d)
		case now.Sub(d.dst().staleAt) >= r.delay:
			drop = append(drop, d)
			d.dst().dropped = true
			delete(r.dirs, d)
		}
	}
	r.pending.Store(int32(len(r.dirs)))
	r.drops += len(drop)
	if len(drop) > 0 {
		// Not from the request: invalidating takes the directory's page locks,
		// which a request in flight may hold.
		refill := r.refill
		go func() {
			for _, d := range drop {
				d.NotifyContent(0, 0)
			}
			if refill != nil {
				refill(drop)
			}
		}()
	}
}

func (r *relister) dropCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drops
}
