package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

var (
	longComp  = strings.Repeat("n", 200)
	nonUTF8   = "caf\xe9-\xff"
	sparseLen = int64(64 << 20)
)

// makeUpper fills dir with one of everything Diff must carry. Root-only kinds
// (devices, trusted xattrs, capabilities, other owners) are added when root.
func makeUpper(t testing.TB, d string) {
	t.Helper()
	root := os.Geteuid() == 0
	must(t, os.MkdirAll(filepath.Join(d, "etc/deep/er/still"), 0o755))
	writeFile(t, filepath.Join(d, "etc/passwd"), "root:x:0:0::/root:/bin/sh\n", 0o644)
	writeFile(t, filepath.Join(d, "etc/deep/er/still/f"), "deep", 0o600)
	writeFile(t, filepath.Join(d, "empty"), "", 0o644)
	writeFile(t, filepath.Join(d, "bin/tool"), "#!/bin/sh\n", 0o4755)
	must(t, os.Chmod(filepath.Join(d, "bin/tool"), 0o4755|os.ModeSetuid))
	must(t, unix.Chmod(filepath.Join(d, "bin/tool"), 0o4755))
	must(t, os.Symlink("/etc/passwd", filepath.Join(d, "bin/abs-link")))
	must(t, os.Symlink("../etc/"+longComp, filepath.Join(d, "bin/long-link")))
	must(t, os.Link(filepath.Join(d, "etc/passwd"), filepath.Join(d, "bin/hard1")))
	must(t, os.Link(filepath.Join(d, "etc/passwd"), filepath.Join(d, "hard2")))
	writeFile(t, filepath.Join(d, "etc", longComp), "long name", 0o644)
	writeFile(t, filepath.Join(d, nonUTF8), "latin1 name", 0o644)
	writeFile(t, filepath.Join(d, "üñï©ødé"), "utf8 name", 0o644)
	must(t, unix.Mkfifo(filepath.Join(d, "fifo"), 0o640))
	must(t, unix.Setxattr(filepath.Join(d, "etc/passwd"), "user.note", []byte("a\x00binary\xffvalue"), 0))
	must(t, unix.Setxattr(filepath.Join(d, "etc/passwd"), "user.empty", nil, 0)) // an empty PAX record, kept by Apply
	must(t, os.Mkdir(filepath.Join(d, "ro"), 0o555))
	// A sparse file: data at 1 MiB and at the end, holes elsewhere.
	f, err := os.Create(filepath.Join(d, "sparse"))
	must(t, err)
	_, err = f.WriteAt([]byte("data in the middle"), 1<<20)
	must(t, err)
	_, err = f.WriteAt([]byte("end"), sparseLen-3)
	must(t, err)
	must(t, f.Close())
	// OCI whiteouts and an opaque dir, as the fs writes them.
	must(t, os.Mkdir(filepath.Join(d, "opq"), 0o755))
	writeFile(t, filepath.Join(d, "opq/new"), "new", 0o644)
	fd, err := unix.Open(filepath.Join(d, "opq"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	must(t, MakeOpaque(fd, FormatOCI))
	unix.Close(fd)
	fd, err = unix.Open(filepath.Join(d, "etc"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	must(t, MakeWhiteout(fd, "shadow", FormatOCI))
	unix.Close(fd)
	for _, m := range []string{"opq/" + OpaqueMarker, "etc/.wh.shadow"} {
		if root {
			must(t, unix.Lchown(filepath.Join(d, m), 0, 0))
		}
		must(t, os.Chtimes(filepath.Join(d, m), time.Unix(0, 0), time.Unix(0, 0)))
	}
	if root {
		must(t, unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, unix.Mknod(filepath.Join(d, "loop9"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 9))))
		must(t, unix.Lchown(filepath.Join(d, "etc/deep"), 1000, 1001))
		must(t, unix.Lchown(filepath.Join(d, "bin/abs-link"), 7, 8))
		must(t, unix.Setxattr(filepath.Join(d, "bin/tool"), "security.capability", []byte(capNetBindService), 0))
		must(t, unix.Lsetxattr(filepath.Join(d, "bin/abs-link"), "trusted.sym", []byte("x"), 0))
		must(t, unix.Setxattr(filepath.Join(d, "etc"), "trusted.overlay.origin", []byte("private"), 0))
		must(t, unix.Setxattr(filepath.Join(d, "etc"), "trusted.layerfs.origin", []byte("private"), 0))
	}
	// Fix dir mtimes last, with nanoseconds.
	mt := time.Unix(1650000000, 987654321)
	for _, p := range []string{"etc/deep/er/still", "etc/deep/er", "etc/deep", "etc", "bin", "opq", "ro"} {
		must(t, os.Chtimes(filepath.Join(d, p), mt, mt))
	}
}

func TestDiffRoundTrip(t *testing.T) {
	upper := tempDir(t)
	makeUpper(t, upper)
	b := readAll(t, Diff(context.Background(), upper, DiffOptions{}))
	got := applyBytes(t, b)
	compareTrees(t, "Apply(Diff(upper))", snapshot(t, got, snapOpts{}), snapshot(t, upper, snapOpts{}))

	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(got, "sparse"), &st))
	if st.Blocks*512 > 1<<20 {
		t.Errorf("sparse after round trip: %d bytes allocated, want holes", st.Blocks*512)
	}
	names := tarNames(t, b)
	if i, j := indexOf(names, "opq/"), indexOf(names, "opq/"+OpaqueMarker); i < 0 || j != i+1 {
		t.Errorf("opaque marker at %d, dir at %d in %q; want the marker right after its dir", j, i, names)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "./") || strings.HasPrefix(n, "/") {
			t.Errorf("tar name %q: want relative names without ./", n)
		}
	}
	// Hard links: one copy of the data.
	if i := indexOf(names, "etc/passwd link=bin/hard1"); i < 0 {
		t.Errorf("no hard link etc/passwd -> bin/hard1 in %q", names)
	}
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

func TestDiffHeaders(t *testing.T) {
	upper := tempDir(t)
	makeUpper(t, upper)
	epoch := time.Unix(1500000000, 0)
	b := readAll(t, Diff(context.Background(), upper, DiffOptions{SourceDateEpoch: &epoch}))
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: uname/gname %q/%q, want empty", h.Name, h.Uname, h.Gname)
		}
		if h.ModTime.After(epoch) {
			t.Errorf("%s: mtime %v after SourceDateEpoch %v", h.Name, h.ModTime, epoch)
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: atime/ctime stored", h.Name)
		}
		for k := range h.PAXRecords {
			if strings.Contains(k, "overlay") || strings.Contains(k, "layerfs") {
				t.Errorf("%s: overlay xattr %s stored", h.Name, k)
			}
		}
	}
}

