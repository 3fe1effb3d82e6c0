// Package integration tests the built layerfs binary end to end: real files, real
// FUSE mounts, skopeo and umoci as oracles. TestMain builds the binary once; every
// test gets its own --root (see run). Other teams' integration tests live in this
// package and reuse these helpers.
package integration

import (
	"net"

	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/layerfs/layerfs/registry"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/layerfs/layerfs/internal/treecmp"
	godigest "github.com/opencontainers/go-digest"
)

// layerfsBin is the binary under test, built by TestMain into workDir, a temp dir
// removed after the run (shared fixtures live there too).
var layerfsBin, workDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "layerfs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	workDir = dir
	// Nothing here may reach Docker Hub (run and build pull what they lack): its
	// origin is a loopback port nobody listens on.
	if os.Getenv(registry.HubOriginEnv) == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Setenv(registry.HubOriginEnv, l.Addr().String())
		l.Close()
	}
	layerfsBin = filepath.Join(dir, "layerfs")
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	// Static, as hack/demo.sh builds it: --init's init then cuts its
	// capabilities on every thread (a cgo-linked binary cannot).
	build := exec.Command("go", "build", "-o", layerfsBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Dir = repo
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build layerfs: %v\n", err)
		return 1
	}
	return m.Run()
}

var roots sync.Map // testing.TB -> root dir

// rootFor is t's own store root, made on first use and removed after the test.
func rootFor(t testing.TB) string {
	t.Helper()
	if r, ok := roots.Load(t); ok {
		return r.(string)
	}
	r := filepath.Join(t.TempDir(), "root")
	roots.Store(t, r)
	t.Cleanup(func() { roots.Delete(t) })
	return r
}

// result is what one run of the binary did.
type result struct {
	Stdout, Stderr string
	Code           int
}

// cmdOpts tune one run: stdin, extra environment, a different root.
type cmdOpts struct {
	stdin io.Reader
	env   []string
	root  string // "" = rootFor(t)
	dir   string // the working dir ("" = the test's)
}

