package build

import (
	"context"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
)

// imageNames is every path in the built image's layers, sorted, and the
// layers' dirs (top first).
func imageNames(t *testing.T, root string, s *blobstore.Store, res *Result) ([]string, []string) {
	t.Helper()
	b := &builder{o: Options{Store: s}, layers: &cow.LayerCache{Dir: filepath.Join(root, "layers")}}
	lowers, err := b.layerDirs(context.Background(), res.Image.Config.RootFS.DiffIDs, res.Image.Manifest.Layers)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	filepathWalkRel(t, lowers, func(rel string) { names = append(names, rel) })
	return names, lowers
}

// TestBuildCopyKeepsRuntimePaths: COPY, ADD and WORKDIR keep the empty /dev,
// /proc, /sys, /etc and /etc/{hosts,resolv.conf,hostname} they make, as
// buildkit and buildah do: only a RUN's runtime makes (and takes out) such
// mount stubs. Before, a FROM scratch + ADD rootfs.tar / of those gave an
// empty image (finding 1 of rev20-meta).
func TestBuildCopyKeepsRuntimePaths(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	rootfs := filepath.Join(ctxDir, "rootfs")
	for _, d := range []string{"dev", "proc", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/hosts", "etc/resolv.conf", "etc/hostname"} {
		if err := os.WriteFile(filepath.Join(rootfs, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(ctxDir, "empty"), nil, 0o644)
	tarFromDir(t, rootfs, filepath.Join(ctxDir, "rootfs.tar"))
	all := "dev etc etc/hostname etc/hosts etc/resolv.conf proc sys"
	for _, tc := range []struct{ df, want string }{
		{"FROM scratch\nADD rootfs.tar /\n", all},
		{"FROM scratch\nCOPY rootfs/ /\n", all},
		{"FROM scratch\nCOPY empty /etc/resolv.conf\n", "etc etc/resolv.conf"},
		{"FROM scratch\nCOPY empty /x\nWORKDIR /sys\nWORKDIR /etc\n", "etc sys x"},
	} {
		res, out, err := buildIn(t, root, s, ctxDir, tc.df)
		if err != nil {
			t.Errorf("build %q: %v\n%s", tc.df, err, out)
			continue
		}
		if names, _ := imageNames(t, root, s, res); strings.Join(names, " ") != tc.want {
			t.Errorf("build %q: image holds %q, want %q", tc.df, names, tc.want)
		}
	}
	// A RUN's runtime still takes out the stubs it made on a rootfs that
	// lacked them, and only those.
	res, out, err := buildIn(t, root, s, ctxDir, "FROM scratch\nCOPY --from=base /bin/ /bin/\nCOPY empty /etc/hosts\nRUN true\n")
	if err != nil {
		t.Fatalf("build with RUN: %v\n%s", err, out)
	}
	names, _ := imageNames(t, root, s, res)
	var rest []string
	for _, n := range names {
		if n != "bin" && !strings.HasPrefix(n, "bin/") {
			rest = append(rest, n)
		}
	}
	if got := strings.Join(rest, " "); got != "etc etc/hosts" {
		t.Errorf("image with a RUN holds %q besides bin/, want the COPY's \"etc etc/hosts\" and none of RUN's stubs", got)
	}
}

// tarFromDir writes a tar of dir's contents to p.
func tarFromDir(t *testing.T, dir, p string) {
	t.Helper()
	if out, err := exec.Command("tar", "-C", dir, "-cf", p, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
}

// TestBuildCopyNodes: COPY recreates FIFOs and device nodes, from the context
// and with --from, in a copied dir and named alone, with their mode (or
// --chmod's), device number and mtime, as buildkit's copy does; before they
// were skipped, and a lone FIFO failed with "not a regular file" naming a
// path inside the store (finding 3 of rev20-meta).
func TestBuildCopyNodes(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	os.MkdirAll(filepath.Join(ctxDir, "t"), 0o755)
	os.WriteFile(filepath.Join(ctxDir, "t/f"), []byte("x\n"), 0o644)
	mtime := time.Unix(1000000000, 0)
	for _, n := range []struct {
		name string
		mode uint32
		dev  uint64
	}{
		{"fifo", unix.S_IFIFO | 0o640, 0},
		{"null", unix.S_IFCHR | 0o666, unix.Mkdev(1, 3)},
		{"loop", unix.S_IFBLK | 0o660, unix.Mkdev(7, 200)},
	} {
		p := filepath.Join(ctxDir, "t", n.name)
		if err := unix.Mknod(p, n.mode, int(n.dev)); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, fs.FileMode(n.mode&0o777))
		os.Chtimes(p, mtime, mtime)
	}
	df := `FROM scratch AS nodes
COPY t /t/
COPY t/fifo /x
COPY --chmod=600 t/null /null600

FROM base
COPY --from=nodes /t/fifo /fifo1
COPY --from=nodes /t/ /from/
`
	res, out, err := buildIn(t, root, s, ctxDir, df)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	_, lowers := imageNames(t, root, s, res)
	merged := mergeForTest(t, lowers)
	for _, tc := range []struct {
		path string
		typ  uint32
		perm uint32
		dev  uint64
	}{
		{"fifo1", unix.S_IFIFO, 0o640, 0},
		{"from/fifo", unix.S_IFIFO, 0o640, 0},
		{"from/null", unix.S_IFCHR, 0o666, unix.Mkdev(1, 3)},
		{"from/loop", unix.S_IFBLK, 0o660, unix.Mkdev(7, 200)},
		{"from/f", unix.S_IFREG, 0o644, 0},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(merged, tc.path), &st); err != nil {
			t.Errorf("/%s: %v", tc.path, err)
			continue
		}
		if st.Mode&unix.S_IFMT != tc.typ || st.Mode&0o7777 != tc.perm || st.Rdev != tc.dev {
			t.Errorf("/%s: mode %o rdev %d:%d, want %o rdev %d:%d", tc.path, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev),
				tc.typ|tc.perm, unix.Major(tc.dev), unix.Minor(tc.dev))
		}
		if tc.typ != unix.S_IFREG && st.Mtim.Sec != mtime.Unix() {
			t.Errorf("/%s: mtime %d, want %d", tc.path, st.Mtim.Sec, mtime.Unix())
		}
	}
	// The first stage's own layers: a lone FIFO, and --chmod on a device.
	res, out, err = buildIn(t, root, s, ctxDir, "FROM scratch\nCOPY t/fifo /x\nCOPY --chmod=600 t/null /null600\n")
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	_, lowers = imageNames(t, root, s, res)
	merged = mergeForTest(t, lowers)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(merged, "x"), &st); err != nil || st.Mode != unix.S_IFIFO|0o640 {
		t.Errorf("/x: mode %o, %v; want a 0640 FIFO", st.Mode, err)
	}
	if err := unix.Lstat(filepath.Join(merged, "null600"), &st); err != nil || st.Mode != unix.S_IFCHR|0o600 || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("/null600: mode %o rdev %d, %v; want char 1:3 0600", st.Mode, st.Rdev, err)
	}
}

