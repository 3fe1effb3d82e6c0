package fs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// TestReadOnlyOpenTruncates: open(O_RDONLY|O_TRUNC) empties the file and
// succeeds, as on a local filesystem and kernel overlayfs (Linux truncates
// when the caller may write). In passthrough mode it failed with EINVAL after
// the copy-up had already emptied a lower file (found with stress-ng --open).
func TestReadOnlyOpenTruncates(t *testing.T) {
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
			lower := tree(t, map[string]string{"low": "lower data\n"})
			u := mountUnionMode(t, cow.FormatOCI, pt, lower)
			p := func(s string) string { return filepath.Join(u.mnt, s) }
			must(t, os.WriteFile(p("up"), []byte("upper data\n"), 0o644))
			for _, name := range []string{"low", "up"} {
				fd, err := unix.Open(p(name), unix.O_RDONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatalf("open %s O_RDONLY|O_TRUNC: %v", name, err)
				}
				var st unix.Stat_t
				err = unix.Fstat(fd, &st)
				unix.Close(fd)
				if err != nil || st.Size != 0 {
					t.Errorf("%s after open O_RDONLY|O_TRUNC: fstat size %d, %v; want 0", name, st.Size, err)
				}
				if got := readFile(t, p(name)); got != "" {
					t.Errorf("%s through the mount = %q, want empty", name, got)
				}
			}
			if got := readFile(t, filepath.Join(lower, "low")); got != "lower data\n" {
				t.Errorf("the lower file changed: %q", got)
			}
		})
	}
}
