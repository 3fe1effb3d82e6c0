package integration

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/internal/testenv"
)

// TestCompatDebugIntoClosedPipe: `layerfs --debug -o ... MNT | head -3` must not
// leave a server that can never exit and a mount that hangs every access (a
// review found both, two times in two: SIGPIPE killed the server while one of
// its threads waited on a request to its own mount). Whatever becomes of the
// mount, using it answers.
func TestCompatDebugIntoClosedPipe(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	d := t.TempDir()
	for _, s := range []string{"L", "U", "W", "M"} {
		if err := os.Mkdir(filepath.Join(d, s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "L", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(d, "M")
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	for i := 0; i < 3; i++ {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(layerfsBin, "--debug", "-o", "lowerdir="+filepath.Join(d, "L")+",upperdir="+filepath.Join(d, "U")+",workdir="+filepath.Join(d, "W"), mnt)
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		br := bufio.NewReader(pr)
		for range 3 {
			br.ReadString('\n')
		}
		pr.Close() // head -3
		// --debug serves in the foreground (fuse-overlayfs's -d): until the
		// mount is live, or the server gone.
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(readMounts(t), " "+mnt+" "); {
			select {
			case <-exited:
			case <-time.After(50 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
			}
			break
		}
		answered := make(chan error, 1)
		go func() {
			_, err := os.ReadFile(filepath.Join(mnt, "f"))
			answered <- err
		}()
		select {
		case <-answered:
		case <-time.After(20 * time.Second):
			t.Fatal("the mount hangs after its server's log went to a closed pipe")
		}
		// EBUSY while the server's start still holds its own mount open
		for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
			err := unix.Unmount(mnt, 0)
			if err == nil {
				break
			}
			if err != unix.EBUSY || time.Since(start) > 10*time.Second {
				t.Fatalf("umount %d: %v", i, err)
			}
		}
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("the server did not end with its mount")
		}
	}
}
