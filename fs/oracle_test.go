package fs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// The union semantics suite: one script of operations, run through kernel overlayfs
// (the oracle) and through layerfs over identical lowers; the merged trees must match.

var oracleEpoch = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// buildOracleLowers writes the two lowers (top first) in the overlay encoding, which
// both kernel overlayfs and layerfs read.
func buildOracleLowers(t *testing.T) []string {
	t.Helper()
	l1 := t.TempDir()
	l2 := t.TempDir()
	w := func(root, p, c string) {
		full := filepath.Join(root, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, []byte(c), 0o644))
	}
	// bottom layer
	w(l2, "a/file1", "file1")
	w(l2, "a/keep", "keep")
	w(l2, "d1/x", "x")
	w(l2, "d1/sub/y", "y")
	w(l2, "f2", "f2")
	w(l2, "d2/z", "z")
	w(l2, "ren/src/p", "p")
	w(l2, "ren/src/q/r", "r")
	w(l2, "hl/a", "hard")
	must(t, os.Link(filepath.Join(l2, "hl/a"), filepath.Join(l2, "hl/b")))
	w(l2, "op/o1", "o1")
	w(l2, "op/o2", "o2")
	w(l2, "x/attr", "attr")
	must(t, unix.Setxattr(filepath.Join(l2, "x/attr"), "user.lower", []byte("1"), 0))
	must(t, unix.Setxattr(filepath.Join(l2, "x/attr"), "user.rm", []byte("2"), 0))
	w(l2, "chm", "chm")
	must(t, os.Symlink("a/file1", filepath.Join(l2, "sym")))
	w(l2, "wh/gone", "gone")
	w(l2, "wh/stays", "stays")
	w(l2, "opq/hidden", "hidden")
	w(l2, "mv/file", "mv")
	w(l2, "cm/sub/f", "chmod me") // copy-up of a file and its parents keeps their dir times
	w(l2, "wr/sub/f", "write me")
	// top layer
	w(l1, "a/file3", "file3")
	must(t, os.MkdirAll(filepath.Join(l1, "wh"), 0o755))
	must(t, unix.Mknod(filepath.Join(l1, "wh/gone"), unix.S_IFCHR, 0))
	w(l1, "opq/shown", "shown")
	must(t, unix.Setxattr(filepath.Join(l1, "opq"), cow.OverlayOpaqueXattr, []byte("y"), 0))
	w(l1, "ren/src/extra", "extra")
	for _, root := range []string{l1, l2} {
		must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			ts := []unix.Timespec{unix.NsecToTimespec(oracleEpoch.UnixNano()), unix.NsecToTimespec(oracleEpoch.UnixNano())}
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		}))
	}
	return []string{l1, l2}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// renameOrMove renames; where the kernel refuses a directory rename with EXDEV it
// falls back to a copy and delete as mv(1) does. strict makes EXDEV a failure.
func renameOrMove(t *testing.T, root, a, b string, strict bool) {
	t.Helper()
	err := os.Rename(filepath.Join(root, a), filepath.Join(root, b))
	if errors.Is(err, unix.EXDEV) && !strict {
		out, err := exec.Command("cp", "-a", filepath.Join(root, a), filepath.Join(root, b)).CombinedOutput()
		if err != nil {
			t.Fatalf("cp -a: %v: %s", err, out)
		}
		must(t, os.RemoveAll(filepath.Join(root, a)))
		return
	}
	if err != nil {
		t.Fatalf("rename %s %s: %v", a, b, err)
	}
}

