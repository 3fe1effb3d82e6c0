package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// TestEnsureRefillsOlderFormat: a layer dir an older version unpacked (no format
// record: an mtime after 2262 read back as 1901 there) was reused for ever, so
// the store kept serving, exporting and committing the wrong unpack. Ensure now
// unpacks it again at the same path; a mount holding the old dir keeps it, until
// Prune finds nobody using it.
func TestEnsureRefillsOlderFormat(t *testing.T) {
	c := &LayerCache{Dir: filepath.Join(tempDir(t), "layers")}
	d, future, open, opens := futureLayer(t)
	p, err := c.Ensure(context.Background(), d, open)
	if err != nil {
		t.Fatal(err)
	}
	// What an older version left: a wrong time, and no format record.
	old := time.Unix(-2085978496, 0) // 1901-12-13
	must(t, os.Chtimes(filepath.Join(p, "f"), old, old))
	must(t, os.Remove(filepath.Join(c.Dir, formatsDir, d.Encoded())))
	// A mount made before the upgrade holds the old dir.
	held, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if held >= 0 {
			unix.Close(held)
		}
	}()

	p2, err := c.Ensure(context.Background(), d, open)
	if err != nil || p2 != p {
		t.Fatalf("Ensure again: %s, %v; want %s", p2, err, p)
	}
	if opens.Load() != 2 {
		t.Errorf("the layer was read %d times, want 2 (unpacked again)", opens.Load())
	}
	fi, err := os.Stat(filepath.Join(p, "f"))
	if err != nil || !fi.ModTime().Equal(future) {
		t.Errorf("f after Ensure: %v, %v; want the blob's %v", fi.ModTime(), err, future)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(held, "f", &st, 0); err != nil || st.Mtim.Sec != old.Unix() {
		t.Errorf("the held old dir: mtime %d, %v; want it untouched (%d)", st.Mtim.Sec, err, old.Unix())
	}
	if _, err := c.Ensure(context.Background(), d, open); err != nil || opens.Load() != 2 {
		t.Errorf("a current layer was unpacked again (%d reads, %v)", opens.Load(), err)
	}

	stale := func() []string {
		ents, _ := os.ReadDir(c.Dir)
		var out []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), stalePrefix) {
				out = append(out, e.Name())
			}
		}
		return out
	}
	keep := map[digest.Digest]bool{d: true}
	must(t, c.Prune(keep))
	if len(stale()) != 1 {
		t.Errorf("Prune while the old dir is held: stale dirs %v, want it kept", stale())
	}
	// /proc names resolved paths: a store reached through a symlink must find
	// the holder too.
	link := filepath.Join(tempDir(t), "layers-link")
	must(t, os.Symlink(c.Dir, link))
	must(t, (&LayerCache{Dir: link}).Prune(keep))
	if len(stale()) != 1 {
		t.Errorf("Prune through a symlink while the old dir is held: stale dirs %v, want it kept", stale())
	}
	unix.Close(held)
	held = -1
	must(t, c.Prune(keep))
	if len(stale()) != 0 {
		t.Errorf("Prune after the old dir was let go: stale dirs %v, want none", stale())
	}
	if !c.current(d.Encoded()) || !isDir(p) {
		t.Error("Prune dropped the current layer or its format record")
	}
	must(t, c.Prune(nil))
	if _, err := os.Stat(filepath.Join(c.Dir, formatsDir, d.Encoded())); !os.IsNotExist(err) {
		t.Errorf("the format record of a pruned layer: %v, want it gone", err)
	}
}

