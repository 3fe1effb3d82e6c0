package mountcmd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/layerfs/layerfs/blobstore"
	"golang.org/x/sys/unix"
)

// TestRemoveFreshRoot: a root holding only the empty layout blobstore.Open makes
// is removed; one holding anything more, or whose store a writer holds a lease
// on, is kept.
func TestRemoveFreshRoot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, root string, s *blobstore.Store)
		removed bool
	}{
		{"empty layout", func(*testing.T, string, *blobstore.Store) {}, true},
		{"empty dirs too", func(t *testing.T, root string, _ *blobstore.Store) {
			must(t, os.MkdirAll(filepath.Join(root, "layers", ".locks"), 0o755))
		}, true},
		{"user file", func(t *testing.T, root string, _ *blobstore.Store) {
			must(t, os.WriteFile(filepath.Join(root, "notes.txt"), []byte("mine"), 0o644))
		}, false},
		{"blob", func(t *testing.T, root string, s *blobstore.Store) {
			must(t, os.WriteFile(filepath.Join(root, "store", "blobs", "sha256", "ab"), []byte("x"), 0o644))
		}, false},
		{"symlink", func(t *testing.T, root string, _ *blobstore.Store) {
			must(t, os.Symlink("/", filepath.Join(root, "l")))
		}, false},
		{"lease held", func(t *testing.T, _ string, s *blobstore.Store) {
			f, err := os.Open(filepath.Join(s.Dir(), ".layerfs", "gc.lock"))
			must(t, err)
			t.Cleanup(func() { f.Close() })
			must(t, unix.Flock(int(f.Fd()), unix.LOCK_SH))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			s, err := blobstore.Open(filepath.Join(root, "store"))
			must(t, err)
			tc.prepare(t, root, s)
			removeFreshRoot(root)
			if _, err := os.Lstat(root); (err != nil) != tc.removed {
				t.Errorf("removeFreshRoot(%s): root exists = %v, want %v", tc.name, err == nil, !tc.removed)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
