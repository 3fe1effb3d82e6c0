package integration

// Regressions from a hunt of commit -c, inspect and history against docker's
// documented behaviour (docker commit, moby's BuildFromConfig and image inspect).

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCommitBadChangeWritesNothing: a -c that parses but does not apply (a bad
// signal, a port out of range, an empty VOLUME) fails the commit before anything is
// written, as docker applies the changes before it commits; the layer blob used to
// be stored (and sized) first.
func TestCommitBadChangeWritesNothing(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("bad", "base:1")
	if err := os.WriteFile(filepath.Join(mnt, "new-file"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sizes := filepath.Join(e.root, "store", ".layerfs", "layersizes.json")
	for _, change := range []string{"STOPSIGNAL SIGFOO", "EXPOSE 70000", `VOLUME [""]`, "EXPOSE 80/foo"} {
		before := blobFiles(t, e.root)
		sizesBefore, _ := os.ReadFile(sizes)
		e.fails("invalid change", "commit", "-c", change, "bad", "bad:1")
		if after := blobFiles(t, e.root); !slices.Equal(before, after) {
			t.Errorf("commit -c %q wrote blobs: %v, were %v", change, after, before)
		}
		if after, _ := os.ReadFile(sizes); string(after) != string(sizesBefore) {
			t.Errorf("commit -c %q recorded layer sizes:\n%s", change, after)
		}
		if out, _, _ := e.run("images", "-q", "-a"); strings.Count(out, "\n") != 1 {
			t.Errorf("images after commit -c %q:\n%s", change, out)
		}
	}
}

// TestInspectCommentFromHistory: docker inspect's Comment is the config's comment
// or, when it has none (OCI configs never do), the last history entry's: the -m of
// a commit. It was empty.
func TestInspectCommentFromHistory(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("cm", "base:1")
	if err := os.WriteFile(filepath.Join(mnt, "new-file"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("commit", "-m", "added new-file", "cm", "cm:1")
	if got := e.inspect("cm:1")["Comment"]; got != "added new-file" {
		t.Errorf("inspect cm:1 Comment = %q, want %q", got, "added new-file")
	}
	if got := strings.TrimSpace(e.ok("inspect", "-f", "{{.Comment}}", "cm:1")); got != "added new-file" {
		t.Errorf("inspect -f {{.Comment}} cm:1 = %q", got)
	}
}
