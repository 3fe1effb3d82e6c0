package cow

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// makeLower builds the lower tree the kernel-overlay oracle test changes.
func makeLower(t *testing.T, d string) {
	for p, data := range map[string]string{
		"etc/passwd": "root:x:0:0\n", "etc/remove-me": "r", "etc/chmod-me": "m", "etc/chown-me": "o",
		"etc/xattr-me": "x", "etc/xattr-rm": "y", "etc/touch-me": "t", "etc/rename-me": "rn",
		"etc/recreate": "old", "var/cache/a/b/c": "deep", "var/cache/x": "x", "opt/dir2file/child": "c",
		"file2dir": "f", "srv/old1": "1", "srv/old2": "2", "g1": "g", "bin/busybox": "bb",
		"usr/share/doc/readme": "untouched",
	} {
		writeFile(t, filepath.Join(d, p), data, 0o644)
	}
	must(t, os.Link(filepath.Join(d, "g1"), filepath.Join(d, "g2")))
	must(t, os.Symlink("busybox", filepath.Join(d, "bin/sh")))
	must(t, unix.Setxattr(filepath.Join(d, "etc/xattr-rm"), "user.b", []byte("2"), 0))
	must(t, unix.Setxattr(filepath.Join(d, "etc/passwd"), "security.capability", []byte(capNetBindService), 0))
	must(t, unix.Chown(filepath.Join(d, "usr/share"), 33, 33))
	mt := time.Unix(1600000000, 5)
	for _, p := range []string{"etc", "var/cache/a/b", "var/cache/a", "var/cache", "var", "opt/dir2file", "opt", "srv", "bin", "usr/share/doc", "usr/share", "usr"} {
		must(t, os.Chtimes(filepath.Join(d, p), mt, mt))
	}
}

