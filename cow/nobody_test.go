package cow

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
)

// nobodyEnv names, in a copy of this test binary that asNobody runs as nobody,
// the dir of nobody's the test works in.
const nobodyEnv = "LAYERFS_TEST_COW_NOBODY"

// asNobody runs the calling (top-level) test again, as nobody (uid and gid 65534,
// no capabilities), in a copy of this test binary, and fails t if that run fails;
// it then returns ok false and the caller returns. In that run it returns ok
// true and an empty dir of nobody's to work in. The unprivileged paths of cow
// (rootless.go, unpriv.go) only run without privilege, and changing one thread's
// credentials in this process is not safe.
func asNobody(t *testing.T) (dir string, ok bool) {
	t.Helper()
	if d := os.Getenv(nobodyEnv); d != "" {
		if os.Geteuid() == 0 {
			t.Fatalf("%s set but running as root", nobodyEnv)
		}
		return d, true
	}
	testenv.RequireRoot(t)
	top, err := os.MkdirTemp("", "layerfs-cow-nobody-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(top) })
	must(t, os.Chmod(top, 0o755))
	exe := filepath.Join(top, "cow.test")
	b, err := os.ReadFile(os.Args[0])
	must(t, err)
	must(t, os.WriteFile(exe, b, 0o755))
	work := filepath.Join(top, "work")
	must(t, os.Mkdir(work, 0o755))
	must(t, os.Chown(work, 65534, 65534))
	cmd := exec.Command(exe, "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), nobodyEnv+"="+work, "HOME="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s as nobody: %v\n%s", t.Name(), err, out)
	}
	return "", false
}

// tarHeaders reads every header of the stream r (and closes it).
func tarHeaders(t *testing.T, r io.ReadCloser) map[string]*tar.Header {
	t.Helper()
	defer r.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// TestRootlessHardLinkOwner: unprivileged, a hard-link entry has the owner of the
// first name (from the inode's user.rootlesscontainers xattr), as a root run
// writes it and umoci's rootless repack does; it was 0:0.
func TestRootlessHardLinkOwner(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	up := filepath.Join(dir, "up")
	must(t, os.MkdirAll(filepath.Join(up, "hl"), 0o755))
	a := filepath.Join(up, "hl", "a")
	must(t, os.WriteFile(a, []byte("a\n"), 0o644))
	must(t, syscall.Setxattr(a, RootlessXattr, encodeRootless(1000, 1001), 0))
	for _, n := range []string{"b", "c"} {
		must(t, os.Link(a, filepath.Join(up, "hl", n)))
	}
	check := func(what string, hdrs map[string]*tar.Header) {
		t.Helper()
		for _, n := range []string{"hl/a", "hl/b", "hl/c"} {
			h := hdrs[n]
			if h == nil {
				t.Errorf("%s: no %s", what, n)
				continue
			}
			if h.Uid != 1000 || h.Gid != 1001 {
				t.Errorf("%s: %s (type %c, link %q) owned %d:%d, want 1000:1001", what, n, h.Typeflag, h.Linkname, h.Uid, h.Gid)
			}
			if _, ok := h.PAXRecords[paxXattrPrefix+RootlessXattr]; ok {
				t.Errorf("%s: %s carries %s", what, n, RootlessXattr)
			}
		}
		if h := hdrs["hl/b"]; h != nil && h.Typeflag != tar.TypeLink {
			t.Errorf("%s: hl/b type %c, want a hard link", what, h.Typeflag)
		}
	}
	check("diff", tarHeaders(t, Diff(context.Background(), up, DiffOptions{Format: FormatOCI})))
	check("export", tarHeaders(t, Export(context.Background(), []string{up}, "", FormatOCI)))
}
