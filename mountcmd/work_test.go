package mountcmd

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestUnescapeMount(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/plain", "/plain"},
		{`/a\040b`, "/a b"},
		{`/tab\011x\012`, "/tab\tx\n"},
		{`/back\134slash`, `/back\slash`},
		{`/short\04`, `/short\04`},
		{`/notoct\089`, `/notoct\089`},
	} {
		if got := unescapeMount(tc.in); got != tc.want {
			t.Errorf("unescapeMount(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestContainerName(t *testing.T) {
	for _, name := range []string{"a", "busybox-working-container", "x_1.2-3"} {
		if _, err := newWorkContainer("/r", name); err != nil {
			t.Errorf("newWorkContainer(%q) = %v, want ok", name, err)
		}
	}
	for _, name := range []string{"", "-a", ".a", "a/b", "..", "a b", "é"} {
		if _, err := newWorkContainer("/r", name); !errors.Is(err, errInvalidName) {
			t.Errorf("newWorkContainer(%q) = %v, want errInvalidName", name, err)
		}
	}
}

func TestLockContainerExcludes(t *testing.T) {
	w, _ := newWorkContainer(t.TempDir(), "c")
	unlock, err := lockContainer(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tryLockContainer(w); ok || err != nil {
		t.Errorf("tryLockContainer() while held = %v, %v; want false, nil", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := lockContainer(ctx, w); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("lockContainer() while held = %v, want DeadlineExceeded", err)
	}
	got := make(chan struct{})
	go func() {
		u, err := lockContainer(context.Background(), w)
		if err == nil {
			u()
		}
		close(got)
	}()
	time.Sleep(20 * time.Millisecond)
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the lock after unlock")
	}
}

func TestStateRoundTrip(t *testing.T) {
	root := t.TempDir()
	w, _ := newWorkContainer(root, "c")
	if _, err := w.load(); !errors.Is(err, errNoSuchContainer) {
		t.Fatalf("load() of a missing container = %v, want errNoSuchContainer", err)
	}
	st := &workState{ImageID: "sha256:abc", ManifestDigest: "sha256:def", ImageRef: "busybox:latest", Lowers: []string{"/l2", "/l1"}}
	if err := w.create(st); err != nil {
		t.Fatal(err)
	}
	got, err := w.load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "c" || got.ImageRef != "busybox:latest" || got.Upper != "upper" || got.Created.IsZero() || len(got.Lowers) != 2 {
		t.Errorf("load() = %+v", got)
	}
	if got := w.upperPath(got); got != filepath.Join(root, "work", "c", "upper") {
		t.Errorf("upperPath() = %s", got)
	}
	if ws, err := listContainers(root); err != nil || len(ws) != 1 || ws[0].name != "c" {
		t.Errorf("listContainers() = %v, %v; want [c]", ws, err)
	}
	if got := w.status(got); got != statusUnmounted {
		t.Errorf("status() = %s, want %s", got, statusUnmounted)
	}
	if err := w.remove(); err != nil {
		t.Fatal(err)
	}
	if w.exists() {
		t.Error("exists() after remove = true")
	}
}
