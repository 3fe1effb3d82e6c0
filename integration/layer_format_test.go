package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayerFormatRefill: layer dirs an older version unpacked (no format record)
// are unpacked again at the next mount, unless a working container was mounted
// on them: its upper holds inode numbers of their files (copy-up origins), which
// a new unpack hands to other files, so that two names read one file's data (a
// code review). gc then frees the replaced dir and counts it.
func TestLayerFormatRefill(t *testing.T) {
	importBusybox(t, "busybox")
	root := rootFor(t)
	layers := filepath.Join(root, "layers")
	mnt := t.TempDir()
	forget := func() { // what an older version left: no format records
		t.Helper()
		if err := os.RemoveAll(filepath.Join(layers, ".formats")); err != nil {
			t.Fatal(err)
		}
	}
	stale := func() int {
		ents, _ := os.ReadDir(layers)
		n := 0
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".stale-") {
				n++
			}
		}
		return n
	}
	mustRun(t, "mount", "--name", "c", "busybox", mnt)
	t.Cleanup(func() { run(t, "umount", "-f", mnt); run(t, "rm", "-f", "c", "d", "e") })
	if err := os.WriteFile(filepath.Join(mnt, "bin", "busybox"), []byte("copied up"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "umount", mnt)
	forget()

	// c was mounted on the layer: it stays as it is.
	mustRun(t, "mount", "--name", "d", "busybox", mnt)
	mustRun(t, "umount", mnt)
	if n := stale(); n != 0 {
		t.Errorf("a layer a container was mounted on was unpacked again (%d replaced dirs)", n)
	}

	// With no container on it, the next mount unpacks it again.
	mustRun(t, "rm", "c", "d")
	mustRun(t, "mount", "--name", "e", "busybox", mnt)
	mustRun(t, "umount", mnt)
	mustRun(t, "rm", "e")
	if n := stale(); n != 1 {
		t.Fatalf("after a mount with no container on the layer: %d replaced dirs, want 1", n)
	}
	if out := mustRun(t, "gc", "--dry-run"); strings.Contains(out, "space: 0B") {
		t.Errorf("gc --dry-run does not count the replaced dir:\n%s", out)
	}
	if out := mustRun(t, "gc"); strings.Contains(out, "space: 0B") {
		t.Errorf("gc does not count the replaced dir it removed:\n%s", out)
	}
	if n := stale(); n != 0 {
		t.Errorf("after gc: %d replaced dirs, want 0", n)
	}
}
