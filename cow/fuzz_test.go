package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/tartest"
)

// FuzzApply feeds Apply tar bytes: the seeds are rawSeeds, and every mutation gets
// its header checksums repaired first (tartest.FixChecksums), or nearly all of them
// would stop at archive/tar's checksum check. checkApply says what must hold.
func FuzzApply(f *testing.F) {
	seeds := rawSeeds(f)
	names := make([]string, 0, len(seeds))
	for n := range seeds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f.Add(seeds[n])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = tartest.FixChecksums(b)
		if len(b) > 1<<20 || declaresHuge(b) {
			t.Skip()
		}
		checkApply(t, newSandbox(t), b)
	})
}

// FuzzApplyEntries is FuzzApply over fuzz programs (fuzz_prog_test.go): valid
// tars of colliding names, links and types.
func FuzzApplyEntries(f *testing.F) {
	for _, p := range progSeeds {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 4096 {
			t.Skip()
		}
		sb := newSandbox(t)
		checkApply(t, sb, buildProg(t, prog, sb))
	})
}

// declaresHuge reports whether a tar has sparse entries too big for a fuzz run: a
// tiny sparse entry can claim terabytes of holes, which Apply reads as zeros.
// (Any other entry's data must be in the tar, so its cost is the tar's size.)
func declaresHuge(b []byte) bool {
	tr := tar.NewReader(bytes.NewReader(b))
	var total int64
	for {
		h, err := tr.Next()
		if err != nil {
			return false
		}
		sparse := h.Typeflag == tar.TypeGNUSparse
		for k := range h.PAXRecords {
			sparse = sparse || strings.HasPrefix(k, "GNU.sparse.")
		}
		if sparse {
			total += h.Size
		}
		if total > 16<<20 {
			return true
		}
	}
}

// FuzzRoundTrip: whatever tree Apply makes of a fuzz program's tar, Diff of it
// applies to the same tree, and Diff of that gives the same bytes again.
func FuzzRoundTrip(f *testing.F) {
	for _, p := range progSeeds {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 4096 {
			t.Skip()
		}
		sb := newSandbox(t)
		a := sb.root
		if _, err := Apply(context.Background(), a, bytes.NewReader(buildProg(t, prog, sb))); err != nil {
			t.Skip()
		}
		t1 := readAll(t, Diff(context.Background(), a, DiffOptions{}))
		bdir := filepath.Join(sb.base, "again")
		must(t, os.Mkdir(bdir, 0o755))
		if _, err := Apply(context.Background(), bdir, bytes.NewReader(t1)); err != nil {
			t.Fatalf("Apply(Diff(Apply(b))): %v", err)
		}
		// Markers are normalised and folded by design: compare everything else.
		compareTrees(t, "Apply(Diff(Apply(b)))", withoutMarkers(snapshot(t, bdir, snapOpts{})), withoutMarkers(snapshot(t, a, snapOpts{})))
		if t2 := readAll(t, Diff(context.Background(), bdir, DiffOptions{})); !bytes.Equal(t1, t2) {
			t.Errorf("Diff(Apply(Diff(a))) differs from Diff(a)")
		}
	})
}

func withoutMarkers(m map[string]node) map[string]node {
	isMarker := func(p string) bool {
		return strings.HasPrefix(p, WhiteoutPrefix) || strings.Contains(p, "/"+WhiteoutPrefix)
	}
	for p := range m {
		if isMarker(p) {
			delete(m, p)
		}
	}
	// Regroup hard links without the markers (a marker never is a tar hard link).
	groups := map[string][]string{}
	for p, n := range m {
		if n.Group != "" {
			groups[n.Group] = append(groups[n.Group], p)
		}
	}
	for _, ps := range groups {
		sort.Strings(ps)
		for _, p := range ps {
			n := m[p]
			n.Group = ps[0]
			if len(ps) == 1 {
				n.Group = ""
			}
			m[p] = n
		}
	}
	return m
}
