package fs

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

	"github.com/layerfs/layerfs/cow"
)

// A layer whose whiteout names a 252-255-byte entry (".wh.<name>" is longer than
// NAME_MAX) unpacks to a 0/0 device (cow.Apply); the mounted image hides the entry.
// Such layers were refused at load, import and pull.
func TestLongWhiteoutInLowerHides(t *testing.T) {
	name := strings.Repeat("L", 253)
	base := tree(t, map[string]string{name: "x", "keep": "k", "d/" + name: "y"})
	top := t.TempDir()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range []string{cow.WhiteoutName(name), "d/" + cow.WhiteoutName(name)} {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644}))
	}
	must(t, tw.Close())
	if _, err := cow.Apply(context.Background(), top, &b); err != nil {
		t.Fatalf("Apply(layer with long whiteouts): %v", err)
	}
	u := mountUnion(t, cow.FormatOCI, top, base)
	for _, p := range []string{name, "d/" + name} {
		if _, err := os.Lstat(filepath.Join(u.mnt, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lstat %.12s...: %v, want ENOENT", p, err)
		}
	}
	if got := listDir(t, u.mnt); got != "d keep" {
		t.Errorf("readdir / = %s, want d keep", got)
	}
	if got := listDir(t, filepath.Join(u.mnt, "d")); got != "" {
		t.Errorf("readdir /d = %.20s..., want it empty", got)
	}
}

// Deleting a lower entry of a 252-255-byte name in the OCI encoding writes its
// whiteout as a 0/0 device in the upper dir (".wh.<name>" cannot be a file there),
// and the layer Diff makes of it carries ".wh.<name>": unlink and rmdir of such
// entries failed with ENAMETOOLONG.
func TestRemoveLongLowerNameOCI(t *testing.T) {
	file, dir, moved := strings.Repeat("f", 253), strings.Repeat("d", 255), strings.Repeat("m", 252)
	u := mountUnion(t, cow.FormatOCI, tree(t, map[string]string{file: "lower", dir + "/a": "a", moved: "m", "keep": "k"}))
	p := func(rel string) string { return filepath.Join(u.mnt, rel) }
	must(t, os.WriteFile(p(file), []byte("changed"), 0o644))
	must(t, os.Remove(p(file)))
	must(t, os.RemoveAll(p(dir)))
	must(t, os.Rename(p(moved), p("short")))
	check := func(when string) {
		t.Helper()
		if got := listDir(t, u.mnt); got != "keep short" {
			t.Errorf("%s: readdir / = %.40s, want keep short", when, got)
		}
		for _, n := range []string{file, dir, moved} {
			if _, err := os.Lstat(p(n)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: lstat %.12s...: %v, want ENOENT", when, n, err)
			}
		}
	}
	check("after the deletes")
	u.remount(t, cow.FormatOCI) // past the kernel's caches
	check("after a remount")

	rc := cow.Diff(context.Background(), u.upper, cow.DiffOptions{Format: cow.FormatOCI})
	got := tarHeaders(t, rc)
	want := []string{cow.WhiteoutName(dir), cow.WhiteoutName(file), cow.WhiteoutName(moved), "short"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Diff of the upper dir = %.60q, want %.60q", got, want)
	}
	changes, err := cow.Changes(u.upper, cow.DiffOptions{Format: cow.FormatOCI, Lowers: u.lowers})
	must(t, err)
	var kinds []string
	for _, c := range changes {
		kinds = append(kinds, c.Kind.String()+" "+c.Path[:min(len(c.Path), 4)])
	}
	if g, w := strings.Join(kinds, ","), "D /ddd,D /fff,D /mmm,A /sho"; g != w {
		t.Errorf("Changes = %s, want %s", g, w)
	}

	// A new entry of the name takes the whiteout's place; a new dir hides the
	// lower one's children.
	must(t, os.WriteFile(p(file), []byte("new"), 0o644))
	must(t, os.Mkdir(p(dir), 0o755))
	u.remount(t, cow.FormatOCI)
	if got := readFile(t, p(file)); got != "new" {
		t.Errorf("recreated file holds %q, want new", got)
	}
	if got := listDir(t, p(dir)); got != "" {
		t.Errorf("recreated dir lists %s, want nothing", got)
	}
}

func listDir(t *testing.T, d string) string {
	t.Helper()
	ents, err := os.ReadDir(d)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// tarHeaders reads the tar stream rc to its end and closes it: its entry names.
func tarHeaders(t *testing.T, rc io.ReadCloser) []string {
	t.Helper()
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		must(t, err)
		names = append(names, h.Name)
	}
}

// A layer that whites out a dir and has that dir too (".wh.d" and "d/x", in
// either order, a long name's too) replaces the lower dir: the mount lists only
// the layer's entries in it (OCI: a whiteout applies to the layers below). The
// lower dir's entries came back (found by a review).
func TestWhiteoutAndDirInOneLayer(t *testing.T) {
	long := strings.Repeat("D", 253)
	for _, tc := range []struct {
		name    string
		entries []string // "dir/" entries are dirs
	}{
		{"whiteout first", []string{cow.WhiteoutName("d"), "d/", "d/new"}},
		{"dir first", []string{"d/", "d/new", cow.WhiteoutName("d")}},
		{"no dir entry", []string{cow.WhiteoutName("d"), "d/new"}},
		{"long name", []string{cow.WhiteoutName(long), long + "/", long + "/new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := tree(t, map[string]string{"d/old": "o", long + "/old": "o"})
			top := t.TempDir()
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			for _, n := range tc.entries {
				h := &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644}
				if strings.HasSuffix(n, "/") {
					h.Typeflag, h.Mode = tar.TypeDir, 0o755
				}
				must(t, tw.WriteHeader(h))
			}
			must(t, tw.Close())
			if _, err := cow.Apply(context.Background(), top, &b); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			u := mountUnion(t, cow.FormatOCI, top, base)
			dir := strings.TrimSuffix(tc.entries[len(tc.entries)-1], "/new")
			if tc.name == "dir first" {
				dir = "d"
			}
			if got := listDir(t, filepath.Join(u.mnt, dir)); got != "new" {
				t.Errorf("readdir of the replaced dir = %q, want new", got)
			}
		})
	}
}