// runWith runs `layerfs --root R args...` and returns its output and exit code;
// it fails t only if the binary cannot be started.
func runWith(t testing.TB, o cmdOpts, args ...string) result {
	t.Helper()
	root := o.root
	if root == "" {
		root = rootFor(t)
	}
	cmd := exec.Command(layerfsBin, append([]string{"--root", root}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, o.stdin
	cmd.Env = append(os.Environ(), o.env...)
	cmd.Dir = o.dir
	err := cmd.Run()
	res := result{Stdout: stdout.String(), Stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run layerfs %s: %v", strings.Join(args, " "), err)
		}
		res.Code = ee.ExitCode()
	}
	return res
}

// run runs layerfs with t's root; see runWith.
func run(t testing.TB, args ...string) result {
	t.Helper()
	return runWith(t, cmdOpts{}, args...)
}

// mustRun runs layerfs with t's root and fails t unless it exits 0; returns stdout.
func mustRun(t testing.TB, args ...string) string {
	t.Helper()
	r := run(t, args...)
	if r.Code != 0 {
		t.Fatalf("layerfs %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// mustRunIn is mustRun against another root.
func mustRunIn(t testing.TB, root string, args ...string) string {
	t.Helper()
	r := runWith(t, cmdOpts{root: root}, args...)
	if r.Code != 0 {
		t.Fatalf("layerfs --root %s %s: exit %d\nstdout: %s\nstderr: %s", root, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// containerIDIn is the full ID (docker's 64 hex digits) of the container name
// in root ("" for the test's own), as inspect shows it.
func containerIDIn(t testing.TB, root, name string) string {
	t.Helper()
	if root == "" {
		root = rootFor(t)
	}
	id := strings.TrimSpace(mustRunIn(t, root, "inspect", "-f", "{{.Id}}", name))
	if !isContainerID(id) {
		t.Fatalf("inspect -f {{.Id}} %s = %q, want 64 hex digits", name, id)
	}
	return id
}

// psQuietIn is what ps -q prints for the containers names in root ("" for the
// test's own): their 12-hex-digit IDs, a line each.
func psQuietIn(t testing.TB, root string, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		b.WriteString(containerIDIn(t, root, n)[:12] + "\n")
	}
	return b.String()
}

// isContainerID tells whether s is a full container ID: 64 lowercase hex digits.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// busyboxRootfs is a small rootfs tar (busybox from /bin/busybox plus a few applet
// links and files), made once per test binary run.
func busyboxRootfs(t testing.TB) string {
	t.Helper()
	busyboxOnce.Do(func() {
		bb, err := exec.LookPath("busybox")
		if err != nil {
			bb = "/bin/busybox"
		}
		dir, err := os.MkdirTemp(workDir, "busybox-")
		if err != nil {
			busyboxErr = err
			return
		}
		rootfs := filepath.Join(dir, "rootfs")
		for _, d := range []string{"bin", "etc", "tmp", "data/html"} {
			os.MkdirAll(filepath.Join(rootfs, d), 0o755)
		}
		data, err := os.ReadFile(bb)
		if err != nil {
			busyboxErr = err
			return
		}
		os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755)
		for _, app := range []string{"sh", "ls", "cat", "echo", "mkdir", "rm", "touch"} {
			os.Symlink("busybox", filepath.Join(rootfs, "bin", app))
		}
		os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
		os.WriteFile(filepath.Join(rootfs, "data/html/index.html"), []byte("<h1>Busybox test page</h1>\n"), 0o644)
		busyboxTar = filepath.Join(dir, "rootfs.tar")
		out, err := exec.Command("tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C", rootfs, "-cf", busyboxTar, ".").CombinedOutput()
		if err != nil {
			busyboxErr = fmt.Errorf("tar: %v: %s", err, out)
		}
	})
	if busyboxErr != nil {
		t.Fatalf("busybox rootfs: %v", busyboxErr)
	}
	return busyboxTar
}

var (
	busyboxOnce sync.Once
	busyboxTar  string
	busyboxErr  error
)

// importBusybox imports the busybox rootfs into t's root as ref and returns its ID.
func importBusybox(t testing.TB, ref string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, "import", "-q", "-c", `CMD ["/bin/sh"]`, busyboxRootfs(t), ref))
}

// --- shared helpers: tar surgery, tree snapshots, blobs ---

type tarFileEntry struct {
	hdr  *tar.Header
	body []byte
}

func readTarFile(t testing.TB, path string) []tarFileEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tarFileEntry
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarFileEntry{hdr: h, body: b})
	}
}

func writeTarEntries(t testing.TB, entries []tarFileEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := *e.hdr
		h.Size = int64(len(e.body))
		if h.Typeflag == tar.TypeDir {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	return buf.Bytes()
}

func cloneEntries(in []tarFileEntry) []tarFileEntry {
	out := make([]tarFileEntry, len(in))
	for i, e := range in {
		h := *e.hdr
		out[i] = tarFileEntry{hdr: &h, body: e.body}
	}
	return out
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func digestOf(b []byte) digestT { return digestT("sha256:" + sha256Hex(b)) }

// storeCmp is how a store is compared before and after an operation that must
// leave it as it was: everything treecmp records but directory mtimes (a temp file
// made and removed again moves them).
var storeCmp = treecmp.Options{NoDirMtime: true}

// diffTrees lists what differs between two snapshots, one line each, sorted.
func diffTrees(a, b treecmp.Tree) string { return strings.Join(treecmp.Diff(a, b, storeCmp), "\n") }

func sameFile(t testing.TB, a, b string) bool {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// treeSnapshot snapshots everything under root (see storeCmp).
func treeSnapshot(t testing.TB, root string) treecmp.Tree {
	t.Helper()
	tr, err := treecmp.Snapshot(root, storeCmp)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// blobFiles lists the blobs in root's store as digests, sorted.
func blobFiles(t testing.TB, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "store", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, "sha256:"+e.Name())
	}
	sort.Strings(out)
	return out
}

// digestT is go-digest's Digest.
type digestT = godigest.Digest

// buildGoProgram builds the one-file Go program src, static, into bin (a test's
// helper process or a program for an image).
func buildGoProgram(t *testing.T, bin, src string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module helper\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
}