// unionScript is the suite of operations, applied to a merged root.
func unionScript(t *testing.T, root string, strict bool) {
	p := func(s string) string { return filepath.Join(root, s) }
	must(t, os.Remove(p("a/file1")))
	must(t, os.RemoveAll(p("d1")))
	must(t, os.WriteFile(p("d1"), []byte("now a file"), 0o644))
	must(t, os.Remove(p("f2")))
	must(t, os.Mkdir(p("f2"), 0o755))
	must(t, os.WriteFile(p("f2/inner"), []byte("inner"), 0o644))
	must(t, os.RemoveAll(p("d2")))
	must(t, os.WriteFile(p("d2"), []byte("file"), 0o644))
	must(t, os.Remove(p("d2")))
	must(t, os.Mkdir(p("d2"), 0o750))
	must(t, os.WriteFile(p("d2/again"), []byte("again"), 0o600))
	renameOrMove(t, root, "ren/src", "ren/dst", strict)
	renameOrMove(t, root, "mv", "moved", strict)
	must(t, os.Rename(p("a/keep"), p("a/kept")))
	f, err := os.OpenFile(p("hl/a"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(" more")
	must(t, err)
	must(t, f.Close())
	must(t, os.Link(p("hl/a"), p("hl/c")))
	must(t, os.RemoveAll(p("op")))
	must(t, os.Mkdir(p("op"), 0o755))
	must(t, os.WriteFile(p("op/new"), []byte("new"), 0o644))
	must(t, unix.Setxattr(p("x/attr"), "user.new", []byte("v"), 0))
	must(t, unix.Removexattr(p("x/attr"), "user.rm"))
	must(t, os.Mkdir(p("sp"), 0o755))
	must(t, unix.Mkfifo(p("sp/fifo"), 0o640))
	must(t, unix.Mknod(p("sp/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Chmod(p("chm"), 0o600))
	must(t, os.Lchown(p("chm"), 1000, 1001))
	must(t, os.Lchown(p("sym"), 7, 8))
	must(t, os.Truncate(p("a/file3"), 2))
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(t, os.Chtimes(p("a/file3"), when, when))
	must(t, os.Symlink("/etc/passwd", p("newlink")))
	must(t, os.MkdirAll(p("new/deep"), 0o755))
	must(t, os.WriteFile(p("new/deep/file"), []byte("deep"), 0o644))
	must(t, os.Remove(p("opq/shown")))
	must(t, os.Chmod(p("cm/sub/f"), 0o640))
	f, err = os.OpenFile(p("wr/sub/f"), os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString("W")
	must(t, err)
	must(t, f.Close())
}

// snapshot describes a merged tree, one line per entry, plus hard-link groups.
func snapshot(t *testing.T, root string, start time.Time) []string {
	t.Helper()
	lines, err := snapshotErr(root, start)
	must(t, err)
	return lines
}

// snapshotErr is snapshot returning its error, for callers that must go on (the
// randomized test shrinks a program that failed this way).
func snapshotErr(root string, start time.Time) ([]string, error) {
	var lines []string
	groups := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", rel, err)
		}
		typ := st.Mode & unix.S_IFMT
		line := fmt.Sprintf("%s type=%o mode=%o uid=%d gid=%d", rel, typ, st.Mode&0o7777, st.Uid, st.Gid)
		switch typ {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			line += fmt.Sprintf(" size=%d sha=%s", st.Size, hex.EncodeToString(h[:4]))
			if st.Nlink > 1 {
				groups[st.Ino] = append(groups[st.Ino], rel)
			}
		case unix.S_IFLNK:
			tgt, _ := os.Readlink(p)
			line += " -> " + tgt
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFDIR:
			// 1 for a dir merged from several layers, else its subdirs + 2
			line += fmt.Sprintf(" nlink=%d", st.Nlink)
		}
		// An mtime older than the script is one the script must not have moved:
		// copy-up is not a change of the parent dirs.
		if mt := time.Unix(st.Mtim.Unix()); mt.Before(start) && rel != "." {
			line += " mtime=" + mt.UTC().Format(time.RFC3339Nano)
		}
		if typ == unix.S_IFREG || typ == unix.S_IFDIR {
			x, err := userXattrs(p)
			if err != nil {
				return err
			}
			line += " xattrs=" + strings.Join(x, ",")
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		sort.Strings(g)
		lines = append(lines, "link group: "+strings.Join(g, " "))
	}
	sort.Strings(lines)
	return lines, nil
}

// userXattrs lists p's user.* xattrs as name=value, sorted.
func userXattrs(p string) ([]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	var out []string
	for _, k := range splitNul(buf[:n]) {
		if !strings.HasPrefix(k, "user.") {
			continue
		}
		v := make([]byte, 256)
		m, err := unix.Lgetxattr(p, k, v)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, k, err)
		}
		out = append(out, k+"="+string(v[:m]))
	}
	sort.Strings(out)
	return out, nil
}

func TestUnionMatchesKernelOverlay(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireFUSE(t)
	start := time.Now().Add(-time.Second)

	// Oracle: kernel overlayfs with index=on, which keeps hard links across copy-up.
	klowers := buildOracleLowers(t)
	kmnt := mountOverlay(t, "", ",index=on", klowers...)
	unionScript(t, kmnt, false)
	want := snapshot(t, kmnt, start)

	for _, f := range []cow.Format{cow.FormatOCI, cow.FormatOverlay} {
		t.Run(f.String(), func(t *testing.T) {
			u := mountUnionMode(t, f, f == cow.FormatOverlay, buildOracleLowers(t)...)
			unionScript(t, u.mnt, true)
			got := snapshot(t, u.mnt, start)
			diffLines(t, "live", got, want)
			u.remount(t, f)
			diffLines(t, "after remount", snapshot(t, u.mnt, start), want)
		})
	}
}

func diffLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	g := map[string]bool{}
	for _, l := range got {
		g[l] = true
	}
	w := map[string]bool{}
	for _, l := range want {
		w[l] = true
	}
	for _, l := range want {
		if !g[l] {
			t.Errorf("%s: missing (kernel overlay has): %s", what, l)
		}
	}
	for _, l := range got {
		if !w[l] {
			t.Errorf("%s: extra (layerfs has): %s", what, l)
		}
	}
}
