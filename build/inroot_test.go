package build

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInRootHostile: paths an image's symlinks and ".." would send outside the
// root are held inside it, whatever the link says.
func TestInRootHostile(t *testing.T) {
	root, host := t.TempDir(), t.TempDir()
	links := map[string]string{
		"abs":      host,          // absolute, to a host dir
		"up":       "../../../..", // relative, climbing out
		"loop1":    "loop2",       // a loop
		"loop2":    "loop1",       //
		"dangling": "/made/by/us", // absolute and missing: created inside the root
		"file":     "/etc/passwd", // a file on the host
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	rfd, err := openRootDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rfd.Close()

	for _, p := range []string{"abs/x", "up/y", "dangling/z", "a/../../../w"} {
		d, err := mkdirAllInRoot(rfd, p)
		if err != nil {
			t.Errorf("mkdirAllInRoot(%q) = %v", p, err)
			continue
		}
		d.Close()
	}
	if _, err := mkdirAllInRoot(rfd, "loop1/x"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("mkdirAllInRoot(loop1/x) = %v, want ELOOP", err)
	}
	if f, err := mkfileInRoot(rfd, "abs/f"); err != nil {
		t.Errorf("mkfileInRoot(abs/f) = %v", err)
	} else {
		f.Close()
	}
	if f, err := openat2InRoot(rfd, "file", os.O_RDONLY); err == nil {
		f.Close()
		t.Errorf("opening a symlink to the host's /etc/passwd succeeded")
	}
	if ents, _ := os.ReadDir(host); len(ents) != 0 {
		t.Errorf("the host dir got %v", ents)
	}
	for _, want := range []string{host + "/x", host + "/f", "y", "made/by/us/z", "w"} {
		if _, err := os.Lstat(filepath.Join(root, want)); err != nil {
			t.Errorf("%s not made inside the root: %v", want, err)
		}
	}
}
