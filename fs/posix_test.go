package fs

import (
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"github.com/layerfs/layerfs/cow"
)

// posixSkips are posixtest cases that cannot pass through a union, with why.
var posixSkips = map[string]string{
	// The kernel keeps POSIX locks itself (layerfs does not take them), with
	// local-filesystem semantics: a process's own locks never conflict with each
	// other (ext4 also answers success here). The test expects go-fuse's
	// per-open emulation.
	"FcntlFlockLocksFile": "POSIX locks of one process do not conflict (kernel-local locks, as on ext4)",
}

// noOpenSkips are skipped in no-open mode only.
var noOpenSkips = map[string]string{}

func runPosix(t *testing.T, sub string, lowers func(t *testing.T) []string) {
	for _, mode := range []struct {
		name string
		pt   bool
	}{{"noopen", false}, {"passthrough", true}} {
		t.Run(mode.name, func(t *testing.T) { runPosixMode(t, mode.pt, sub, lowers) })
	}
}

func runPosixMode(t *testing.T, pt bool, sub string, lowers func(t *testing.T) []string) {
	var names []string
	for n := range posixtest.All {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkips[name]; ok {
				t.Skip(why)
			}
			if why, ok := noOpenSkips[name]; ok && !pt {
				t.Skip(why)
			}
			u := mountUnionMode(t, cow.FormatOCI, pt, lowers(t)...)
			posixtest.All[name](t, filepath.Join(u.mnt, sub))
		})
	}
}

func TestPosixEmptyLowers(t *testing.T) {
	runPosix(t, "", func(t *testing.T) []string { return []string{t.TempDir()} })
}

func TestPosixPopulatedLowers(t *testing.T) {
	// The tests run in "t", a directory that lives in both lowers; its merged view
	// is empty (lower 2's file is whited out by lower 1), so every change lands in
	// a copied-up directory.
	runPosix(t, "t", func(t *testing.T) []string {
		return []string{
			tree(t, map[string]string{"etc/passwd": "root:x:0:0\n", "t/.wh.gone": "", "a/b/c": "deep", ".wh.gone": ""}),
			tree(t, map[string]string{"gone": "hidden", "t/gone": "x", "usr/lib/x": "x", "etc/hostname": "lower2"}),
		}
	})
}
