package integration

// Harness of the commit tests: a store root with a base image built from a tree made
// in code (every file type, owners, modes, xattrs, hard links, odd names), a plain
// reference copy of that tree, and helpers to apply the same changes to both.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"github.com/layerfs/layerfs/internal/treecmp"
	"golang.org/x/sys/unix"
)

// commitEnv is one store root holding the base image "base:1" made from baseDir.
type commitEnv struct {
	t       *testing.T
	root    string
	baseDir string
	mu      sync.Mutex
	mounts  []string
}

// layerfsBinary is the binary TestMain (main_test.go) built.
func layerfsBinary(t *testing.T) string {
	t.Helper()
	if layerfsBin == "" {
		t.Fatal("layerfs binary not built (TestMain)")
	}
	return layerfsBin
}

func newCommitEnv(t *testing.T) *commitEnv {
	t.Helper()
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	e := &commitEnv{t: t, root: t.TempDir(), baseDir: filepath.Join(t.TempDir(), "base")}
	t.Cleanup(e.cleanup)
	makeBaseTree(t, e.baseDir)
	tarPath := filepath.Join(t.TempDir(), "base.tar")
	tarTree(t, e.baseDir, tarPath)
	e.ok("import", tarPath, "base:1")
	return e
}

// cleanup unmounts whatever the test left mounted.
func (e *commitEnv) cleanup() {
	e.run("umount", "--all")
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.mounts {
		if isMounted(d) {
			e.t.Errorf("%s still mounted after umount --all", d)
			exec.Command("fusermount3", "-u", "-z", d).Run()
			if isMounted(d) {
				exec.Command("umount", "-l", d).Run()
			}
		}
	}
}

func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// mountpoint returns a fresh path for a mount (mount creates it).
func (e *commitEnv) mountpoint() string {
	d := filepath.Join(e.t.TempDir(), "mnt")
	e.mu.Lock()
	e.mounts = append(e.mounts, d)
	e.mu.Unlock()
	return d
}

// mount mounts image as container name and returns the mountpoint.
func (e *commitEnv) mount(name, image string) string {
	e.t.Helper()
	d := e.mountpoint()
	e.ok("mount", "--name", name, image, d)
	t := e.t
	t.Cleanup(func() {
		if isMounted(d) {
			e.t = t
			e.run("umount", d)
		}
	})
	return d
}

func (e *commitEnv) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := exec.Command(layerfsBinary(e.t), append([]string{"--root", e.root}, args...)...)
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=")
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("layerfs %v: %v", args, err)
	}
	return o.String(), se.String(), code
}

func (e *commitEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("layerfs %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fails wants a non-zero exit and want in stderr (ignoring case).
func (e *commitEnv) fails(want string, args ...string) {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code == 0 {
		e.t.Fatalf("layerfs %s: exit 0 (%s), want an error", strings.Join(args, " "), out)
	}
	if !strings.Contains(strings.ToLower(errOut), strings.ToLower(want)) {
		e.t.Errorf("layerfs %s: stderr %q, want it to contain %q", strings.Join(args, " "), errOut, want)
	}
}

// inspect returns `layerfs inspect REF`'s first element.
func (e *commitEnv) inspect(ref string) map[string]any {
	e.t.Helper()
	var v []map[string]any
	if err := json.Unmarshal([]byte(e.ok("inspect", ref)), &v); err != nil || len(v) != 1 {
		e.t.Fatalf("inspect %s: %v (%d images)", ref, err, len(v))
	}
	return v[0]
}

// storeManifest reads the manifest and config of a tagged image straight from the
// OCI layout (normalised ref, e.g. docker.io/library/x:1).
func (e *commitEnv) storeManifest(ref string) (layers []string, config map[string]any) {
	e.t.Helper()
	var idx struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	readJSON(e.t, filepath.Join(e.root, "store", "index.json"), &idx)
	for _, m := range idx.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] != ref {
			continue
		}
		var man struct {
			Config struct{ Digest string }
			Layers []struct{ Digest string }
		}
		readJSON(e.t, e.blobPath(m.Digest), &man)
		for _, l := range man.Layers {
			layers = append(layers, l.Digest)
		}
		readJSON(e.t, e.blobPath(man.Config.Digest), &config)
		return layers, config
	}
	e.t.Fatalf("no image %s in index.json", ref)
	return nil, nil
}