// TestDiffDeterministic: the same upper gives the same bytes, also after its files
// were read (atime) and its dirs listed.
func TestDiffDeterministic(t *testing.T) {
	upper := tempDir(t)
	makeUpper(t, upper)
	a := readAll(t, Diff(context.Background(), upper, DiffOptions{}))
	snapshot(t, upper, snapOpts{})
	b := readAll(t, Diff(context.Background(), upper, DiffOptions{}))
	if !bytes.Equal(a, b) {
		t.Errorf("Diff twice: %d and %d bytes differ", len(a), len(b))
	}
	// A copy of the tree made in a different order gives the same bytes too.
	c := readAll(t, Diff(context.Background(), applyBytes(t, a), DiffOptions{}))
	if !bytes.Equal(a, c) {
		t.Errorf("Diff(Apply(Diff(upper))) differs from Diff(upper)")
	}
}

func TestDiffOverlayFormat(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for 0/0 devices and trusted xattrs")
	}
	upper := tempDir(t)
	must(t, os.MkdirAll(filepath.Join(upper, "a/opq"), 0o755))
	writeFile(t, filepath.Join(upper, "a/opq/keep"), "k", 0o644)
	must(t, unix.Setxattr(filepath.Join(upper, "a/opq"), OverlayOpaqueXattr, []byte("y"), 0))
	must(t, unix.Mknod(filepath.Join(upper, "a/gone"), unix.S_IFCHR, 0))
	must(t, os.Mkdir(filepath.Join(upper, "fo"), 0o755)) // written by fuse-overlayfs
	must(t, unix.Setxattr(filepath.Join(upper, "fo"), FuseOverlayfsOpaqueXattr, []byte("y"), 0))
	must(t, unix.Setxattr(filepath.Join(upper, "fo"), "user.fuseoverlayfs.origin", []byte("x"), 0))
	// kernel overlayfs links whiteouts to one shared inode: not a tar hard link.
	must(t, os.Link(filepath.Join(upper, "a/gone"), filepath.Join(upper, "gone2")))
	b := readAll(t, Diff(context.Background(), upper, DiffOptions{Format: FormatOverlay}))
	want := []string{".wh.gone2", "a/", "a/.wh.gone", "a/opq/", "a/opq/.wh..wh..opq", "a/opq/keep", "fo/", "fo/.wh..wh..opq"}
	got := tarNames(t, b)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Diff(overlay upper) names = %q, want %q", got, want)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if len(h.PAXRecords) > 0 && h.Name == "fo/" {
			for k := range h.PAXRecords {
				if strings.HasPrefix(k, "SCHILY.xattr.") {
					t.Errorf("fo/: private xattr %s stored", k)
				}
			}
		}
	}
	// As OCI, a 0/0 device is just a device.
	b = readAll(t, Diff(context.Background(), upper, DiffOptions{Format: FormatOCI}))
	if got := tarNames(t, b); indexOf(got, "a/gone") < 0 {
		t.Errorf("Diff(FormatOCI) names = %q, want the device a/gone kept", got)
	}
}