// TestCopySourceErrorPath: an error about a COPY --from source names it by its
// path in the image, not by where the image is mounted in the store.
func TestCopySourceErrorPath(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a"), 0o755)
	l, err := net.Listen("unix", filepath.Join(dir, "a/sock"))
	if err != nil {
		t.Skipf("unix socket: %v", err)
	}
	defer l.Close()
	for _, hide := range []bool{true, false} {
		bc := &buildContext{dir: dir, hideDir: hide}
		want := "open /a/sock: "
		if !hide {
			want = "open " + dir + "/a/sock: " // the user's context dir
		}
		if _, err := bc.openFile(filepath.Join(dir, "a/sock")); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("openFile (hideDir %v) = %v, want %q", hide, err, want)
		}
		if _, err := bc.openFile(filepath.Join(dir, "a/gone")); err == nil || strings.Contains(err.Error(), dir) == hide {
			t.Errorf("openFile of a missing file (hideDir %v) = %v", hide, err)
		}
	}
}

// TestBuildCopyWhiteoutName: COPY of an entry named like a whiteout (.wh.x),
// or to such a path, fails with one line that names it and says why; it
// failed with a bare "invalid argument" (finding 6 of rev20-meta). a.wh.b is
// an ordinary name.
func TestBuildCopyWhiteoutName(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	os.MkdirAll(filepath.Join(ctxDir, "n"), 0o755)
	os.MkdirAll(filepath.Join(ctxDir, "ok"), 0o755)
	os.WriteFile(filepath.Join(ctxDir, "n/.wh.x"), []byte("a\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "ok/a.wh.b"), []byte("b\n"), 0o644)
	for _, tc := range []struct{ df, want string }{
		{"FROM base\nCOPY n /n/\n", "COPY failed: copy to /n/.wh.x: name is reserved for whiteouts (a name starting with .wh. marks a deletion in an image layer)"},
		{"FROM base\nCOPY ok/a.wh.b /.wh.d/\n", "COPY failed: copy to /.wh.d/a.wh.b: name is reserved for whiteouts"},
		{"FROM base\nCOPY ok /ok/\nRUN test \"$(cat /ok/a.wh.b)\" = b\n", ""},
	} {
		_, out, err := buildIn(t, root, s, ctxDir, tc.df)
		if tc.want == "" {
			if err != nil {
				t.Errorf("build %q: %v\n%s", tc.df, err, out)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("build %q = %v, want %q", tc.df, err, tc.want)
		}
	}
}
