package fs

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestUnmountHeldByOtherNamespace: a process that unshared its mount namespace
// while the mount existed (unshare -m, a systemd unit with PrivateTmp) holds a
// copy of it. Unmount waited for that namespace to end, so `layerfs umount`
// failed after 30 s with the container still marked mounted (found by an upgrade
// review; fusermount3 -u of fuse-overlayfs returns at once). It now returns,
// the copy's connection aborted.
func TestUnmountHeldByOtherNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	u := mountUnion(t, cow.FormatOCI, tree(t, map[string]string{"f": "x"}))
	holder := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", "echo ready; exec sleep 60")
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Skipf("unshare: %v", err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(holder.Process.Pid) + "/mountinfo")
	if err != nil || !strings.Contains(string(b), " "+u.mnt+" ") {
		t.Fatalf("the holder's namespace has no copy of %s (%v)", u.mnt, err)
	}
	unmountWithin(t, u, "the namespace that holds a copy", nil)
	// The copy is dead, not served by a server that no longer owns the upper.
	if err := exec.Command("nsenter", "-t", strconv.Itoa(holder.Process.Pid), "-m", "cat", u.mnt+"/f").Run(); err == nil {
		t.Error("the other namespace's copy still reads after the unmount")
	}
}

// TestUnmountWaitsForBusy: an unmount that finds the mount busy for a moment
// (a file open in it, closed 0.6 s later, as a close the kernel finishes late
// on a loaded machine) tries again until it is free, instead of giving up
// after go-fuse's 0.3 s of retries: the caller then waited for the server for
// good (a CI run hung 30 minutes in a test's cleanup).
func TestUnmountWaitsForBusy(t *testing.T) {
	u := mountUnion(t, cow.FormatOverlay, tree(t, map[string]string{"f": "x\n"}))
	f, err := os.Open(filepath.Join(u.mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(600*time.Millisecond, func() { f.Close() })
	if err := u.m.Unmount(); err != nil {
		t.Fatalf("Unmount with a file open for 0.6 s more: %v", err)
	}
	u.m.Wait()
	u.m = nil
}

// TestUnmountWithBindCopy: a bind copy of the mount in this namespace (mount
// --bind of the mountpoint) holds the connection after the unmount, as a
// copy in another namespace does; Unmount waited for it for good (found by a
// code review: the check took any mount of the device for the unmounted one).
// The copy is cut off, as the other namespace's is.
func TestUnmountWithBindCopy(t *testing.T) {
	testenv.RequireRoot(t)
	u := mountUnion(t, cow.FormatOCI, tree(t, map[string]string{"f": "x"}))
	bind := t.TempDir()
	if err := unix.Mount(u.mnt, bind, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(bind, unix.MNT_DETACH) })
	unmountWithin(t, u, "the bind copy", func() { unix.Unmount(bind, unix.MNT_DETACH) })
	if _, err := os.ReadFile(filepath.Join(bind, "f")); err == nil {
		t.Error("the bind copy still reads after the unmount")
	}
}

// unmountWithin unmounts u's mount and waits for its server, failing if
// Unmount still waits after 15 s for what (then onTimeout, if set, lets go).
func unmountWithin(t *testing.T, u *union, what string, onTimeout func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- u.m.Unmount() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Unmount: %v", err)
		}
	case <-time.After(15 * time.Second):
		if onTimeout != nil {
			onTimeout()
		}
		t.Fatal("Unmount still waiting after 15 s for " + what)
	}
	u.m.Wait()
	u.m = nil
}