// TestDiffHardlinkIntoLower: a file whose other name is outside the upper (a lower
// layer) still gets its data in the layer.
func TestDiffHardlinkIntoLower(t *testing.T) {
	base := tempDir(t)
	upper := filepath.Join(base, "upper")
	must(t, os.Mkdir(upper, 0o755))
	writeFile(t, filepath.Join(base, "lower-name"), "shared", 0o644)
	must(t, os.Link(filepath.Join(base, "lower-name"), filepath.Join(upper, "b")))
	must(t, os.Link(filepath.Join(base, "lower-name"), filepath.Join(upper, "c")))
	b := readAll(t, Diff(context.Background(), upper, DiffOptions{}))
	if got, want := tarNames(t, b), []string{"b", "c link=b"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("names = %q, want %q", got, want)
	}
	root := applyBytes(t, b)
	if data, err := os.ReadFile(filepath.Join(root, "c")); err != nil || string(data) != "shared" {
		t.Errorf("c = %q, %v; want shared", data, err)
	}
}

// TestDiffErrorsSurface: a failure mid-walk ends the stream with an error naming the
// entry, never a clean EOF.
func TestDiffErrorsSurface(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads mode-000 files; use a redirect xattr instead.
		upper := tempDir(t)
		must(t, os.Mkdir(filepath.Join(upper, "moved"), 0o755))
		must(t, unix.Setxattr(filepath.Join(upper, "moved"), OverlayRedirectXattr, []byte("/orig"), 0))
		_, err := io.ReadAll(Diff(context.Background(), upper, DiffOptions{Format: FormatOverlay}))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "diff moved:") {
			t.Errorf("Diff(upper with redirect) error = %v, want ErrUnsupported naming moved", err)
		}
		return
	}
	upper := tempDir(t)
	writeFile(t, filepath.Join(upper, "secret"), "x", 0o000)
	_, err := io.ReadAll(Diff(context.Background(), upper, DiffOptions{}))
	if err == nil || !strings.Contains(err.Error(), "diff secret:") {
		t.Errorf("Diff(unreadable file) error = %v, want one naming secret", err)
	}
}

