package fs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestRelistRefreshesAtime: a walk that stats each file and then reads it (grep -r)
// leaves every file's cached atime stale in the kernel; the next walk must not pay a
// GETATTR per file, its listing refreshes them. A walk that reads and then stats (tar)
// refreshes them itself and must keep its cached listings.
func TestRelistRefreshesAtime(t *testing.T) {
	const files = 40
	spec := map[string]string{"d/": ""}
	for i := 0; i < files; i++ {
		spec[fmt.Sprintf("d/f%02d", i)] = fmt.Sprintf("content %d\n", i)
	}
	lower := tree(t, spec)
	// Long enough that a slow (-race) walk never pauses that long between a read
	// and its fstat.
	defer func(d time.Duration) { relistDelay = d }(relistDelay)
	relistDelay = 200 * time.Millisecond
	for _, tc := range []struct {
		name          string
		statAfterRead bool
	}{{"stat-then-read", false}, {"read-then-stat", true}} {
		t.Run(tc.name, func(t *testing.T) {
			u := mountUnion(t, cow.FormatOverlay, lower)
			noRefill(u) // these count the relister's own drops
			dir := filepath.Join(u.mnt, "d")
			walk := func(read bool) {
				ents, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				if len(ents) != files {
					t.Fatalf("listed %d entries, want %d", len(ents), files)
				}
				for _, e := range ents {
					f, err := os.Open(filepath.Join(dir, e.Name()))
					if err != nil {
						t.Fatal(err)
					}
					if !tc.statAfterRead {
						if _, err := f.Stat(); err != nil {
							t.Fatal(err)
						}
					}
					if read {
						if _, err := io.ReadAll(f); err != nil {
							t.Fatal(err)
						}
						if tc.statAfterRead {
							if _, err := f.Stat(); err != nil {
								t.Fatal(err)
							}
						}
					}
					f.Close()
				}
			}
			walk(true)
			// Sweeps run on requests: wait out the delay, then send one (a
			// LOOKUP of a new name), as the next walk's first request would.
			time.Sleep(2 * relistDelay)
			os.Lstat(filepath.Join(u.mnt, "no such name"))
			time.Sleep(relistDelay / 4) // the notices are sent by a goroutine
			g0 := u.m.fs.getattrs.Load()
			walk(false)
			walk(false)
			if got := u.m.fs.getattrs.Load() - g0; got > 4 {
				t.Errorf("two walks after a read sent %d GETATTRs for %d files; want the listing to refresh them", got, files)
			}
			want := 1 // the directory's listing, once
			if tc.statAfterRead {
				want = 0 // nothing was left stale
			}
			if got := u.m.fs.relist.dropCount(); got != want {
				t.Errorf("dropped %d cached listings, want %d", got, want)
			}
		})
	}
}

