package mountcmd

import (
	"bufio"
	"context"
	"os"
	"testing"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// A server killed just before umount (kill -9 and umount at once: the process is
// still exiting, a big write in flight slows it) is alive when umount looks and dies
// while it asks it to stop, leaving its mount behind. umount clears that mount, as
// it clears any a dead server left; it used to fail with the broken connection.
func TestUmountServerDiesDuringStop(t *testing.T) {
	testenv.RequireFUSE(t)
	g, w, st := newTestContainer(t, nil)
	// The server: w's server lock, a FUSE mount named as w's, its control socket.
	lock, err := os.OpenFile(w.serverLock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	srv, err := fusefs.Mount(st.Mountpoint, &fusefs.Inode{}, &fusefs.Options{
		MountOptions: fuse.MountOptions{FsName: w.fsName(), Name: "layerfs"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if isMountpoint(st.Mountpoint) {
			srv.Unmount()
		}
	})
	l, err := listenControl(w)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		bufio.NewReader(c).ReadBytes('\n') // the stop request
		lock.Close()                       // killed: its lock goes, its mount stays
		c.Close()
	}()

	if err := umountOne(context.Background(), g, w.name, false); err != nil {
		t.Fatalf("umountOne() = %v, want nil", err)
	}
	if isOurMount(st.Mountpoint, w.fsName()) {
		t.Errorf("mount of %s still at %s", w.name, st.Mountpoint)
	}
	if got, err := w.load(); err != nil || got.Mountpoint != "" {
		t.Errorf("state after umount = %+v, %v; want no mountpoint", got, err)
	}
}