func TestDiffCancel(t *testing.T) {
	upper := tempDir(t)
	makeUpper(t, upper)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := io.ReadAll(Diff(ctx, upper, DiffOptions{})); !errors.Is(err, context.Canceled) {
		t.Errorf("Diff(cancelled) error = %v, want context.Canceled", err)
	}
	// Closing the reader early stops the producer (no goroutine left blocked).
	rc := Diff(context.Background(), upper, DiffOptions{})
	buf := make([]byte, 10)
	_, err := rc.Read(buf)
	must(t, err)
	must(t, rc.Close())
}

func BenchmarkDiff(b *testing.B) {
	upper := b.TempDir()
	for i := 0; i < 50; i++ {
		for j := 0; j < 100; j++ {
			writeFile(b, filepath.Join(upper, "d"+string(rune('a'+i%26))+string(rune('a'+i/26)), "f"+string(rune('a'+j%26))+string(rune('a'+j/26))), strings.Repeat("y", 4096), 0o644)
		}
	}
	writeFile(b, filepath.Join(upper, "big"), strings.Repeat("z", 64<<20), 0o644)
	for b.Loop() {
		n, err := io.Copy(io.Discard, Diff(context.Background(), upper, DiffOptions{}))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(n)
	}
}

// TestDiffWhiteoutBesideEntry: a whiteout next to an entry of the same name is
// folded into it (dropped for a file, opaque marker for a dir), so no extractor can
// apply it to the entry itself.
func TestDiffWhiteoutBesideEntry(t *testing.T) {
	base := tempDir(t)
	lower, upper := filepath.Join(base, "lower"), filepath.Join(base, "upper")
	writeFile(t, filepath.Join(lower, "-x"), "old", 0o644)
	writeFile(t, filepath.Join(lower, "d/old"), "old", 0o644)
	writeFile(t, filepath.Join(upper, "-x"), "new", 0o644)
	writeFile(t, filepath.Join(upper, ".wh.-x"), "", 0o000)
	writeFile(t, filepath.Join(upper, "d/new"), "new", 0o644)
	writeFile(t, filepath.Join(upper, ".wh.d"), "", 0o000)
	b := readAll(t, Diff(context.Background(), upper, DiffOptions{}))
	if got, want := strings.Join(tarNames(t, b), " "), "-x d/ d/.wh..wh..opq d/new"; got != want {
		t.Errorf("Diff names = %q, want %q", got, want)
	}
	ch, err := Changes(upper, DiffOptions{Lowers: []string{lower}})
	must(t, err)
	var lines []string
	for _, c := range ch {
		lines = append(lines, c.String())
	}
	if got, want := strings.Join(lines, ","), "C /-x,C /d,A /d/new,D /d/old"; got != want {
		t.Errorf("Changes = %s, want %s", got, want)
	}
}

// TestDiffGNUTarOracle: GNU tar, an independent extractor, unpacks what Diff writes
// into the same tree as the upper dir.
func TestDiffGNUTarOracle(t *testing.T) {
	tarBin := testenv.RequireTool(t, "tar")
	upper := tempDir(t)
	makeUpper(t, upper)
	b := readAll(t, Diff(context.Background(), upper, DiffOptions{}))
	base := tempDir(t)
	file, out := filepath.Join(base, "layer.tar"), filepath.Join(base, "out")
	must(t, os.WriteFile(file, b, 0o644))
	must(t, os.Mkdir(out, 0o755))
	args := []string{"-C", out, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", file}
	if o, err := exec.Command(tarBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("tar %v: %v\n%s", args, err, o)
	}
	compareTrees(t, "GNU tar -x of Diff(upper)", snapshot(t, out, snapOpts{}), snapshot(t, upper, snapOpts{}))
}
