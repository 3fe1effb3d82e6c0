package mountcmd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"github.com/opencontainers/go-digest"
)

// newTestContainer makes a working container over the given lowers, to be mounted at
// a fresh dir.
func newTestContainer(t *testing.T, lowers []string) (*globalOptions, *workContainer, *workState) {
	t.Helper()
	g := &globalOptions{root: t.TempDir()}
	w, err := newWorkContainer(g.root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	st := &workState{ImageID: digest.Digest("sha256:" + strings.Repeat("a", 64)), Lowers: lowers}
	if err := w.create(st); err != nil {
		t.Fatal(err)
	}
	st.Mountpoint = t.TempDir()
	if err := w.save(st); err != nil {
		t.Fatal(err)
	}
	return g, w, st
}

// serveInProcess runs serve for w in a goroutine, returning once the mount is live;
// the mount is stopped in t.Cleanup, with fusermount3 -u as the last resort.
func serveInProcess(t *testing.T, g *globalOptions, w *workContainer, st *workState) <-chan error {
	t.Helper()
	ready := make(chan error, 1)
	done := make(chan error, 1)
	finished := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- serve(ctx, g, w, func(err error) { ready <- err }); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
		}
		if isMountpoint(st.Mountpoint) {
			t.Errorf("mount left at %s", st.Mountpoint)
			clearDeadMount(st.Mountpoint, w.fsName())
		}
	})
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve: not ready after 30s")
	}
	return done
}

func TestServeControl(t *testing.T) {
	testenv.RequireFUSE(t)
	g, w, st := newTestContainer(t, nil)
	done := serveInProcess(t, g, w, st)
	ctx := context.Background()

	if got := w.status(st); got != statusMounted {
		t.Errorf("status() = %q, want %q", got, statusMounted)
	}
	fi, err := os.Stat(w.socketPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("control.sock mode = %v, want 0600", fi.Mode().Perm())
	}
	if err := os.WriteFile(filepath.Join(st.Mountpoint, "x"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(w.upperPath(st), "x")); err != nil || string(b) != "hi\n" {
		t.Errorf("upper/x = %q, %v; want \"hi\\n\"", b, err)
	}

	c, err := dialControl(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ss.Mountpoint != st.Mountpoint || ss.PID != os.Getpid() || ss.Paused {
		t.Errorf("Status() = %+v, want mountpoint %s, pid %d, not paused", ss, st.Mountpoint, os.Getpid())
	}
	if err := c.Resume(ctx); err == nil {
		t.Error("Resume() without a pause = nil, want an error")
	}
	if err := c.Pause(ctx); err != nil {
		t.Fatalf("Pause() = %v", err)
	}
	c2, err := dialControl(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Pause(ctx); err == nil {
		t.Error("second Pause() = nil, want already paused")
	}
	if ss, _ := c2.Status(ctx); ss == nil || !ss.Paused {
		t.Errorf("Status() while paused = %+v, want Paused", ss)
	}
	// Closing the pausing connection lifts the pause.
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss, err := c2.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ss.Paused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pause not lifted 5s after its client went away")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := c2.Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return 10s after stop")
	}
	if isMountpoint(st.Mountpoint) {
		t.Errorf("%s still mounted after stop", st.Mountpoint)
	}
	if w.serverAlive() {
		t.Error("serverAlive() after stop = true")
	}
	if _, err := dialControl(ctx, w); !errors.Is(err, errServerGone) {
		t.Errorf("dialControl() after stop = %v, want errServerGone", err)
	}
	cur, err := w.load()
	if err != nil {
		t.Fatal(err)
	}
	if cur.Mountpoint != "" {
		t.Errorf("state mountpoint after stop = %q, want empty", cur.Mountpoint)
	}
}

func TestServeRefusesSecondServer(t *testing.T) {
	testenv.RequireFUSE(t)
	g, w, st := newTestContainer(t, nil)
	serveInProcess(t, g, w, st)
	var got error
	err := serve(context.Background(), g, w, func(err error) { got = err })
	if err == nil || got == nil || !strings.Contains(err.Error(), "already served") {
		t.Errorf("second serve() = %v (ready %v), want already served", err, got)
	}
}

func TestServeLongRootPath(t *testing.T) {
	testenv.RequireFUSE(t)
	g, w, st := newTestContainer(t, nil)
	// Move the root deep enough that control.sock's path exceeds sun_path.
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(filepath.Dir(deep), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(g.root, deep); err != nil {
		t.Fatal(err)
	}
	g.root = deep
	w.root = deep
	serveInProcess(t, g, w, st)
	if len(w.socketPath()) < 108 {
		t.Fatalf("socket path %d bytes, want a long one", len(w.socketPath()))
	}
	c, err := dialControl(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(context.Background()); err != nil {
		t.Errorf("Status() = %v", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Errorf("Stop() = %v", err)
	}
}

func TestServeRebase(t *testing.T) {
	testenv.RequireFUSE(t)
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "a"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, w, st := newTestContainer(t, []string{lower})
	serveInProcess(t, g, w, st)
	ctx := context.Background()
	mp := st.Mountpoint
	if err := os.WriteFile(filepath.Join(mp, "b"), []byte("b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := dialControl(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	// What commit --rebase does: the old upper becomes a lower, a fresh upper on top.
	oldUpper := w.upperPath(st)
	if err := os.Mkdir(filepath.Join(w.Dir(), "upper-2"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A writer that arrives during the pause waits, and its write belongs after
	// the rebase: in the new upper, not in the old one commit is about to drop.
	wrote := make(chan error, 1)
	go func() { wrote <- os.WriteFile(filepath.Join(mp, "during"), []byte("d\n"), 0o644) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-wrote:
		t.Fatalf("write during pause returned (%v) before resume", err)
	default:
	}
	newID := digest.Digest("sha256:" + strings.Repeat("b", 64))
	req := RebaseRequest{Lowers: []string{oldUpper, lower}, Upper: "upper-2", ImageID: newID, ManifestDigest: newID, ImageRef: "committed:1"}
	if err := c.Rebase(ctx, req); err != nil {
		t.Fatalf("Rebase() = %v", err)
	}
	if ss, err := c.Status(ctx); err != nil || !ss.Paused {
		t.Errorf("Status() after a paused rebase = %+v, %v; want still paused", ss, err)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write during pause: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.Dir(), "upper-2", "during")); err != nil {
		t.Errorf("write held by the pause did not land in the new upper: %v", err)
	}
	if _, err := os.Stat(filepath.Join(oldUpper, "during")); err == nil {
		t.Error("write held by the pause landed in the old upper")
	}
	for _, name := range []string{"a", "b", "during"} {
		if _, err := os.Stat(filepath.Join(mp, name)); err != nil {
			t.Errorf("after rebase: stat %s: %v", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(mp, "c"), []byte("c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.Dir(), "upper-2", "c")); err != nil {
		t.Errorf("write after rebase did not land in the new upper: %v", err)
	}
	if _, err := os.Stat(filepath.Join(oldUpper, "c")); err == nil {
		t.Error("write after rebase landed in the old upper")
	}
	cur, err := w.load()
	if err != nil {
		t.Fatal(err)
	}
	if cur.Upper != "upper-2" || cur.ImageID != newID || cur.ImageRef != "committed:1" || len(cur.Lowers) != 2 || cur.Mountpoint != mp {
		t.Errorf("state after rebase = %+v, want upper-2, the new image, 2 lowers, still mounted", cur)
	}
}
