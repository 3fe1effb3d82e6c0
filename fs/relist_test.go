package fs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
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
			time.Sleep(3 * relistDelay) // the sweep
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