func (e *commitEnv) blobPath(d string) string {
	return filepath.Join(e.root, "store", "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// baseTime is the mtime of every entry of the base tree (each file a few ns apart).
var baseTime = time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)

// normTime is what normalizeTimes sets on entries the changes touched.
var normTime = time.Date(2021, 6, 7, 8, 9, 10, 123456789, time.UTC)

// odd names the base tree and the changes use.
var (
	longName   = strings.Repeat("l", 200) + ".txt"
	nonUTF8    = "caf\xe9-\xff\xfe.bin"
	deepPath   = filepath.Join("deep", strings.Repeat("d", 90), strings.Repeat("e", 90), strings.Repeat("f", 90), "leaf")
	baseXattrs = map[string]string{"user.origin": "base", "user.empty": ""}
)

// makeBaseTree writes the image's tree: what every change set starts from.
func makeBaseTree(t *testing.T, dir string) {
	t.Helper()
	b := treeBuilder{t: t, root: dir}
	b.dir(".", 0o755, 0, 0)
	for _, d := range []string{"etc", "etc/conf.d", "usr", "usr/bin", "usr/lib", "usr/share", "usr/share/doc", "usr/share/doc/pkg", "var", "var/lib", "var/lib/data", "var/log", "opt", "opt/app", "opt/app/sub", "dev", "run", "srv", "srv/www"} {
		b.dir(d, 0o755, 0, 0)
	}
	b.dir("home", 0o755, 0, 0)
	b.dir("home/user", 0o700, 1000, 1000)
	b.dir("tmp", 0o1777, 0, 0)
	b.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", 0o644, 0, 0)
	b.file("etc/motd", "welcome\n", 0o644, 0, 0)
	b.file("etc/shadow", "root:*:1::::::\n", 0o640, 0, 42)
	b.file("etc/conf.d/a.conf", "a=1\n", 0o644, 0, 0)
	b.file("etc/conf.d/b.conf", "b=2\n", 0o644, 0, 0)
	b.file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o4755, 0, 0)
	b.file("usr/lib/libx.so.1", strings.Repeat("ELF", 5000), 0o755, 0, 0)
	b.link("usr/lib/libx.so.1", "usr/lib/libx.so.1.0") // a hard link pair in the image
	b.symlink("libx.so.1", "usr/lib/libx.so")
	b.symlink("usr/lib", "lib")
	b.symlink("/nonexistent/target", "opt/dangling")
	b.file("usr/share/doc/pkg/README", strings.Repeat("read me\n", 100), 0o644, 0, 0)
	b.file("usr/share/doc/pkg/COPYING", "GPL\n", 0o644, 0, 0)
	for i := range 20 {
		b.file(fmt.Sprintf("var/lib/data/%02d.dat", i), strings.Repeat(fmt.Sprint(i), 100*i+1), 0o600, 0, 0)
	}
	b.file("home/user/.profile", "export PS1='$ '\n", 0o644, 1000, 1000)
	b.file("opt/app/config.json", `{"a": 1}`, 0o644, 0, 0)
	b.xattrs("opt/app/config.json", baseXattrs)
	b.file("opt/app/sub/data", "sub\n", 0o644, 0, 0)
	b.file("srv/www/index.html", "<h1>hi</h1>\n", 0o644, 33, 33)
	b.file(longName, "long\n", 0o644, 0, 0)
	b.file(nonUTF8, "latin1\n", 0o644, 0, 0)
	b.mkdirAll(filepath.Dir(deepPath))
	b.file(deepPath, "deep\n", 0o644, 0, 0)
	b.fifo("run/pipe", 0o600)
	b.mknod("dev/null", unix.S_IFCHR|0o666, unix.Mkdev(1, 3))
	b.setTimes(baseTime)
}

// tarTree writes dir as a PAX tar with xattrs and numeric owners (GNU tar).
func tarTree(t *testing.T, dir, out string) {
	t.Helper()
	cmd := exec.Command("tar", "--format=pax", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--sort=name", "-C", dir, "-cpf", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
}

// copyTree makes a plain copy of src at dst with everything preserved.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if b, err := exec.Command("cp", "-a", "--preserve=all", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, b)
	}
}

// treeOpts is what the round trips compare: everything but the root dir's own
// metadata (a mountpoint's root is the container's, not the image's). Directory
// mtimes are compared: copy-up keeps the parent dirs' times, as kernel overlayfs does.
var treeOpts = treecmp.Options{NoRootMeta: true}

