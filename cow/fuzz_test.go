package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// FuzzApply: whatever the bytes, Apply never writes or creates anything outside its
// dir. (It may fail; it must not escape.)
func FuzzApply(f *testing.F) {
	for _, ents := range [][]tarEntry{
		{dir("a"), reg("a/b", "x"), symlink("a/l", "../.."), hardlink("a/h", "a/b")},
		{symlink("link", "../outside"), reg("link/file", "pwned")},
		{symlink("s", "../outside/file"), reg("s", "pwned")},
		{reg("../outside/file", "pwned")},
		{hardlink("h", "../outside/file")},
		{symlink("d", "."), dir("d/d"), reg("d/d/f", "x")},
		{reg(".wh.x", ""), dir("o"), reg("o/.wh..wh..opq", "")},
		{{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}}, symlink("q", "/"), hardlink("r", "q")},
		{{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "c"}}}, reg("f", "x"), hardlink("f", "f")},
	} {
		f.Add(buildTar(f, ents...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 || declaresHuge(b) {
			t.Skip()
		}
		base := tempDir(t)
		root := filepath.Join(base, "root")
		outside := filepath.Join(base, "outside")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(outside, "file"), "host", 0o644)
		_, err := Apply(context.Background(), root, bytes.NewReader(b))
		// CheckLayer refuses exactly what Apply refuses as unsafe or unsupported.
		_, cerr := CheckLayer(bytes.NewReader(b))
		refused := errors.Is(err, ErrUnsafePath) || errors.Is(err, ErrUnsupported)
		if err == nil && cerr != nil || refused && cerr == nil {
			t.Fatalf("Apply: %v, but CheckLayer: %v", err, cerr)
		}
		if got, err := os.ReadFile(filepath.Join(outside, "file")); err != nil || string(got) != "host" {
			t.Fatalf("host file changed: %q, %v", got, err)
		}
		assertOnly(t, base, "outside", "root")
		assertOnly(t, outside, "file")
		if _, err := os.Lstat(filepath.Join(filepath.Dir(base), "pwned")); err == nil {
			t.Fatalf("created a file beside the test dir")
		}
		removeAll(root) // read-only dirs from the tar must not fail the cleanup
	})
}

// declaresHuge reports whether a tar declares entries too big for a fuzz run (a tiny
// sparse entry can claim terabytes of holes).
func declaresHuge(b []byte) bool {
	tr := tar.NewReader(bytes.NewReader(b))
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF || err != nil {
			return false
		}
		total += h.Size
		if total > 16<<20 {
			return true
		}
	}
}

// FuzzRoundTrip: whatever tree Apply makes of the bytes, Diff of it applies to the
// same tree, and Diff of that gives the same bytes again.
func FuzzRoundTrip(f *testing.F) {
	f.Add(buildTar(f, dir("a"), reg("a/b", "x"), symlink("a/l", "../.."), hardlink("a/h", "a/b"),
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "a/x", Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v\x00w"}}},
		reg(".wh.gone", ""), dir("o"), reg("o/.wh..wh..opq", ""), reg("caf\xe9/"+longComp, "n")))
	f.Add(buildTar(f, reg("z/y/x", "implicit parents"), dirHdrEntry("z", 0o500), reg("f", "1"), reg("f", "2")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 || declaresHuge(b) {
			t.Skip()
		}
		a := filepath.Join(tempDir(t), "a")
		must(t, os.Mkdir(a, 0o755))
		if _, err := Apply(context.Background(), a, bytes.NewReader(b)); err != nil {
			t.Skip()
		}
		t1 := readAll(t, Diff(context.Background(), a, DiffOptions{}))
		bdir := applyBytes(t, t1)
		// Markers are normalised and folded by design: compare everything else.
		compareTrees(t, "Apply(Diff(Apply(b)))", withoutMarkers(snapshot(t, bdir, snapOpts{})), withoutMarkers(snapshot(t, a, snapOpts{})))
		if t2 := readAll(t, Diff(context.Background(), bdir, DiffOptions{})); !bytes.Equal(t1, t2) {
			t.Errorf("Diff(Apply(Diff(a))) differs from Diff(a)")
		}
	})
}

func dirHdrEntry(name string, mode int64) tarEntry { return tarEntry{hdr: dirHdr(name, mode)} }

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
