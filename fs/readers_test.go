package fs

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/internal/testenv"
)

// gateNode is a file whose GETATTR waits for gate (slow) or opens it (fast).
type gateNode struct {
	fusefs.Inode
	slow    bool
	entered chan struct{}
	gate    chan struct{}
	once    *sync.Once
	gaveUp  atomic.Bool
}

func (n *gateNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o644
	if !n.slow {
		n.once.Do(func() { close(n.gate) })
		return 0
	}
	n.once.Do(func() { close(n.entered) })
	select {
	case <-n.gate:
		return 0
	case <-time.After(20 * time.Second):
		n.gaveUp.Store(true)
		return syscall.EIO
	}
}

// mountLazy mounts root at a new dir with readerSpawnDelay, as layerfs mounts,
// and no entry, attribute or negative caching, so that every stat sends a
// request; it unmounts in Cleanup.
func mountLazy(t *testing.T, root fusefs.InodeEmbedder, o *fusefs.Options) string {
	t.Helper()
	zero := time.Duration(0)
	o.EntryTimeout, o.AttrTimeout, o.NegativeTimeout = &zero, &zero, &zero
	o.MountOptions = fuse.MountOptions{FsName: "layerfs-test", ReaderSpawnDelay: readerSpawnDelay}
	mnt := t.TempDir()
	srv, err := fusefs.Mount(mnt, root, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
	})
	return mnt
}

// TestSlowRequestLetsOthersThrough: with readerSpawnDelay, go-fuse handles a
// request on the goroutine that read it and keeps no spare reader. A request
// that waits for a later one to be answered (here a GETATTR of a/slow held until
// one of b/fast comes in; in layerfs, any request slower than the delay holds up
// the next) must not wait for good: another reader starts after the delay.
func TestSlowRequestLetsOthersThrough(t *testing.T) {
	testenv.RequireFUSE(t)
	gate := make(chan struct{})
	slow := &gateNode{slow: true, entered: make(chan struct{}), gate: gate, once: new(sync.Once)}
	fast := &gateNode{gate: gate, once: new(sync.Once)}
	root := &fusefs.Inode{}
	mnt := mountLazy(t, root, &fusefs.Options{
		OnAdd: func(ctx context.Context) {
			a := root.NewPersistentInode(ctx, &fusefs.Inode{}, fusefs.StableAttr{Mode: fuse.S_IFDIR})
			b := root.NewPersistentInode(ctx, &fusefs.Inode{}, fusefs.StableAttr{Mode: fuse.S_IFDIR})
			root.AddChild("a", a, false)
			root.AddChild("b", b, false)
			a.AddChild("slow", a.NewPersistentInode(ctx, slow, fusefs.StableAttr{Mode: fuse.S_IFREG}), false)
			b.AddChild("fast", b.NewPersistentInode(ctx, fast, fusefs.StableAttr{Mode: fuse.S_IFREG}), false)
		},
	})
	// Look the dirs up first, so that the stats below each send one request.
	for _, d := range []string{"a", "b"} {
		if _, err := os.Stat(filepath.Join(mnt, d)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := os.Stat(filepath.Join(mnt, "a", "slow"))
		done <- err
	}()
	<-slow.entered
	if _, err := os.Stat(filepath.Join(mnt, "b", "fast")); err != nil {
		t.Fatalf("stat b/fast while a/slow is handled: %v", err)
	}
	err := <-done
	if slow.gaveUp.Load() {
		t.Fatal("a/slow's GETATTR waited 20 s for b/fast's: no reader took that request")
	}
	if err != nil {
		t.Fatalf("stat a/slow: %v", err)
	}
}

// forgetRoot looks up "once" as a slowForget node and "gate" as a gateNode.
type forgetRoot struct {
	fusefs.Inode
	slow *slowForget
	gate *gateNode
}

func (r *forgetRoot) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	switch name {
	case "once":
		out.Mode = fuse.S_IFREG | 0o644
		return r.NewInode(ctx, r.slow, fusefs.StableAttr{Mode: fuse.S_IFREG}), 0
	case "gate":
		out.Mode = fuse.S_IFREG | 0o644
		return r.NewInode(ctx, r.gate, fusefs.StableAttr{Mode: fuse.S_IFREG}), 0
	}
	return nil, syscall.ENOENT
}

// slowForget is a node whose forget waits for gate.
type slowForget struct {
	fusefs.Inode
	entered chan struct{}
	gate    chan struct{}
	gaveUp  atomic.Bool
}

func (n *slowForget) OnForget() {
	close(n.entered)
	select {
	case <-n.gate:
	case <-time.After(20 * time.Second):
		n.gaveUp.Store(true)
	}
}

// TestSlowForgetLetsOthersThrough is TestSlowRequestLetsOthersThrough for a
// FORGET, which go-fuse never starts a reader for: one that takes long must
// not hold up the requests after it either.
func TestSlowForgetLetsOthersThrough(t *testing.T) {
	testenv.RequireFUSE(t)
	gate := make(chan struct{})
	root := &forgetRoot{
		slow: &slowForget{entered: make(chan struct{}), gate: gate},
		gate: &gateNode{gate: gate, once: new(sync.Once)},
	}
	mnt := mountLazy(t, root, &fusefs.Options{})
	once := filepath.Join(mnt, "once")
	if _, err := os.Stat(once); err != nil {
		t.Fatal(err)
	}
	// The kernel drops the entry and, unused, its inode: a FORGET that
	// comes alone, so that no request queued beside it starts a reader.
	// First the readers settle: one that answered a request while another
	// waited exits once back, and until then it would read the FORGET's
	// successor.
	time.Sleep(50 * time.Millisecond)
	if errno := root.NotifyEntry("once"); errno != 0 {
		t.Fatalf("NotifyEntry(once): %v", errno)
	}
	select {
	case <-root.slow.entered:
	case <-time.After(10 * time.Second):
		t.Skip("the kernel sent no FORGET for the dropped node")
	}
	if _, err := os.Stat(filepath.Join(mnt, "gate")); err != nil {
		t.Fatalf("stat gate while a FORGET is handled: %v", err)
	}
	if root.slow.gaveUp.Load() {
		t.Fatal("the FORGET waited 20 s for a later request: no reader took it")
	}
}