// TestRelistNeedsEnoughStale: a directory with fewer than relistMin stale children
// keeps its cached listing (their GETATTRs cost less than relisting it); one with
// relistMin is relisted, once until it is listed again, then again.
func TestRelistNeedsEnoughStale(t *testing.T) {
	spec := map[string]string{"few/": "", "many/": ""}
	for i := 0; i < 3*relistMin; i++ {
		spec[fmt.Sprintf("many/f%d", i)] = "x\n"
		if i < relistMin-1 {
			spec[fmt.Sprintf("few/f%d", i)] = "x\n"
		}
	}
	defer func(d time.Duration) { relistDelay = d }(relistDelay)
	relistDelay = 200 * time.Millisecond
	u := mountUnion(t, cow.FormatOverlay, tree(t, spec))
	noRefill(u) // these count the relister's own drops
	statRead := func(p string) {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
		readFile(t, p) // stat, then read: leaves the atime stale
	}
	sweeps := 0
	sweep := func() {
		time.Sleep(2 * relistDelay)
		// A request, to sweep: a name never looked up (misses are cached).
		sweeps++
		os.Lstat(filepath.Join(u.mnt, fmt.Sprintf("no such name %d", sweeps)))
	}
	ents, err := os.ReadDir(filepath.Join(u.mnt, "few"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		statRead(filepath.Join(u.mnt, "few", e.Name()))
	}
	if _, err := os.ReadDir(filepath.Join(u.mnt, "many")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < relistMin; i++ {
		statRead(filepath.Join(u.mnt, fmt.Sprintf("many/f%d", i)))
	}
	sweep()
	if got := u.m.fs.relist.dropCount(); got != 1 {
		t.Errorf("dropped %d cached listings, want 1 (many/ only)", got)
	}
	// More stale children before many/ is listed again: already dropped.
	for i := relistMin; i < 2*relistMin; i++ {
		statRead(filepath.Join(u.mnt, fmt.Sprintf("many/f%d", i)))
	}
	sweep()
	if got := u.m.fs.relist.dropCount(); got != 1 {
		t.Errorf("dropped %d cached listings, want many/ dropped once until listed", got)
	}
	// Listed again, it may be dropped again (files not read before: read ones
	// are in the page cache and send no READ).
	if _, err := os.ReadDir(filepath.Join(u.mnt, "many")); err != nil {
		t.Fatal(err)
	}
	for i := 2 * relistMin; i < 3*relistMin; i++ {
		statRead(filepath.Join(u.mnt, fmt.Sprintf("many/f%d", i)))
	}
	sweep()
	if got := u.m.fs.relist.dropCount(); got != 2 {
		t.Errorf("dropped %d cached listings, want 2: many/ again after its new listing", got)
	}
}

// TestNegativeLookupCached: a name that does not exist is looked up once; the
// kernel keeps the negative entry (a compiler probing include dirs, a shell its
// PATH), and creating the name through the mount replaces it.
func TestNegativeLookupCached(t *testing.T) {
	u := mountUnion(t, cow.FormatOverlay, tree(t, map[string]string{"d/": "", "d/f": "x"}))
	missing := filepath.Join(u.mnt, "d", "missing.h")
	if _, err := os.Lstat(missing); !os.IsNotExist(err) {
		t.Fatalf("lstat %s: %v, want not found", missing, err)
	}
	l0 := u.m.fs.lookups.Load()
	for i := 0; i < 5; i++ {
		if _, err := os.Lstat(missing); !os.IsNotExist(err) {
			t.Fatalf("lstat %s: %v, want not found", missing, err)
		}
	}
	if got := u.m.fs.lookups.Load() - l0; got != 0 {
		t.Errorf("%d LOOKUPs for a name known missing; want the negative entry cached", got)
	}
	if err := os.WriteFile(missing, []byte("now\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, missing); got != "now\n" {
		t.Errorf("after create: %q", got)
	}
}

// TestLowerAtimeUntouched: reading, listing and copying up through the mount do
// not write the atime of the layers' files (O_NOATIME), in both data modes.
func TestLowerAtimeUntouched(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("O_NOATIME on files of other owners needs CAP_FOWNER")
	}
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) {
			lower := tree(t, map[string]string{"d/": "", "d/f": "data\n", "d/g": "more\n"})
			old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
			for _, p := range []string{"d/f", "d/g", "d"} {
				// atime before mtime: relatime would update it on access.
				if err := os.Chtimes(filepath.Join(lower, p), old, old.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			u := mountUnionMode(t, cow.FormatOverlay, pt, lower)
			if got := readFile(t, filepath.Join(u.mnt, "d/f")); got != "data\n" {
				t.Fatalf("read %q", got)
			}
			if _, err := os.ReadDir(filepath.Join(u.mnt, "d")); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(filepath.Join(u.mnt, "d/g"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			for _, p := range []string{"d/f", "d/g", "d"} {
				var st unix.Stat_t
				if err := unix.Stat(filepath.Join(lower, p), &st); err != nil {
					t.Fatal(err)
				}
				if got := time.Unix(st.Atim.Unix()); !got.Equal(old) {
					t.Errorf("lower %s: atime %v, want %v untouched", p, got.UTC(), old)
				}
			}
		})
	}
}

// TestNoGetattrOnReadAfterWrite: in no-open mode a read inside the file after a
// write is served without re-fetching attributes (no AUTO_INVAL_DATA), as a linker
// interleaves them.
func TestNoGetattrOnReadAfterWrite(t *testing.T) {
	u := mountUnion(t, cow.FormatOverlay, tree(t, map[string]string{"f": "x"}))
	f, err := os.Create(filepath.Join(u.mnt, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat(); err != nil {
		t.Fatal(err)
	}
	g0 := u.m.fs.getattrs.Load()
	buf := make([]byte, 100)
	for i := 0; i < 10; i++ {
		if _, err := f.WriteAt(buf, int64(i*1000+10)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadAt(buf, int64(i*4096+8000)); err != nil {
			t.Fatal(err)
		}
	}
	if got := u.m.fs.getattrs.Load() - g0; got > 2 {
		t.Errorf("10 write+read cycles inside the file sent %d GETATTRs, want none", got)
	}
	// The data is still right, through the mount and in the upper dir.
	f.Sync()
	want, err := os.ReadFile(filepath.Join(u.upper, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(u.mnt, "out")); got != string(want) {
		t.Error("mount and upper dir disagree")
	}
}

// TestRefillListings: after a walk that leaves files stale (stat, then read), the
// server lists the dropped directory again itself, through a clone of the mount
// (refresh.go), so the next walk finds listing and attributes fresh: no READDIRPLUS,
// no GETATTR. The clone must not make the mountpoint busy: a umount right after
// goes through.
func TestRefillListings(t *testing.T) {
	testenv.RequireRoot(t) // open_tree(OPEN_TREE_CLONE)
	const files = 3 * relistMin
	spec := map[string]string{"d/": "", "e/": ""}
	for i := 0; i < files; i++ {
		spec[fmt.Sprintf("d/f%02d", i)] = "x\n"
		spec[fmt.Sprintf("e/f%02d", i)] = "x\n"
	}
	defer func(d time.Duration) { relistDelay = d }(relistDelay)
	relistDelay = 200 * time.Millisecond
	u := mountUnion(t, cow.FormatOverlay, tree(t, spec))
	dir := filepath.Join(u.mnt, "d")
	walk := func(read bool) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if _, err := os.Stat(p); err != nil {
				t.Fatal(err)
			}
			if read {
				readFile(t, p)
			}
		}
		if _, err := os.Stat(dir); err != nil {
			t.Fatal(err)
		}
	}
	walk(true)
	time.Sleep(2 * relistDelay)
	os.Lstat(filepath.Join(u.mnt, "no such name")) // a request, to sweep
	deadline := time.Now().Add(5 * time.Second)
	for u.m.fs.listings.Load() < 2 { // the walk's listing, then the refill's
		if time.Now().After(deadline) {
			t.Fatalf("the dropped listing was not refilled (%d listings, %d drops)", u.m.fs.listings.Load(), u.m.fs.relist.dropCount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the refill's fstat of the directory
	g0, l0 := u.m.fs.getattrs.Load(), u.m.fs.listings.Load()
	walk(false)
	if g, l := u.m.fs.getattrs.Load()-g0, u.m.fs.listings.Load()-l0; g != 0 || l != 0 {
		t.Errorf("the walk after the refill sent %d GETATTRs and made %d listings, want none", g, l)
	}
	// A umount(2) while a refill holds a directory open goes through: the
	// refill's clone does not make the mountpoint busy.
	umounted := make(chan error, 1)
	swept := make(chan struct{})
	hook := func() {
		refillHook.Store(nil)
		<-swept // the request that swept holds the mount until it returns
		umounted <- unix.Unmount(u.mnt, 0)
	}
	refillHook.Store(&hook)
	defer refillHook.Store(nil)
	dir = filepath.Join(u.mnt, "e")
	walk(true)
	time.Sleep(2 * relistDelay)
	os.Lstat(filepath.Join(u.mnt, "no such name 2"))
	close(swept)
	select {
	case err := <-umounted:
		if err != nil {
			t.Fatalf("umount while a refill lists: %v", err)
		}
		u.m.Wait()
		u.m = nil
	case <-time.After(5 * time.Second):
		t.Fatal("no refill after the second walk")
	}
}

// noRefill turns off the refill of dropped listings (refresh.go) on u's mount.
func noRefill(u *union) {
	r := &u.m.fs.relist
	r.mu.Lock()
	r.refill = nil
	r.mu.Unlock()
}

// TestRestatListedDirs: a listing read from this process makes the kernel mark the
// directory's own atime stale, so the next stat of the directory costs a GETATTR
// (the "off" case checks that kernel behaviour). Once two listed directories are
// stated within restatBurst (a second walk), the server stats the other listed
// directories itself, through a clone of the mount (relist.go), so the walk's next
// stats send none; stats further apart (a first walk's) leave them alone.
func TestRestatListedDirs(t *testing.T) {
	testenv.RequireRoot(t) // open_tree(OPEN_TREE_CLONE)
	const dirs = 10
	spec := map[string]string{}
	for i := 0; i < dirs; i++ {
		spec[fmt.Sprintf("d%d/f", i)] = "x\n"
	}
	lower := tree(t, spec)
	defer func(d time.Duration) { restatBurst = d }(restatBurst)
	restatBurst = 200 * time.Millisecond // two lstats in a row, however slow the machine
	for _, tc := range []string{"off", "apart", "burst"} {
		t.Run(tc, func(t *testing.T) {
			u := mountUnion(t, cow.FormatOverlay, lower)
			if tc == "off" {
				r := &u.m.fs.relist
				r.mu.Lock()
				r.restat = nil
				r.mu.Unlock()
			}
			stat := func(from, to int) {
				for i := from; i < to; i++ {
					if _, err := os.Lstat(filepath.Join(u.mnt, fmt.Sprintf("d%d", i))); err != nil {
						t.Fatal(err)
					}
				}
			}
			stat(0, dirs) // looked up: attributes fresh
			for i := 0; i < dirs; i++ {
				if _, err := os.ReadDir(filepath.Join(u.mnt, fmt.Sprintf("d%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			g0 := u.m.fs.getattrs.Load()
			switch tc {
			case "off":
				stat(0, dirs)
				if got := u.m.fs.getattrs.Load() - g0; got != dirs {
					t.Errorf("stats of %d listed directories sent %d GETATTRs, want %d", dirs, got, dirs)
				}
				return
			case "apart":
				stat(0, 1)
				time.Sleep(2 * restatBurst)
				stat(1, 2)
				time.Sleep(restatBurst)
				if got := u.m.fs.getattrs.Load() - g0; got != 2 {
					t.Errorf("two stats of listed directories, %v apart, were followed by %d GETATTRs, want just theirs", 2*restatBurst, got)
				}
				return
			}
			stat(0, 2)
			deadline := time.Now().Add(5 * time.Second)
			for u.m.fs.getattrs.Load()-g0 < dirs {
				if time.Now().After(deadline) {
					t.Fatalf("the server stated %d of the %d other listed directories", u.m.fs.getattrs.Load()-g0-2, dirs-2)
				}
				time.Sleep(time.Millisecond)
			}
			// The count goes up as a GETATTR comes in, before the kernel has
			// the answer: wait for the refresher's stats to return (a 10 ms
			// sleep was too short under load).
			r := &u.m.fs.relist
			r.mu.Lock()
			idle := r.idle
			r.mu.Unlock()
			for !idle() {
				if time.Now().After(deadline) {
					t.Fatal("the server's restat did not end")
				}
				time.Sleep(time.Millisecond)
			}
			g1 := u.m.fs.getattrs.Load()
			stat(0, dirs)
			if got := u.m.fs.getattrs.Load() - g1; got != 0 {
				t.Errorf("stats of %d listed directories, after the server stated them, sent %d GETATTRs, want none", dirs, got)
			}
		})
	}
}

// TestCopiedUpDirCtime: a dir copied up as the parent of a new entry is a new
// inode in the upper dir, and stat shows its ctime from then on (as kernel
// overlayfs shows the upper dir's), however the kernel came by the attributes it
// held: a lookup, or the server's restat of listed dirs (relist.go), which used to
// leave the lower dir's ctime cached for an hour where a stat would have asked.
func TestCopiedUpDirCtime(t *testing.T) {
	testenv.RequireRoot(t) // open_tree(OPEN_TREE_CLONE)
	const dirs = 6
	spec := map[string]string{}
	for i := 0; i < dirs; i++ {
		spec[fmt.Sprintf("d%d/sub/f", i)] = "x\n"
	}
	lower := tree(t, spec)
	defer func(d time.Duration) { restatBurst = d }(restatBurst)
	restatBurst = 200 * time.Millisecond
	for _, tc := range []string{"lookup", "restat"} {
		t.Run(tc, func(t *testing.T) {
			u := mountUnion(t, cow.FormatOverlay, lower)
			dir := func(i int) string { return filepath.Join(u.mnt, fmt.Sprintf("d%d", i)) }
			for i := 0; i < dirs; i++ {
				if _, err := os.Lstat(dir(i)); err != nil {
					t.Fatal(err)
				}
			}
			if tc == "restat" {
				g0 := u.m.fs.getattrs.Load()
				for i := 0; i < dirs; i++ {
					if _, err := os.ReadDir(dir(i)); err != nil {
						t.Fatal(err)
					}
				}
				os.Lstat(dir(0))
				os.Lstat(dir(1)) // a second walk: the server stats the others
				deadline := time.Now().Add(5 * time.Second)
				for u.m.fs.getattrs.Load()-g0 < dirs {
					if time.Now().After(deadline) {
						t.Fatal("no restat")
					}
					time.Sleep(time.Millisecond)
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			before := time.Now()
			last := dirs - 1
			must(t, os.WriteFile(filepath.Join(dir(last), "sub", "new"), nil, 0o644))
			var st, ust unix.Stat_t
			must(t, unix.Lstat(dir(last), &st))
			must(t, unix.Lstat(filepath.Join(u.upper, fmt.Sprintf("d%d", last)), &ust))
			if st.Ctim != ust.Ctim || time.Unix(st.Ctim.Unix()).Before(before.Add(-10*time.Millisecond)) {
				t.Errorf("ctime of d%d after its copy-up = %v, want its upper copy's %v", last, time.Unix(st.Ctim.Unix()), time.Unix(ust.Ctim.Unix()))
			}
		})
	}
}
