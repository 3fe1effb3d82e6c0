package cow

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// makeStack builds two lower layers (the upper one in the overlay encoding) and an
// OCI upper dir over them; see the comments for what each hides.
func makeStack(t *testing.T) (lowers []string, upper string) {
	base := tempDir(t)
	l1, l2, up := filepath.Join(base, "l1"), filepath.Join(base, "l2"), filepath.Join(base, "upper")
	// l1 (bottom)
	writeFile(t, filepath.Join(l1, "a/1"), "1", 0o644)
	writeFile(t, filepath.Join(l1, "a/2"), "2", 0o644)
	writeFile(t, filepath.Join(l1, "b/x"), "x", 0o644)
	writeFile(t, filepath.Join(l1, "c"), "c", 0o644)
	writeFile(t, filepath.Join(l1, "d/k"), "k", 0o644)
	writeFile(t, filepath.Join(l1, "h1"), "h", 0o644)
	must(t, os.Link(filepath.Join(l1, "h1"), filepath.Join(l1, "h2")))
	writeFile(t, filepath.Join(l1, "g1"), "g", 0o644)
	must(t, os.Link(filepath.Join(l1, "g1"), filepath.Join(l1, "g2")))
	writeFile(t, filepath.Join(l1, "keep"), "keep", 0o644)
	// l2, overlay encoding: deletes a/1, makes b opaque, c a dir, d a file.
	must(t, os.MkdirAll(filepath.Join(l2, "a"), 0o755))
	if os.Geteuid() == 0 {
		must(t, unix.Mknod(filepath.Join(l2, "a/1"), unix.S_IFCHR, 0))
	} else {
		writeFile(t, filepath.Join(l2, "a/.wh.1"), "", 0o644)
	}
	writeFile(t, filepath.Join(l2, "b/y"), "y", 0o644)
	fd, err := unix.Open(filepath.Join(l2, "b"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	must(t, MakeOpaque(fd, FormatOverlay))
	unix.Close(fd)
	writeFile(t, filepath.Join(l2, "c/new"), "new", 0o644)
	writeFile(t, filepath.Join(l2, "d"), "d", 0o644)
	// upper, OCI encoding
	writeFile(t, filepath.Join(up, "a/3"), "3", 0o644)
	writeFile(t, filepath.Join(up, "a", OpaqueMarker), "", 0o000)
	writeFile(t, filepath.Join(up, ".wh.h1"), "", 0o000)
	writeFile(t, filepath.Join(up, ".wh.b"), "", 0o000)
	writeFile(t, filepath.Join(up, ".wh.zzz"), "", 0o000)
	writeFile(t, filepath.Join(up, "e/f"), "f", 0o644)
	writeFile(t, filepath.Join(up, "c/new2"), "new2", 0o644)
	writeFile(t, filepath.Join(up, "keep"), "keep2", 0o644)
	return []string{l2, l1}, up
}

func TestExport(t *testing.T) {
	lowers, upper := makeStack(t)
	b := readAll(t, Export(context.Background(), lowers, upper, FormatOCI))
	want := "a/ a/3 c/ c/new c/new2 d e/ e/f g1 g2 link=g1 h2 keep"
	if got := strings.Join(tarNames(t, b), " "); got != want {
		t.Errorf("Export names:\n got %s\nwant %s", got, want)
	}
	root := applyBytes(t, b)
	for p, data := range map[string]string{"h2": "h", "keep": "keep2", "d": "d", "c/new": "new"} {
		if got, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(got) != data {
			t.Errorf("exported %s = %q, %v; want %q", p, got, err, data)
		}
	}
	// Lowers only.
	b = readAll(t, Export(context.Background(), lowers, "", FormatOCI))
	want = "a/ a/2 b/ b/y c/ c/new d g1 g2 link=g1 h1 h2 link=h1 keep"
	if got := strings.Join(tarNames(t, b), " "); got != want {
		t.Errorf("Export(lowers) names:\n got %s\nwant %s", got, want)
	}
}

func TestChanges(t *testing.T) {
	lowers, upper := makeStack(t)
	got, err := Changes(upper, DiffOptions{Lowers: lowers})
	must(t, err)
	var lines []string
	for _, c := range got {
		lines = append(lines, c.String())
	}
	want := "C /a,D /a/2,A /a/3,D /b,C /c,A /c/new2,A /e,A /e/f,D /h1,C /keep"
	if s := strings.Join(lines, ","); s != want {
		t.Errorf("Changes:\n got %s\nwant %s", s, want)
	}
}

func TestChangesNoLowers(t *testing.T) {
	upper := tempDir(t)
	writeFile(t, filepath.Join(upper, "a/b"), "x", 0o644)
	writeFile(t, filepath.Join(upper, ".wh.gone"), "", 0o644)
	got, err := Changes(upper, DiffOptions{})
	must(t, err)
	if len(got) != 2 || got[0] != (Change{ChangeAdd, "/a"}) || got[1] != (Change{ChangeAdd, "/a/b"}) {
		t.Errorf("Changes(no lowers) = %v, want A /a, A /a/b", got)
	}
}

// TestChangesBelowOpaqueDir: an opaque dir hides the lowers' whole subtree, so a
// lower path below a dir the upper has again inside the opaque one is deleted too
// (rm -rf a; mkdir -p a/b; touch a/b/g over a lower a/b/c and a/b/d).
func TestChangesBelowOpaqueDir(t *testing.T) {
	base := tempDir(t)
	lower, upper := filepath.Join(base, "lower"), filepath.Join(base, "upper")
	writeFile(t, filepath.Join(lower, "a/b/c/f"), "f", 0o644)
	writeFile(t, filepath.Join(lower, "a/b/d"), "d", 0o644)
	writeFile(t, filepath.Join(lower, "a/top"), "top", 0o644)
	writeFile(t, filepath.Join(lower, "x/y/z"), "z", 0o644)
	writeFile(t, filepath.Join(upper, "a/b/g"), "g", 0o644)
	writeFile(t, filepath.Join(upper, "a", OpaqueMarker), "", 0o000)
	writeFile(t, filepath.Join(upper, "a", WhiteoutName("top")), "", 0o000) // also hidden by the opaque dir
	writeFile(t, filepath.Join(upper, "x/y/new"), "n", 0o644)
	writeFile(t, filepath.Join(upper, WhiteoutName("x")), "", 0o000)
	got, err := Changes(upper, DiffOptions{Lowers: []string{lower}})
	must(t, err)
	var lines []string
	for _, c := range got {
		lines = append(lines, c.String())
	}
	want := "C /a,C /a/b,D /a/b/c,D /a/b/d,A /a/b/g,D /a/top,C /x,C /x/y,A /x/y/new,D /x/y/z"
	if s := strings.Join(lines, ","); s != want {
		t.Errorf("Changes:\n got %s\nwant %s", s, want)
	}
}
