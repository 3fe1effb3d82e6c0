package treecmp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// build makes a small tree with one of everything.
func build(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "d/sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "d/f"), []byte("hello"), 0o644))
	must(os.Link(filepath.Join(dir, "d/f"), filepath.Join(dir, "link")))
	must(os.Symlink("d/f", filepath.Join(dir, "sym")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(unix.Setxattr(filepath.Join(dir, "d/f"), "user.k", []byte("v"), 0))
	// sparse: 8 MiB hole, then data
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	_, err = f.WriteAt([]byte("tail"), 8<<20)
	must(err)
	must(f.Close())
	ts := time.Unix(1600000000, 123456789)
	for _, p := range []string{"d/f", "sparse", "fifo", "d/sub", "d", "."} {
		must(os.Chtimes(filepath.Join(dir, p), ts, ts))
	}
	must(unix.Lutimes(filepath.Join(dir, "sym"), []unix.Timeval{unix.NsecToTimeval(ts.UnixNano()), unix.NsecToTimeval(ts.UnixNano())}))
}

func TestEqualTrees(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	build(t, a)
	build(t, b)
	// b's sparse file is dense: same content.
	data := make([]byte, 8<<20+4)
	copy(data[8<<20:], "tail")
	if err := os.WriteFile(filepath.Join(b, "sparse"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1600000000, 123456789)
	os.Chtimes(filepath.Join(b, "sparse"), ts, ts)
	Equal(t, a, b, Options{})
	ta, _ := Snapshot(a, Options{})
	if g := ta["link"].Group; len(g) != 2 || g[0] != "d/f" {
		t.Errorf("hardlink group = %v", g)
	}
}

func TestDiffFindsEachKind(t *testing.T) {
	tests := []struct {
		name   string
		change func(dir string) error
		want   string
	}{
		{"content", func(d string) error { return os.WriteFile(filepath.Join(d, "d/f"), []byte("hellO"), 0o644) }, "content hash"},
		{"size", func(d string) error { return os.Truncate(filepath.Join(d, "sparse"), 9<<20) }, "size"},
		{"mode", func(d string) error { return os.Chmod(filepath.Join(d, "d/f"), 0o600) }, "mode"},
		{"owner", func(d string) error { return os.Lchown(filepath.Join(d, "sym"), 1, 2) }, "owner"},
		{"link", func(d string) error {
			os.Remove(filepath.Join(d, "sym"))
			return os.Symlink("d/g", filepath.Join(d, "sym"))
		}, "link"},
		{"xattr", func(d string) error { return unix.Setxattr(filepath.Join(d, "d/f"), "user.k", []byte("w"), 0) }, "xattrs"},
		{"hardlink", func(d string) error {
			os.Remove(filepath.Join(d, "link"))
			return os.WriteFile(filepath.Join(d, "link"), []byte("hello"), 0o644)
		}, "hardlink group"},
		{"type", func(d string) error {
			os.Remove(filepath.Join(d, "fifo"))
			return os.Mkdir(filepath.Join(d, "fifo"), 0o600)
		}, "type"},
		{"missing", func(d string) error { return os.Remove(filepath.Join(d, "d/sub")) }, "missing"},
		{"mtime", func(d string) error { return os.Chtimes(filepath.Join(d, "sparse"), time.Now(), time.Now()) }, "mtime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "owner" && os.Geteuid() != 0 {
				t.Skip("needs root")
			}
			a, b := t.TempDir(), t.TempDir()
			build(t, a)
			build(t, b)
			if err := tt.change(b); err != nil {
				t.Fatal(err)
			}
			ta, _ := Snapshot(a, Options{NoDirMtime: true})
			tb, _ := Snapshot(b, Options{NoDirMtime: true})
			d := Diff(ta, tb, Options{NoDirMtime: true})
			if len(d) == 0 || !strings.Contains(strings.Join(d, "\n"), tt.want) {
				t.Errorf("Diff after %s = %q, want a %q line", tt.name, d, tt.want)
			}
		})
	}
}

func TestSkip(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	build(t, a)
	build(t, b)
	os.WriteFile(filepath.Join(b, "d/sub/extra"), nil, 0o644)
	o := Options{Skip: func(rel string) bool { return rel == "d/sub" }, NoDirMtime: true}
	Equal(t, a, b, o)
}