// umociOpts also skips xattrs umoci cannot carry: an empty value. The layer has
// it as GNU tar writes it (SCHILY.xattr.user.empty=), which GNU tar, containerd
// and Apply restore; umoci reads Go's Header.Xattrs, which leaves out every
// empty PAX value (POSIX: an empty value unsets the keyword), so no encoding
// reaches it (its own writer drops one: "disallowed by PAX standard").
var umociOpts = treecmp.Options{NoRootMeta: true, SkipXattr: func(name string) bool {
	return name == "user.empty"
}}

// exportOpts: an export extracted with GNU tar.
var exportOpts = treecmp.Options{NoRootMeta: true}

func isPrivateXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.layerfs.") || strings.HasPrefix(name, "user.layerfs.")
}

// normalizeTimes sets normTime on every entry under root modified since `since`, so
// that two trees that got the same changes at different instants compare equal,
// while the mtimes the changes did not touch still have to survive the round trip.
func normalizeTimes(t *testing.T, root string, since time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(normTime.UnixNano()), unix.NsecToTimespec(normTime.UnixNano())}
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if time.Unix(st.Mtim.Unix()).Before(since) {
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, p) // after their children, which would bump them again
			return nil
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("utimes %s: %w", p, err)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0 && err == nil; i-- {
		if e := unix.UtimesNanoAt(unix.AT_FDCWD, dirs[i], ts, unix.AT_SYMLINK_NOFOLLOW); e != nil {
			err = fmt.Errorf("utimes %s: %w", dirs[i], e)
		}
	}
	if err != nil {
		t.Fatalf("normalize times in %s: %v", root, err)
	}
}

// treeBuilder writes the base tree; every error is fatal.
type treeBuilder struct {
	t     *testing.T
	root  string
	paths []string
}

func (b *treeBuilder) p(rel string) string { return filepath.Join(b.root, rel) }

func (b *treeBuilder) must(err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
}

func (b *treeBuilder) own(rel string, mode os.FileMode, uid, gid int) {
	b.t.Helper()
	b.must(os.Lchown(b.p(rel), uid, gid))
	b.must(os.Chmod(b.p(rel), mode))
}

func (b *treeBuilder) dir(rel string, mode os.FileMode, uid, gid int) {
	b.t.Helper()
	b.must(os.MkdirAll(b.p(rel), 0o755))
	b.own(rel, mode&0o777|setBits(mode), uid, gid)
	b.paths = append(b.paths, rel)
}

func (b *treeBuilder) mkdirAll(rel string) {
	b.t.Helper()
	b.must(os.MkdirAll(b.p(rel), 0o755))
	for d := rel; d != "." && d != "/"; d = filepath.Dir(d) {
		b.paths = append(b.paths, d)
	}
}

func (b *treeBuilder) file(rel, data string, mode os.FileMode, uid, gid int) {
	b.t.Helper()
	b.must(os.WriteFile(b.p(rel), []byte(data), 0o600))
	b.own(rel, mode&0o777|setBits(mode), uid, gid)
	b.paths = append(b.paths, rel)
}

func setBits(m os.FileMode) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

func (b *treeBuilder) link(old, new string) {
	b.t.Helper()
	b.must(os.Link(b.p(old), b.p(new)))
	b.paths = append(b.paths, new)
}

func (b *treeBuilder) symlink(target, rel string) {
	b.t.Helper()
	b.must(os.Symlink(target, b.p(rel)))
	b.paths = append(b.paths, rel)
}

func (b *treeBuilder) fifo(rel string, mode uint32) {
	b.t.Helper()
	b.must(unix.Mkfifo(b.p(rel), mode))
	b.paths = append(b.paths, rel)
}

func (b *treeBuilder) mknod(rel string, mode uint32, dev uint64) {
	b.t.Helper()
	b.must(unix.Mknod(b.p(rel), mode, int(dev)))
	b.paths = append(b.paths, rel)
}

func (b *treeBuilder) xattrs(rel string, x map[string]string) {
	b.t.Helper()
	for k, v := range x {
		b.must(unix.Lsetxattr(b.p(rel), k, []byte(v), 0))
	}
}

// setTimes gives every entry its own mtime near base (children before parents).
func (b *treeBuilder) setTimes(base time.Time) {
	b.t.Helper()
	for i := len(b.paths) - 1; i >= 0; i-- {
		ts := unix.NsecToTimespec(base.Add(time.Duration(i) * 1001 * time.Microsecond).UnixNano())
		b.must(unix.UtimesNanoAt(unix.AT_FDCWD, b.p(b.paths[i]), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
}
