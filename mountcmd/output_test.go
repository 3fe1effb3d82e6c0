package mountcmd

import (
	"os"
	"path/filepath"
	"testing"
)

// An archive written with -o appears whole under its name at Commit, and a run
// that dies before (its file closed without Commit or Abort, as by SIGKILL)
// leaves nothing in the directory: killed saves left a .NAME.tmp-* each.
func TestOutputFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.tar")
	o, err := createOutput("save", p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteString("partial"); err != nil {
		t.Fatal(err)
	}
	o.File.Close() // the process dies here
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a run killed before Commit left %v", ents)
	}

	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err = createOutput("save", p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("before Commit, %s = %q, want the old file", p, b)
	}
	if _, err := o.WriteString("archive"); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	o.Abort() // a no-op after Commit
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "archive" {
		t.Errorf("after Commit, %s = %q, %v", p, b, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode after Commit: %v, %v; want 0644", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("after Commit the dir holds %v, want out.tar alone", ents)
	}
}
