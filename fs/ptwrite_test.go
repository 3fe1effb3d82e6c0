package fs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
)

// TestPausePassthroughWriters: in passthrough mode a process writing through a
// file it holds open never reaches the server, so Pause stops it; Resume lets it go
// on. Without the stop, the file keeps growing during the pause.
func TestPausePassthroughWriters(t *testing.T) {
	u := mountUnionMode(t, cow.FormatOCI, true, t.TempDir())
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	log := filepath.Join(u.mnt, "log")
	cmd := exec.Command("sh", "-c", `exec 3>"$1"; while :; do echo record >&3; done`, "sh", log)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	size := func() int64 {
		fi, err := os.Stat(filepath.Join(u.upper, "log"))
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	deadline := time.Now().Add(5 * time.Second)
	for size() < 4096 {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	must(t, u.m.Pause(ctx))
	before := size()
	time.Sleep(100 * time.Millisecond)
	after := size()
	u.m.Resume()
	if after != before {
		t.Errorf("the file grew from %d to %d bytes during the pause", before, after)
	}
	deadline = time.Now().Add(5 * time.Second)
	for size() == after {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not go on after Resume")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
