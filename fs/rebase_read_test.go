package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// TestReadRacingRebase: reads take no barrier, so a READ could open a file of
// the old upper dir just before a Rebase and adopt it as the node's data fd after
// the Rebase's taintOpen had passed the node; SETATTR, xattrs and writes of the
// file then went to the old upper, which commit --rebase deletes, and were lost
// at the next mount (review rev21-diff, finding 1). Two readers reopen data fds
// all the time (a budget of 8 fds for 64 files) while the files are rewritten
// and rebased; after each Rebase no node may hold an upper fd that is not a file
// of the new upper dir.
func TestReadRacingRebase(t *testing.T) {
	setFdBudget(t, 8)
	lower := tree(t, map[string]string{"low": "l\n"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(i int) string { return filepath.Join(u.mnt, fmt.Sprintf("f%03d", i)) }
	const files = 64
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }()
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 4096)
			for i := r; !stop.Load(); i++ {
				f, err := os.Open(p(i % files))
				if err != nil {
					continue
				}
				unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				f.ReadAt(b, 0)
				f.Close()
			}
		}()
	}
	for round := range 60 {
		for i := range files {
			must(t, os.WriteFile(p(i), []byte("data\n"), 0o644))
		}
		newUpper := commitRebase(t, u, []string{lower})
		for name, ch := range u.m.fs.root.EmbeddedInode().Children() {
			n := ch.Operations().(*node)
			f := n.file.Load()
			if f == nil {
				continue
			}
			n.mu.Lock()
			var st, nst unix.Stat_t
			if f.dfd >= 0 && f.dfdUpper && unix.Fstat(f.dfd, &st) == nil {
				if unix.Lstat(filepath.Join(newUpper, name), &nst) != nil || nst.Ino != st.Ino || nst.Dev != st.Dev {
					t.Errorf("round %d: %s keeps an upper fd of a file outside the new upper dir (nlink %d)", round, name, st.Nlink)
				}
			}
			n.mu.Unlock()
		}
		if t.Failed() {
			return
		}
	}
}

// TestReadPastEndEndsFdUse: a READ at or past the end of the file (one racing a
// truncate, or of a file shorter than the kernel's cached size) got an empty
// result, which go-fuse sends without calling Done: the node's use of its data
// fd was never ended, so the fd budget could not close it, nor a Rebase the old
// upper's fds parked behind it (review rev21-diff, finding 2).
func TestReadPastEndEndsFdUse(t *testing.T) {
	u := mountUnion(t, cow.FormatOCI)
	p := filepath.Join(u.mnt, "f")
	must(t, os.WriteFile(p, make([]byte, 8192), 0o644))
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	n := u.m.fs.root.EmbeddedInode().GetChild("f").Operations().(*node)
	refs := func() int {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.fstIf().fdRefs
	}
	before := refs()
	// Shorter than the kernel thinks (as after a truncate racing the read).
	must(t, os.Truncate(filepath.Join(u.upper, "f"), 10))
	must(t, unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED))
	if _, err := f.ReadAt(make([]byte, 4096), 4096); err == nil {
		t.Log("read past the end returned data")
	}
	if after := refs(); after != before {
		t.Errorf("fdRefs %d after an empty READ, %d before: the use never ended", after, before)
	}
}
