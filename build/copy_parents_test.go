package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
)

// TestBuildCopyParents: COPY --parents keeps each source's path (from the
// context root, or from a /./ pivot), ** matches any number of dirs, a matched
// dir is copied whole, and the dirs on the way keep their modes; examples from
// the Dockerfile reference.
func TestBuildCopyParents(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	for _, f := range []string{"x/a.txt", "y/a.txt", "src/a.txt", "src/x/b.txt", "src/x/y/c.txt", "src/x/y/d.md", "deep/x/y/e.txt", "src/skip/z.txt"} {
		p := filepath.Join(ctxDir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(ctxDir, "src/x"), 0o750)
	os.WriteFile(filepath.Join(ctxDir, ".dockerignore"), []byte("src/skip\n"), 0o644)
	df := `FROM base AS s1
RUN mkdir -p /app/bin && echo tool > /app/bin/tool
FROM base
COPY --parents ./x/a.txt ./y/a.txt /parents/
COPY --parents ./src/**/*.txt /glob/
COPY --parents ./deep/./x/y/*.txt /pivot/
COPY --parents src/x /dir/
COPY --from=s1 --parents /app/./bin/tool /from/
COPY --parents --exclude=src/x/y src /excl/
COPY --parents --exclude=*.txt src /excl2/
RUN test "$(cat /parents/x/a.txt /parents/y/a.txt)" = "$(printf 'x/a.txt\ny/a.txt')" && \
    test -f /glob/src/a.txt && test -f /glob/src/x/b.txt && test -f /glob/src/x/y/c.txt && \
    test ! -e /glob/src/x/y/d.md && test ! -e /glob/src/skip && \
    test "$(stat -c %a /glob/src/x)" = 750 && \
    test -f /pivot/x/y/e.txt && test ! -e /pivot/deep && \
    test -f /dir/src/x/y/d.md && test -f /dir/src/x/b.txt && \
    test "$(cat /from/bin/tool)" = tool && \
    test -f /excl/src/a.txt && test -f /excl/src/x/b.txt && test ! -e /excl/src/x/y && \
    test -f /excl2/src/a.txt && test -f /excl2/src/x/y/d.md
`
	res, out, err := buildIn(t, root, s, ctxDir, df)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// A change under a matched path reruns the step; the same build is cached.
	res2, out, err := buildIn(t, root, s, ctxDir, df)
	if err != nil || res2.Image.ID != res.Image.ID {
		t.Fatalf("rebuild = %v, %v; want the same image\n%s", res2, err, out)
	}
	os.WriteFile(filepath.Join(ctxDir, "src/x/y/c.txt"), []byte("changed\n"), 0o644)
	res3, out, err := buildIn(t, root, s, ctxDir, df)
	if err != nil {
		t.Fatalf("build after a change: %v\n%s", err, out)
	}
	if res3.Image.ID == res.Image.ID {
		t.Error("a changed --parents source did not change the image")
	}
	for _, tc := range []struct{ df, want string }{
		{"FROM base\nCOPY --parents ./nope/a.txt /p/\n", "file not found"},
		{"FROM base\nCOPY --parents ./x/a.txt/./b /p/\n", "not a directory"},
		{"FROM base\nCOPY --parents ./*/./a.txt /p/\n", "wildcards before the /./"},
	} {
		_, out, err := buildIn(t, root, s, ctxDir, tc.df)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q\n%s", tc.df, err, tc.want, out)
		}
	}
}

// TestPlainParentMatchesWalk: the lookup path of --parents for a plain path
// finds what the walk finds (an --exclude that matches nothing forces the walk).
func TestPlainParentMatchesWalk(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"x/y/z.txt", "x/y/w/v.txt", "b/f"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(f), 0o644)
	}
	os.Chmod(filepath.Join(dir, "x/y"), 0o750)
	os.Symlink("b", filepath.Join(dir, "a"))
	c, err := openContext(dir, "", false)
	if err != nil {
		t.Fatal(err)
	}
	walk, err := c.withExcludes([]string{"no-such-name-zz"})
	if err != nil {
		t.Fatal(err)
	}
	show := func(ps []parentSource) string {
		var b strings.Builder
		for _, p := range ps {
			fmt.Fprintf(&b, "%s %s %s %v;", p.destRel, p.src.rel, p.src.abs, p.src.fi.Mode())
			for _, d := range p.parents {
				fmt.Fprintf(&b, " %s %v", d.destRel, d.fi.Mode())
			}
		}
		return b.String()
	}
	for _, pat := range []string{"x/y/z.txt", "./x/./y/z.txt", "x/y", "x/./y/w", "a/f", "x/nope", "x/y/z.txt/q"} {
		got, gerr := c.resolveParents(pat)
		want, werr := walk.resolveParents(pat)
		if show(got) != show(want) || (gerr == nil) != (werr == nil) {
			t.Errorf("%s: lookups %q (%v), walk %q (%v)", pat, show(got), gerr, show(want), werr)
		}
	}
}
