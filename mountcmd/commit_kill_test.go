package mountcmd

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A mount server killed during a commit takes its pause with it: the commit, whose
// image is written and tagged by the time it resumes, succeeds (with a warning)
// instead of failing with the broken connection of the resume.
func TestCommitServerDiesBeforeResume(t *testing.T) {
	g, s, img := storeWithImage(t)
	w, err := newWorkContainer(g.root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.create(&workState{ImageID: img.ID, ManifestDigest: img.ManifestDigest}); err != nil {
		t.Fatal(err)
	}
	// The server: w's server lock and control socket. It grants the pause, then
	// dies with the resume request unanswered.
	lock, err := os.OpenFile(w.serverLock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
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
		r := bufio.NewReader(c)
		r.ReadBytes('\n') // pause
		c.Write([]byte("{\"ok\":true}\n"))
		r.ReadBytes('\n') // resume
		lock.Close()
		c.Close()
	}()

	o := &commitOptions{pause: true, compression: "gzip"}
	var stdout, stderr bytes.Buffer
	if err := runCommit(context.Background(), g, o, []string{"c1", "b:1"}, &stdout, &stderr); err != nil {
		t.Fatalf("runCommit() = %v, want nil", err)
	}
	got, err := s.Resolve("b:1")
	if err != nil {
		t.Fatalf("Resolve(b:1) after commit = %v", err)
	}
	if want := got.ID.String() + "\n"; stdout.String() != want {
		t.Errorf("commit printed %q, want %q", stdout.String(), want)
	}
}

// An rmi of the committed image before commit --rebase moves the container onto
// it (rev19-diff 1: both succeeded, the container left on a deleted image): the
// rebase fails and the container stays on its image.
func TestRebaseOntoRemovedImage(t *testing.T) {
	ctx := context.Background()
	g, s, img := storeWithImage(t)
	claimFor(t, g, "c1", img, nil)
	rebaseHook = func() {
		if _, err := s.Remove(ctx, "b:1", imageRemoveOptions(g)); err != nil {
			t.Errorf("rmi b:1 before the rebase = %v", err)
		}
	}
	t.Cleanup(func() { rebaseHook = nil })
	o := &commitOptions{rebase: true, compression: "gzip"}
	var stdout, stderr bytes.Buffer
	err := runCommit(ctx, g, o, []string{"c1", "b:1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "removed meanwhile") {
		t.Fatalf("commit --rebase onto a removed image = %v, want it refused", err)
	}
	w, err := newWorkContainer(g.root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := w.load()
	if err != nil || st.ImageID != img.ID {
		t.Fatalf("container after the refused rebase: image %v (%v), want %s", st.ImageID, err, img.ID)
	}
}
