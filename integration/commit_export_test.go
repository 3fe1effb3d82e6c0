package integration

// commit's interop and export tests: skopeo, the fs-private xattrs, export.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"github.com/layerfs/layerfs/internal/treecmp"
	"golang.org/x/sys/unix"
)

// TestExport: the merged view as one flat tar; refuses a terminal.
func TestExport(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("ex", "base:1")
	ref := filepath.Join(t.TempDir(), "ref")
	copyTree(t, e.baseDir, ref)
	since := time.Now().Add(-time.Second)
	ops := append(append([]op{}, changeSets[2].ops...), changeSets[6].ops...)
	applyOps(t, ref, ops, since)
	applyOps(t, mnt, ops, since)
	out := filepath.Join(t.TempDir(), "ex.tar")
	e.ok("export", "-o", out, "ex")
	if b, err := exec.Command("tar", "-tf", out).Output(); err != nil || bytes.Contains(b, []byte(".wh.")) {
		t.Errorf("export has whiteouts or is unreadable (%v)", err)
	}
	got := filepath.Join(t.TempDir(), "x")
	os.Mkdir(got, 0o755)
	if b, err := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", out, "-C", got).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v: %s", err, b)
	}
	treecmp.Equal(t, ref, got, exportOpts)

	// An image exports too (its own tree).
	imgOut := filepath.Join(t.TempDir(), "img.tar")
	e.ok("export", "-o", imgOut, "base:1")
	got2 := filepath.Join(t.TempDir(), "y")
	os.Mkdir(got2, 0o755)
	if b, err := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", imgOut, "-C", got2).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v: %s", err, b)
	}
	treecmp.Equal(t, e.baseDir, got2, exportOpts)

	// A terminal as stdout is refused.
	ptm, pts, err := openPty()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptm.Close()
	defer pts.Close()
	cmd := exec.Command(layerfsBinary(t), "--root", e.root, "export", "ex")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = pts, &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "refusing") {
		t.Errorf("export to a terminal: %v, stderr %q; want a refusal", err, stderr.String())
	}
}

func openPty() (*os.File, *os.File, error) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ptm.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		ptm.Close()
		return nil, nil, err
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		return nil, nil, err
	}
	return ptm, pts, nil
}

// TestCommitSkopeo: skopeo reads the committed image from the store and from a
// saved archive, and copies it to docker-archive and OCI.
func TestCommitSkopeo(t *testing.T) {
	skopeo := testenv.RequireTool(t, "skopeo")
	e := newCommitEnv(t)
	mnt := e.mount("sk", "base:1")
	applyOps(t, mnt, changeSets[1].ops, time.Now())
	e.ok("commit", "--compression", "zstd", "sk", "sk:zstd")
	e.ok("commit", "sk", "sk:gzip")
	dir := t.TempDir()
	for _, tag := range []string{"zstd", "gzip"} {
		saved := filepath.Join(dir, tag+"-saved.tar")
		e.ok("save", "-o", saved, "sk:"+tag)
		for _, c := range [][]string{
			{"copy", "docker-archive:" + saved, "oci:" + filepath.Join(dir, tag+"-oci") + ":sk"},
			{"copy", "oci:" + filepath.Join(e.root, "store") + ":docker.io/library/sk:" + tag, "oci:" + filepath.Join(dir, tag+"-oci2") + ":sk"},
			{"inspect", "oci:" + filepath.Join(e.root, "store") + ":docker.io/library/sk:" + tag},
		} {
			if out, err := exec.Command(skopeo, append([]string{"--insecure-policy"}, c...)...).CombinedOutput(); err != nil {
				t.Errorf("skopeo %s: %v\n%s", strings.Join(c, " "), err, out)
			}
		}
	}
	// docker-archive has no zstd layers: the gzip commit converts, straight from the store.
	c := []string{"--insecure-policy", "copy", "oci:" + filepath.Join(e.root, "store") + ":docker.io/library/sk:gzip", "docker-archive:" + filepath.Join(dir, "da.tar") + ":sk:gzip"}
	if out, err := exec.Command(skopeo, c...).CombinedOutput(); err != nil {
		t.Errorf("skopeo %s: %v\n%s", strings.Join(c, " "), err, out)
	}
}

// TestCommitLayerHasNoPrivateXattrs: the fs's bookkeeping xattrs (inode origin of a
// copy-up) must not reach committed layers or exports.
func TestCommitLayerHasNoPrivateXattrs(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("px", "base:1")
	applyOps(t, mnt, []op{chmod("etc/motd", 0o600), appendTo("etc/passwd", "x\n")}, time.Now())
	e.ok("commit", "--compression", "none", "px", "px:1")
	layers, _ := e.storeManifest("docker.io/library/px:1")
	f, err := os.Open(e.blobPath(layers[len(layers)-1]))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkNoPrivateXattrs(t, "layer", f)
	out := filepath.Join(t.TempDir(), "px.tar")
	e.ok("export", "-o", out, "px")
	g, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	checkNoPrivateXattrs(t, "export", g)
}

func checkNoPrivateXattrs(t *testing.T, what string, r io.Reader) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for k := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && isPrivateXattr(x) {
				t.Errorf("%s: %s carries the fs-private xattr %s", what, h.Name, x)
			}
		}
	}
}
