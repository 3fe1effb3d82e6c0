package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
)

// TestMountOpensDevNull: Mount makes go-fuse's splice package open its /dev/null
// at once. It opened it at its first use, and panicked if that failed: a mount
// that had served no READ yet when it reached the open-file limit died at its
// first READ (session 20's soak review). Checked in a fresh process, as the
// package opens it once per process.
func TestMountOpensDevNull(t *testing.T) {
	testenv.RequireFUSE(t)
	if os.Getenv("LAYERFS_DEVNULL_HELPER") == "1" {
		before := devNullFds(t)
		mountUnion(t, cow.FormatOCI)
		if after := devNullFds(t); after != before+1 {
			t.Fatalf("fds of /dev/null: %d before Mount, %d after; want one more", before, after)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMountOpensDevNull$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LAYERFS_DEVNULL_HELPER=1")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
		t.Errorf("in a fresh process: %v\n%s", err, out)
	}
}

func devNullFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); l == "/dev/null" {
			n++
		}
	}
	return n
}