// changeThroughMount makes the scripted changes through a union mount at m and
// returns the `docker diff` lines they must give.
func changeThroughMount(t *testing.T, m string) []string {
	p := func(s string) string { return filepath.Join(m, s) }
	must(t, os.Remove(p("etc/remove-me")))
	must(t, os.RemoveAll(p("var/cache")))
	must(t, os.RemoveAll(p("opt/dir2file")))
	writeFile(t, p("opt/dir2file"), "now a file", 0o644)
	must(t, os.Remove(p("file2dir")))
	writeFile(t, p("file2dir/child"), "now a dir", 0o644)
	must(t, os.RemoveAll(p("srv")))
	writeFile(t, p("srv/new"), "opaque", 0o644)
	must(t, os.Chmod(p("etc/chmod-me"), 0o600))
	must(t, os.Lchown(p("etc/chown-me"), 123, 456))
	must(t, os.Link(p("etc/passwd"), p("etc/passwd-link")))
	writeFile(t, p("new/deep/file"), "new", 0o640)
	must(t, os.Link(p("new/deep/file"), p("new/deep/file-link")))
	must(t, unix.Setxattr(p("etc/xattr-me"), "user.x", []byte("1"), 0))
	must(t, unix.Removexattr(p("etc/xattr-rm"), "user.b"))
	must(t, os.Mkdir(p("run"), 0o755))
	must(t, unix.Mkfifo(p("run/fifo"), 0o600))
	must(t, os.Mkdir(p("dev"), 0o755))
	must(t, unix.Mknod(p("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Remove(p("bin/sh")))
	must(t, os.Symlink("/bin/bash", p("bin/sh")))
	writeFile(t, p("etc/"+longComp), "long", 0o644)
	must(t, os.Rename(p("etc/rename-me"), p("etc/renamed")))
	must(t, os.Chtimes(p("etc/touch-me"), time.Unix(1234567890, 0), time.Unix(1234567890, 0)))
	must(t, os.Remove(p("etc/recreate")))
	writeFile(t, p("etc/recreate"), "new content", 0o600)
	return []string{
		"D /etc/remove-me", "C /etc", "D /var/cache", "C /var", "C /opt", "C /opt/dir2file",
		"C /file2dir", "A /file2dir/child", "C /srv", "A /srv/new", "D /srv/old1", "D /srv/old2",
		"C /etc/chmod-me", "C /etc/chown-me", "C /etc/passwd", "A /etc/passwd-link",
		"A /new", "A /new/deep", "A /new/deep/file", "A /new/deep/file-link",
		"C /etc/xattr-me", "C /etc/xattr-rm", "A /run", "A /run/fifo", "A /dev", "A /dev/null",
		"C /bin", "C /bin/sh", "A /etc/" + longComp, "D /etc/rename-me", "A /etc/renamed",
		"C /etc/touch-me", "C /etc/recreate",
	}
}

// TestKernelOverlayOracle: changes made through kernel overlayfs, turned into a layer
// by Diff(FormatOverlay), unpacked by Apply and merged over the lower by Export,
// give exactly the tree the kernel showed; Changes lists what was done.
func TestKernelOverlayOracle(t *testing.T) {
	testenv.RequireRoot(t)
	base := tempDir(t)
	src, lower, upper, work, merged := filepath.Join(base, "src"), filepath.Join(base, "lower"),
		filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{src, lower, upper, work, merged} {
		must(t, os.Mkdir(d, 0o755))
	}
	makeLower(t, src)
	// The lower is a layer dir as the cache holds it: the tree through Diff and Apply.
	lowerTar := readAll(t, Diff(context.Background(), src, DiffOptions{}))
	if _, err := Apply(context.Background(), lower, bytes.NewReader(lowerTar)); err != nil {
		t.Fatalf("Apply(lower): %v", err)
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",redirect_dir=off,metacopy=off,index=off"
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		if errors.Is(err, unix.ENODEV) {
			t.Skipf("no kernel overlayfs: %v", err)
		}
		t.Fatalf("mount overlay: %v", err)
	}
	mounted := true
	unmount := func() {
		if mounted {
			mounted = false
			must(t, unix.Unmount(merged, 0))
		}
	}
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(merged, unix.MNT_DETACH)
		}
	})
	wantChanges := changeThroughMount(t, merged)
	want := snapshot(t, merged, snapOpts{})
	unmount()

	got, err := Changes(upper, DiffOptions{Format: FormatOverlay, Lowers: []string{lower}})
	must(t, err)
	var lines []string
	for _, c := range got {
		lines = append(lines, c.String())
	}
	sort.Slice(wantChanges, func(i, j int) bool { return wantChanges[i][2:] < wantChanges[j][2:] })
	if a, b := strings.Join(lines, "\n"), strings.Join(wantChanges, "\n"); a != b {
		t.Errorf("Changes:\n%s\nwant:\n%s", a, b)
	}

	layer := readAll(t, Diff(context.Background(), upper, DiffOptions{Format: FormatOverlay}))
	for _, n := range tarNames(t, layer) {
		if strings.Contains(n, "work") {
			t.Errorf("layer has %s", n)
		}
	}
	layerDir := applyBytes(t, layer)
	flat := readAll(t, Export(context.Background(), []string{layerDir, lower}, "", FormatOCI))
	result := applyBytes(t, flat)
	compareTrees(t, "Export(Apply(Diff(upper)) over lower)", snapshot(t, result, snapOpts{}), want)

	// umoci, applying the two layers with its own whiteout handling, agrees.
	if _, err := exec.LookPath("umoci"); err == nil || os.Getenv("CI") == "true" {
		rootfs := umociUnpack(t, lowerTar, layer)
		compareTrees(t, "umoci raw unpack of [lower, Diff(upper)]", snapshot(t, rootfs, snapOpts{}), want)
	}

	// The same changes in the OCI encoding (the layer unpacked: ".wh." files and
	// markers) give the same layer, byte for byte, and the same change list.
	if oci := readAll(t, Diff(context.Background(), layerDir, DiffOptions{Format: FormatOCI})); !bytes.Equal(oci, layer) {
		t.Errorf("Diff(OCI-encoded upper) differs from Diff(overlay upper)")
	}
	got, err = Changes(layerDir, DiffOptions{Format: FormatOCI, Lowers: []string{lower}})
	must(t, err)
	lines = lines[:0]
	for _, c := range got {
		lines = append(lines, c.String())
	}
	if a, b := strings.Join(lines, "\n"), strings.Join(wantChanges, "\n"); a != b {
		t.Errorf("Changes(OCI-encoded upper):\n%s\nwant:\n%s", a, b)
	}

	// Diff of the upper is reproducible also in this encoding.
	again := readAll(t, Diff(context.Background(), upper, DiffOptions{Format: FormatOverlay}))
	if !bytes.Equal(layer, again) {
		t.Errorf("Diff(upper) twice differs")
	}
}
