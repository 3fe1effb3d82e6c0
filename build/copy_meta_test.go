package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
