package fs

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// TestMountReadahead: as root, the mount's bdi reads ahead readaheadKB, not the
// kernel's 128 KiB default, so a sequential read costs a READ per readaheadKB.
func TestMountReadahead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may set a bdi's readahead")
	}
	u := mountUnion(t, cow.FormatOverlay, tree(t, map[string]string{"f": "x"}))
	var st unix.Stat_t
	if err := unix.Stat(u.mnt, &st); err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if unix.Access(p, unix.W_OK) != nil {
		t.Skipf("%s is not writable here (read-only /sys?)", p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), fmt.Sprint(readaheadKB); got != want {
		t.Errorf("%s = %s, want %s", p, got, want)
	}
}
