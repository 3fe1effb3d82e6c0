package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// TestMountRefusesTooManyLayers: a stack deeper than MaxLayers is refused by
// Mount with an error naming the open-file limit, and one of exactly MaxLayers
// lists a dir that every layer has without EMFILE. Before, an image of 10,000
// layers under a limit of 20,000 files mounted, then failed every listing with
// EMFILE (review rev21-hostile, finding 2).
func TestMountRefusesTooManyLayers(t *testing.T) {
	setFileLimit(t, 1200)
	limit := MaxLayers()
	if limit < 100 || limit > 600 {
		t.Fatalf("MaxLayers() = %d under a limit of 1,200 files", limit)
	}
	base := t.TempDir()
	var lowers []string
	for i := range limit + 1 {
		l := filepath.Join(base, fmt.Sprint(i))
		must(t, os.MkdirAll(filepath.Join(l, "d"), 0o755))
		must(t, os.WriteFile(filepath.Join(l, "d", fmt.Sprint("f", i)), nil, 0o644))
		lowers = append(lowers, l)
	}
	d := t.TempDir()
	_, err := Mount(filepath.Join(d, "m"), Options{Lowers: lowers, Upper: filepath.Join(d, "u"), Work: filepath.Join(d, "w"), Format: cow.FormatOCI})
	if err == nil || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("Mount of %d layers (MaxLayers %d): %v, want a refusal naming the limit", limit+1, limit, err)
	}
	u := mountUnion(t, cow.FormatOCI, lowers[:limit]...)
	ents, err := os.ReadDir(filepath.Join(u.mnt, "d"))
	if err != nil || len(ents) != limit {
		t.Errorf("listing a dir of all %d layers: %d entries, %v", limit, len(ents), err)
	}
	// A low limit still takes a usual image: under 512 files, the 127 layers
	// commit allows were refused as one (review rev21-diff2, finding 3).
	setFileLimit(t, 512)
	if n := MaxLayers(); n < 64 {
		t.Errorf("MaxLayers() = %d under a limit of 512 files", n)
	}
}

// TestConcurrentListingsOfDeepImage: listings each hold a dir fd per layer, so
// concurrent listings of an image as deep as MaxLayers allows went past the
// open-file limit (review rev21-diff2, finding 4: 40 at once under 1,200 files);
// dirFdSlots makes them take turns.
func TestConcurrentListingsOfDeepImage(t *testing.T) {
	resetSlots := func() {
		dirFdSlots.once = sync.Once{}
		dirFdSlots.sem, dirFdSlots.max = nil, 0
	}
	t.Cleanup(resetSlots) // (after the limit is put back: cleanups run last first)
	setFileLimit(t, 1200)
	resetSlots() // sized from the limit at first use
	const dirs = 24
	limit := MaxLayers()
	base := t.TempDir()
	var lowers []string
	for i := range limit {
		l := filepath.Join(base, fmt.Sprint(i))
		for j := range dirs {
			must(t, os.MkdirAll(filepath.Join(l, fmt.Sprint("d", j)), 0o755))
			must(t, os.WriteFile(filepath.Join(l, fmt.Sprint("d", j), fmt.Sprint("f", i)), nil, 0o644))
		}
		lowers = append(lowers, l)
	}
	u := mountUnion(t, cow.FormatOCI, lowers...)
	var wg sync.WaitGroup
	for j := range dirs {
		wg.Go(func() {
			ents, err := os.ReadDir(filepath.Join(u.mnt, fmt.Sprint("d", j)))
			if err != nil || len(ents) != limit {
				t.Errorf("listing d%d with %d others: %d entries, %v", j, dirs-1, len(ents), err)
			}
		})
	}
	wg.Wait()
}

// setFileLimit lowers the process's open-file limit to n until the test ends.
func setFileLimit(t *testing.T, n uint64) {
	var rl unix.Rlimit
	must(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &rl))
	low := rl
	low.Cur = n
	must(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &low))
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &rl) })
}

// TestRebaseKeepsFewFds: a Rebase keeps the old stack open until the unmount (an
// operation may still use it), and it kept a dir fd for each of its layers:
// under a limit of 512 files a container's listings failed with EMFILE after 28
// commit --rebase (review rev21-diff3, finding 2). The new stack takes over the
// old one's fds of the layers both have, so a Rebase keeps about one fd more.
func TestRebaseKeepsFewFds(t *testing.T) {
	var lowers []string
	for i := range 20 {
		lowers = append(lowers, tree(t, map[string]string{fmt.Sprint("f", i): "x"}))
	}
	u := mountUnion(t, cow.FormatOCI, lowers...)
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		must(t, err)
		return len(ents)
	}
	must(t, os.WriteFile(filepath.Join(u.mnt, "w"), []byte("0"), 0o644))
	commitRebase(t, u, lowers) // the inode maps and the like, opened once
	before := count()
	const rebases = 10
	for i := range rebases {
		must(t, os.WriteFile(filepath.Join(u.mnt, "w"), []byte(fmt.Sprint(i)), 0o644))
		commitRebase(t, u, lowers)
	}
	if grew := count() - before; grew > 3*rebases {
		t.Errorf("%d rebases of a mount of %d layers kept %d fds more", rebases, len(lowers), grew)
	}
	if _, err := os.ReadDir(u.mnt); err != nil {
		t.Errorf("listing after the rebases: %v", err)
	}
	if got := readFile(t, filepath.Join(u.mnt, "f7")); got != "x" {
		t.Errorf("f7 after the rebases: %q", got)
	}
}
