package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzApply: whatever the bytes, Apply never writes or creates anything outside its
// dir. (It may fail; it must not escape.)
func FuzzApply(f *testing.F) {
	for _, ents := range [][]tarEntry{
		{dir("a"), reg("a/b", "x"), symlink("a/l", "../.."), hardlink("a/h", "a/b")},
		{symlink("link", "../outside"), reg("link/file", "pwned")},
		{symlink("s", "../outside/file"), reg("s", "pwned")},
		{reg("../outside/file", "pwned")},
		{hardlink("h", "../outside/file")},
		{symlink("d", "."), dir("d/d"), reg("d/d/f", "x")},
		{reg(".wh.x", ""), dir("o"), reg("o/.wh..wh..opq", "")},
		{{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}}, symlink("q", "/"), hardlink("r", "q")},
	} {
		f.Add(buildTar(f, ents...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 || declaresHuge(b) {
			t.Skip()
		}
		base := t.TempDir()
		root := filepath.Join(base, "root")
		outside := filepath.Join(base, "outside")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(outside, "file"), "host", 0o644)
		Apply(context.Background(), root, bytes.NewReader(b))
		if got, err := os.ReadFile(filepath.Join(outside, "file")); err != nil || string(got) != "host" {
			t.Fatalf("host file changed: %q, %v", got, err)
		}
		assertOnly(t, base, "outside", "root")
		assertOnly(t, outside, "file")
		if _, err := os.Lstat(filepath.Join(filepath.Dir(base), "pwned")); err == nil {
			t.Fatalf("created a file beside the test dir")
		}
		removeAll(root) // read-only dirs from the tar must not fail the cleanup
	})
}

// declaresHuge reports whether a tar declares entries too big for a fuzz run (a tiny
// sparse entry can claim terabytes of holes).
func declaresHuge(b []byte) bool {
	tr := tar.NewReader(bytes.NewReader(b))
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF || err != nil {
			return false
		}
		total += h.Size
		if total > 16<<20 {
			return true
		}
	}
}
