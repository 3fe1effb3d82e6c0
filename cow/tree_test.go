package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// node is what the tree comparisons look at for one path.
type node struct {
	Type   string
	Mode   uint32
	UID    uint32
	GID    uint32
	Size   int64
	Sum    string // sha256 of regular file content
	Link   string
	Rdev   uint64
	Xattrs string // sorted name=value list, overlay xattrs left out
	Mtime  int64  // ns; 0 when not compared
	Group  string // smallest path of its hardlink group, "" alone
}

type snapOpts struct {
	noDirMtime bool // skip dir mtimes (e.g. dirs changed by the test itself)
	noMtime    bool
}

// snapshot walks root (without following symlinks) into path -> node.
func snapshot(t testing.TB, root string, o snapOpts) map[string]node {
	t.Helper()
	out := map[string]node{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n.Type = "dir"
			if o.noDirMtime {
				n.Mtime = 0
			}
		case unix.S_IFREG:
			n.Type = "file"
			n.Size = st.Size
			var b []byte
			if st.Size > 0 { // empty markers may be mode 0: unreadable unprivileged
				if b, err = os.ReadFile(p); err != nil {
					return err
				}
			}
			s := sha256.Sum256(b)
			n.Sum = hex.EncodeToString(s[:8])
		case unix.S_IFLNK:
			n.Type = "symlink"
			n.Link, _ = os.Readlink(p)
		case unix.S_IFCHR:
			n.Type, n.Rdev = "char", st.Rdev
		case unix.S_IFBLK:
			n.Type, n.Rdev = "block", st.Rdev
		case unix.S_IFIFO:
			n.Type = "fifo"
		default:
			n.Type = "other"
		}
		if o.noMtime {
			n.Mtime = 0
		}
		if n.Type != "dir" && st.Nlink > 1 {
			inodes[st.Ino] = append(inodes[st.Ino], rel)
		}
		n.Xattrs = xattrString(t, p)
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	for _, paths := range inodes {
		if len(paths) < 2 {
			continue
		}
		sort.Strings(paths)
		for _, p := range paths {
			n := out[p]
			n.Group = paths[0]
			out[p] = n
		}
	}
	return out
}

func xattrString(t testing.TB, p string) string {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return ""
	}
	buf := make([]byte, sz)
	sz, _ = unix.Llistxattr(p, buf)
	var parts []string
	for _, n := range strings.Split(string(buf[:sz]), "\x00") {
		if n == "" || IsPrivateXattr(n) {
			continue
		}
		vs, _ := unix.Lgetxattr(p, n, nil)
		v := make([]byte, vs)
		vs, _ = unix.Lgetxattr(p, n, v)
		parts = append(parts, fmt.Sprintf("%s=%q", n, v[:vs]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// compareTrees reports every difference between two snapshots.
func compareTrees(t testing.TB, what string, got, want map[string]node) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("missing %s (%+v)", p, w))
			continue
		}
		if g != w {
			diffs = append(diffs, fmt.Sprintf("%s:\n   got %+v\n  want %+v", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %s (%+v)", p, g))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 30 {
			diffs = append(diffs[:30], "...")
		}
		t.Errorf("%s: trees differ:\n%s", what, strings.Join(diffs, "\n"))
	}
}

// tarEntry is one entry for buildTar.
type tarEntry struct {
	hdr  tar.Header
	data string
}

func buildTar(t testing.TB, ents ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.hdr
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.data))
		}
		global := h.Typeflag == tar.TypeXGlobalHeader // only its records may be set
		if !global && h.Mode == 0 && h.Typeflag != tar.TypeLink {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.ModTime.IsZero() && !global {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("buildTar %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatalf("buildTar %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func reg(name, data string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name}, data: data}
}
func dir(name string) tarEntry { return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name}} }
func symlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
}
func hardlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

// applyBytes unpacks tar bytes into a fresh dir and returns it.
func applyBytes(t testing.TB, b []byte) string {
	t.Helper()
	d := filepath.Join(tempDir(t), "root")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return d
}

// readAll drains a Diff/Export stream, closing it.
func readAll(t testing.TB, rc io.ReadCloser) []byte {
	t.Helper()
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return b
}

// tarNames lists the entry names of a tar.
func tarNames(t testing.TB, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		s := h.Name
		if h.Typeflag == tar.TypeLink {
			s += " link=" + h.Linkname
		}
		names = append(names, s)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, p, data string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(data), mode))
	must(t, os.Chmod(p, mode))
}

func dirHdr(name string, mode int64) tar.Header {
	return tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}
}

// tempDir is t.TempDir that can also be removed unprivileged when the test left
// read-only dirs in it (unpacked layers).
func tempDir(t testing.TB) string {
	d := t.TempDir()
	t.Cleanup(func() { RemoveAll(d) })
	return d
}
