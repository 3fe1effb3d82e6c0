package integration

// A store root that did not exist before a command must not exist after it when
// the command failed (bad input leaves the store as it was) or stored nothing;
// a root that existed, even empty, stays, and so does one that holds data.

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFreshRootRemovedOnFailure: import, load and pull of bad input, and verbs
// that only read, against a --root that does not exist leave no root behind.
func TestFreshRootRemovedOnFailure(t *testing.T) {
	bad := writeInput(t, "bad.tar", []byte(strings.Repeat("not a tar\n", 300)))
	hostile := writeInput(t, "hostile.tar", importTar(t, file("ok", "x"),
		tarFileEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: "big-uid", Uid: 1 << 32, Mode: 0o644, Format: tar.FormatPAX}, body: []byte("y")}))
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"import garbage", []string{"import", "-q", bad, "x:1"}, false},
		{"import hostile", []string{"import", "-q", hostile, "x:1"}, false},
		{"import missing", []string{"import", "-q", filepath.Join(t.TempDir(), "nope.tar"), "x:1"}, false},
		{"load garbage", []string{"load", "-q", "-i", bad}, false},
		{"pull unreachable", []string{"pull", "-q", "127.0.0.1:1/x/y:1"}, false},
		{"pull bad reference", []string{"pull", "-q", "Bad::Ref"}, false},
		{"inspect", []string{"inspect", "nosuch"}, false},
		{"tag", []string{"tag", "nosuch", "x:1"}, false},
		{"images", []string{"images"}, true},
		{"gc", []string{"gc"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "newroot")
			r := runWith(t, cmdOpts{root: root}, tc.args...)
			if (r.Code == 0) != tc.ok {
				t.Fatalf("layerfs %s: exit %d, want ok: %v\nstderr: %s", strings.Join(tc.args, " "), r.Code, tc.ok, r.Stderr)
			}
			if _, err := os.Lstat(root); err == nil {
				t.Errorf("layerfs %s left %s behind:\n%s", strings.Join(tc.args, " "), root, strings.Join(listTree(t, root), "\n"))
			}
		})
	}
}

// TestFreshRootKept: a root that existed (even empty) is not removed when a
// command on it fails, nor is a new root once it holds an image.
func TestFreshRootKept(t *testing.T) {
	bad := writeInput(t, "bad.tar", []byte(strings.Repeat("not a tar\n", 300)))
	existing := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if r := runWith(t, cmdOpts{root: existing}, "import", "-q", bad, "x:1"); r.Code == 0 {
		t.Fatalf("import of garbage: exit 0")
	}
	if fi, err := os.Stat(existing); err != nil || !fi.IsDir() {
		t.Errorf("import of garbage removed the existing empty root %s: %v", existing, err)
	}

	fresh := filepath.Join(t.TempDir(), "newroot")
	mustRunIn(t, fresh, "import", "-q", busyboxRootfs(t), "base:1")
	if r := runWith(t, cmdOpts{root: fresh}, "import", "-q", bad, "x:1"); r.Code == 0 {
		t.Fatalf("import of garbage: exit 0")
	}
	if out := mustRunIn(t, fresh, "images", "-q"); strings.TrimSpace(out) == "" {
		t.Errorf("images after a failed import into a root holding base:1 = %q, want base:1", out)
	}
}

// listTree names what is under root, for a failure message.
func listTree(t *testing.T, root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		out = append(out, p)
		return nil
	})
	return out
}
