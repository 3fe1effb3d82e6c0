package fs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestReadOnlyTruncRunningProgram: open(O_RDONLY|O_TRUNC) of a program that
// runs is refused with ETXTBSY and leaves it whole, as on a local filesystem
// and kernel overlayfs, in a lower layer, in the upper dir and with its name
// gone. In passthrough mode the server emptied it first (the kernel asks for
// write access only after such an OPEN), and the program died of SIGBUS.
func TestReadOnlyTruncRunningProgram(t *testing.T) {
	sleep, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip("no /bin/sleep")
	}
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
			lower := t.TempDir()
			must(t, os.WriteFile(filepath.Join(lower, "low"), sleep, 0o755))
			u := mountUnionMode(t, cow.FormatOCI, pt, lower)
			p := func(s string) string { return filepath.Join(u.mnt, s) }
			must(t, os.WriteFile(p("up"), sleep, 0o755))
			for _, name := range []string{"low", "up", "gone"} {
				path := p(name)
				if name == "gone" {
					must(t, os.WriteFile(path, sleep, 0o755))
				}
				// Exec'd by sh, not by this process: a fork of the process that
				// serves the mount, exec'ing a path in it, waits for good if a GC
				// stops the world first (docs/NOTES.md; hung a -race run).
				cmd := exec.Command("/bin/sh", "-c", `exec "$0" 30`, path)
				must(t, cmd.Start())
				t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
				// The program runs once its exe link names it.
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
					if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); strings.HasPrefix(l, path) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s did not start", name)
					}
				}
				target := path
				if name == "gone" {
					must(t, os.Remove(path))
					target = fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)
				}
				fd, err := unix.Open(target, unix.O_RDONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
				if err == nil {
					unix.Close(fd)
				}
				if !errors.Is(err, unix.ETXTBSY) {
					t.Errorf("open %s O_RDONLY|O_TRUNC while it runs: %v, want ETXTBSY", name, err)
				}
				var st unix.Stat_t
				if err := unix.Stat(target, &st); err != nil || st.Size != int64(len(sleep)) {
					t.Errorf("%s after the refused open: size %d, %v; want %d", name, st.Size, err, len(sleep))
				}
				cmd.Process.Kill()
				if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
					t.Errorf("%s: the program ended by itself: %v (SIGBUS: its file was emptied)", name, err)
				}
			}
		})
	}
}