// TestEnsureKeepsPinnedOlderFormat: a layer dir a working container was mounted
// on stays as an older format made it: the container's upper holds inode numbers
// of its files (copy-up origins), which a new unpack would give to other files.
func TestEnsureKeepsPinnedOlderFormat(t *testing.T) {
	b := buildTar(t, reg("f", "x"))
	d := digest.FromBytes(b)
	var opens atomic.Int32
	open := func() (io.ReadCloser, error) {
		opens.Add(1)
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	dir := filepath.Join(tempDir(t), "layers")
	asked := 0
	c := &LayerCache{Dir: dir, Pinned: func(got digest.Digest) bool { asked++; return got == d }}
	if _, err := c.Ensure(context.Background(), d, open); err != nil {
		t.Fatal(err)
	}
	if asked != 0 {
		t.Errorf("Pinned asked %d times for a layer that was missing, want 0", asked)
	}
	must(t, os.Remove(filepath.Join(dir, formatsDir, d.Encoded())))
	if _, err := c.Ensure(context.Background(), d, open); err != nil {
		t.Fatal(err)
	}
	if opens.Load() != 1 {
		t.Errorf("a pinned layer of an older format was unpacked again (%d reads)", opens.Load())
	}
	c.Pinned = nil
	if _, err := c.Ensure(context.Background(), d, open); err != nil || opens.Load() != 2 {
		t.Errorf("an unpinned layer of an older format: %d reads, %v; want it unpacked again", opens.Load(), err)
	}
}

// TestEnsureRefillsAfterDowngrade: a binary older than the format records
// removed a layer dir (its gc) and left the record, then unpacked the layer
// again its own, wrong way; the record, naming only the format, vouched for
// that dir after the upgrade back (review rev23-upg: a file of 2300 read as
// 1901). It names the dir too now, and Prune drops records of no dir.
func TestEnsureRefillsAfterDowngrade(t *testing.T) {
	c := &LayerCache{Dir: filepath.Join(tempDir(t), "layers")}
	d, future, open, opens := futureLayer(t)
	p, err := c.Ensure(context.Background(), d, open)
	if err != nil {
		t.Fatal(err)
	}
	// The old binary's gc, then its unpack: the record stays.
	must(t, RemoveAll(p))
	tmp := filepath.Join(c.Dir, ".tmp-old")
	must(t, os.Mkdir(tmp, 0o755))
	must(t, os.WriteFile(filepath.Join(tmp, "f"), []byte("future"), 0o644))
	old := time.Unix(-2085978496, 0) // 1901-12-13
	must(t, os.Chtimes(filepath.Join(tmp, "f"), old, old))
	must(t, os.Rename(tmp, p))

	if _, err := c.Ensure(context.Background(), d, open); err != nil {
		t.Fatal(err)
	}
	if opens.Load() != 2 {
		t.Errorf("the layer was read %d times, want 2 (unpacked again)", opens.Load())
	}
	if fi, err := os.Stat(filepath.Join(p, "f")); err != nil || !fi.ModTime().Equal(future) {
		t.Errorf("f after Ensure: %v, %v; want the blob's %v", fi.ModTime(), err, future)
	}
	if _, err := c.Ensure(context.Background(), d, open); err != nil || opens.Load() != 2 {
		t.Errorf("a current layer was unpacked again (%d reads, %v)", opens.Load(), err)
	}
	// A record whose dir is gone goes at the next Prune, even of kept layers.
	must(t, RemoveAll(p))
	must(t, c.Prune(map[digest.Digest]bool{d: true}))
	if _, err := os.Stat(filepath.Join(c.Dir, formatsDir, d.Encoded())); !os.IsNotExist(err) {
		t.Errorf("the record of a layer dir that is gone: %v, want it removed", err)
	}
}

// futureLayer is a layer of one file f dated 2286 (a time older unpacks got
// wrong): its diffID, that time, an open for Ensure, and how often it was read.
func futureLayer(t *testing.T) (digest.Digest, time.Time, func() (io.ReadCloser, error), *atomic.Int32) {
	future := time.Unix(10000000000, 0)
	e := reg("f", "future")
	e.hdr.ModTime = future
	e.hdr.Format = tar.FormatPAX
	b := buildTar(t, e)
	opens := new(atomic.Int32)
	open := func() (io.ReadCloser, error) {
		opens.Add(1)
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return digest.FromBytes(b), future, open, opens
}
