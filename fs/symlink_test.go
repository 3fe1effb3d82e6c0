package fs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// TestSymlinkReplacedWhileHeld holds a symlink inode (O_PATH) while its name is
// renamed over, then reads it: the kernel sends READLINK and GETATTR for an inode
// that has no name any more. A local filesystem answers both (the inode lives on);
// answering ESTALE made posixtest's OpenSymlinkRace flaky (an open that raced with
// the rename twice, the kernel's one retry included, failed with ESTALE).
func TestSymlinkReplacedWhileHeld(t *testing.T) {
	for _, mode := range []struct {
		name string
		pt   bool
	}{{"noopen", false}, {"passthrough", true}} {
		t.Run(mode.name, func(t *testing.T) {
			lower := tree(t, map[string]string{"lowlink": "->/lower/target", "file": "x"})
			u := mountUnionMode(t, cow.FormatOCI, mode.pt, lower)
			for _, tc := range []struct{ name, target string }{
				{"lowlink", "/lower/target"},
				{"uplink", "/upper/target"},
			} {
				p := filepath.Join(u.mnt, tc.name)
				if tc.name == "uplink" {
					must(t, os.Symlink(tc.target, p))
				}
				fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW, 0)
				if err != nil {
					t.Fatalf("Open(%s, O_PATH): %v", tc.name, err)
				}
				defer unix.Close(fd)
				tmp := p + ".tmp"
				must(t, os.WriteFile(tmp, []byte("replacement"), 0o644))
				must(t, os.Rename(tmp, p))
				buf := make([]byte, 256)
				n, err := unix.Readlinkat(fd, "", buf)
				if err != nil {
					t.Errorf("readlink of replaced %s: %v", tc.name, err)
				} else if string(buf[:n]) != tc.target {
					t.Errorf("readlink of replaced %s = %q, want %q", tc.name, buf[:n], tc.target)
				}
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
					t.Errorf("fstat of replaced %s: mode %o, %v; want a symlink", tc.name, st.Mode, err)
				}
				if got := readFile(t, p); got != "replacement" {
					t.Errorf("%s = %q after rename, want the replacement", tc.name, got)
				}
			}
		})
	}
}
