package integration

// buildah with layerfs as its overlay mount_program: `buildah bud --layers` of a
// Dockerfile whose RUN steps change what earlier steps left in lower layers (the
// way real builds use a union filesystem), then `buildah run` and `buildah commit`
// on a working container. The oracle is the same build through buildah's vfs
// driver, which copies whole trees and has no union to get wrong.
//
// fuse-overlayfs is no oracle here: with buildah 1.28's containers/storage,
// fuse-overlayfs 1.10 loses opaque directories from its layers (`rm -rf d &&
// mkdir d` over a lower d commits a d that still shows the lower files).

import (
	"bytes"
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

// buildahEnv is a buildah with its own storage (graphroot, runroot, tmpdir in a
// temp dir): driver vfs, or overlay mounted by mountProgram with the -o options
// mountOpt ("" for none).
type buildahEnv struct {
	t   *testing.T
	dir string
	env []string
}

func newBuildahEnv(t *testing.T, mountProgram, mountOpt string) *buildahEnv {
	t.Helper()
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "buildah")
	testenv.RequireTool(t, "runc") // crun refuses this machine's hybrid cgroups
	dir, err := os.MkdirTemp("", "bh")
	if err != nil {
		t.Fatal(err)
	}
	conf := `[storage]
driver = "vfs"
graphroot = "` + dir + `/graph"
runroot = "` + dir + `/run"
`
	if mountProgram != "" {
		conf = strings.Replace(conf, `"vfs"`, `"overlay"`, 1) + `
[storage.options.overlay]
mount_program = "` + mountProgram + `"
`
		if mountOpt != "" {
			conf += `mountopt = "` + mountOpt + `"
`
		}
	}
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// As for podman (podman_test.go): limits under the sandbox's hard ones, no
	// network, runc.
	cc := write("containers.conf", `[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
`)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &buildahEnv{
		t:   t,
		dir: dir,
		env: append(os.Environ(), "CONTAINERS_STORAGE_CONF="+write("storage.conf", conf), "CONTAINERS_CONF="+cc, "TMPDIR="+tmp),
	}
	t.Cleanup(b.cleanup)
	return b
}

func (b *buildahEnv) run(args ...string) (string, string, error) {
	b.t.Helper()
	return runLogged(b.t, b.env, "buildah", args, args)
}

func (b *buildahEnv) ok(args ...string) string {
	b.t.Helper()
	out, errOut, err := b.run(args...)
	if err != nil {
		b.t.Fatalf("buildah %s: %v: %s%s", strings.Join(args, " "), err, out, errOut)
	}
	return strings.TrimSpace(out)
}

// cleanup removes buildah's containers and images, clears any mount left under
// the env's dir (containers/storage's own bind mount of its overlay dir is
// expected; a FUSE mount is a leak) and removes the dir.
func (b *buildahEnv) cleanup() {
	b.run("rm", "-a")
	b.run("rmi", "-a", "-f")
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	lines := strings.Split(string(mi), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) < 5 || !strings.HasPrefix(f[4], b.dir+"/") {
			continue
		}
		if !strings.HasSuffix(f[4], "/graph/overlay") {
			b.t.Errorf("buildah left a mount at %s", f[4])
			exec.Command("fusermount3", "-u", "-z", f[4]).Run()
		}
		exec.Command("umount", "-l", f[4]).Run()
	}
	os.RemoveAll(b.dir)
}

// buildahDockerfile: each RUN is a layer (bud --layers), so every step works over
// the lower layers the steps before it made. /vol is a host dir mounted as an
// overlay (bud -v DIR:/vol:O, which the mount_program mounts too): its changes
// must not reach the host dir.
const buildahDockerfile = `FROM busybox:test AS tools
RUN ["/bin/busybox", "--install", "-s", "/bin"]

FROM tools AS first
RUN set -e; mkdir -p /out/sub; echo from-first > /out/s; echo deep > /out/sub/f; \
    ln /out/s /out/s-link; ln -s sub/f /out/sym; chown -R 5:6 /out/sub; chmod 0640 /out/s; \
    touch -h -d @1000000000 /out/s /out/sym /out/sub/f

FROM tools
RUN set -e; mkdir -p /w/keep /w/gone /w/mvsrc/inner/deeper /w/opq/sub /w/d2f /w/lnk /w/perm /w/many; \
    echo keep > /w/keep/f; echo gone > /w/gone/f; echo inner > /w/mvsrc/inner/f; \
    echo deeper > /w/mvsrc/inner/deeper/g; echo top > /w/mvsrc/f; ln /w/mvsrc/f /w/mvsrc/inner/f-link; \
    echo o1 > /w/opq/a; echo o2 > /w/opq/sub/b; echo d > /w/d2f/x; echo f > /w/f2d; \
    echo link > /w/hl; ln /w/hl /w/lnk/hl-lower; echo mode > /w/mode; echo own > /w/own; \
    ln -s keep/f /w/sym; ln -s keep /w/symdir; \
    seq 1 500000 > /w/big; echo tail >> /w/big; seq 1 300000 | head -c 1310720 > /w/mid; \
    echo data | dd of=/w/sparse bs=4k seek=512 conv=sync 2>/dev/null; \
    mkdir -m 0700 /w/perm/private; echo secret > /w/perm/private/s; chown -R 1000:1000 /w/perm; chmod 1777 /w/perm; \
    i=0; while [ $i -lt 300 ]; do echo $i > /w/many/f$i; i=$((i+1)); done; \
    mkfifo /w/fifo; echo spaced > "/w/a b"; \
    find /w -exec touch -h -d @1000000000 {} +

RUN set -e; rm -rf /w/gone; mv /w/mvsrc /w/mvdst; echo changed >> /w/mvdst/inner/f; \
    rm -rf /w/opq; mkdir /w/opq; echo new > /w/opq/c; \
    rm -rf /w/d2f; echo nowfile > /w/d2f; rm /w/f2d; mkdir /w/f2d; echo in > /w/f2d/y; \
    ln /w/hl /w/hl2; chmod 600 /w/mode; chown 1:2 /w/own; rm /w/sym; ln -s mvdst/f /w/sym; \
    echo more >> /w/big; dd if=/dev/zero of=/w/mid bs=4k seek=3 count=1 conv=notrunc 2>/dev/null; \
    mkdir /w/gone; echo again > /w/gone/g; \
    i=0; while [ $i -lt 300 ]; do rm /w/many/f$i; i=$((i+2)); done; \
    echo priv >> /w/perm/private/s; chmod 0750 /w/keep; sed -i s/keep/kept/ /w/keep/f; \
    mv /w/symdir /w/symdir2; rm /w/fifo; mkdir /w/fifo; truncate -s 1M /w/sparse

RUN set -e; rm /w/d2f; mkdir /w/d2f; echo back > /w/d2f/z; rm -rf /w/f2d; echo file > /w/f2d; \
    ln /w/hl /w/hl3; echo x >> /w/hl2; mv /w/mvdst/inner /w/inner2; mv /w/mvdst /w/mvsrc; \
    chmod 4755 /w/own; mv /w/opq /w/opq-moved; mkdir /w/opq; \
    cp -a /w/many /w/many-copy; rm -rf /w/many; mv /w/many-copy /w/many; \
    mv /w/gone/g /w/g-moved; rmdir /w/gone; touch -d @1100000000 /w/keep/f; \
    echo appended >> /w/lnk/hl-lower; chown -R 3:4 /w/inner2; mv "/w/a b" "/w/a c"

COPY ctx/ /c/
COPY ctx/dir /w/keep/
ADD files.tar /w/
COPY --from=first /out/ /got/
COPY --from=first --chown=7:8 /out/s /got2/s
RUN set -e; rm -rf /c/dir/sub; ln -s /got /c/dir/sub; echo after-copy >> /c/a.txt; \
    mv /w/keep /w/kept; rm -rf /got/sub && mkdir /got/sub; \
    cat /vol/sub/h > /w/from-vol; echo changed >> /vol/sub/h; rm -rf /vol/sub; mkdir /vol/new; ls -A /vol > /w/vol-list
`

// buildahChanges is what `buildah run` does in a working container made from the
// built image, before `buildah commit`; buildahUserChanges runs as user 1000 in
// the dirs it owns (lower, one private to it, one sticky).
const buildahChanges = `set -e; echo run >> /w/big; rm -rf /w/kept/sub; mv /w/inner2 /w/inner3; \
rm /w/hl; echo changed > /w/hl3; mkdir /w/opq-host/new; chmod 0700 /w/opq-moved; \
rm -rf /w/many && mkdir /w/many && echo one > /w/many/one`

const buildahUserChanges = `set -e; echo user >> /w/perm/private/s; mkdir /w/perm/private/new; \
echo u > /w/perm/u; mv /w/perm/private/s /w/perm/private/s-moved`

// buildahContext writes the build context: plain files with their modes, a dir
// with a symlink and hard links, a 2 MiB file, and a tar that ADD unpacks over
// /w (over dirs and files of the lower layers).
func buildahContext(t *testing.T) string {
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"Dockerfile":        buildahDockerfile,
		"ctx/a.txt":         "a\n",
		"ctx/dir/b":         "b\n",
		"ctx/dir/sub/c":     "c\n",
		"tarsrc/mvsrc/f":    "over a lower file\n",
		"tarsrc/opq/t":      "into an opaque dir\n",
		"tarsrc/newdir/n":   "new\n",
		"tarsrc/many/f1":    "replaced\n",
		"tarsrc/gone-again": "x\n",
	})
	big := bytes.Repeat([]byte("0123456789abcdef"), 128<<10)
	if err := os.WriteFile(filepath.Join(ctx, "ctx/big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(ctx, "ctx/a.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b", filepath.Join(ctx, "ctx/dir/lnk")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(ctx, "ctx/dir/b"), filepath.Join(ctx, "ctx/dir/b2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(ctx, "tarsrc/newdir/n"), filepath.Join(ctx, "tarsrc/newdir/n2")); err != nil {
		t.Fatal(err)
	}
	// user.* xattrs, which COPY and ADD's unpacking keep (busybox cannot set any).
	for _, p := range []string{"ctx/a.txt", "ctx/dir", "tarsrc/newdir/n", "tarsrc/opq"} {
		if err := unix.Setxattr(filepath.Join(ctx, p), "user.buildah", []byte(p), 0); err != nil {
			t.Skipf("setxattr in the build context: %v", err)
		}
	}
	tarTree(t, filepath.Join(ctx, "tarsrc"), filepath.Join(ctx, "files.tar"))
	if err := os.RemoveAll(filepath.Join(ctx, "tarsrc")); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// buildahResult is what one buildah setup made: the built image's tree, the
// working container's tree after `buildah run`, and the committed image's tree.
type buildahResult struct {
	built, ran, committed treecmp.Tree
}

// buildahScenario builds buildahDockerfile with b, changes a container of the
// result from the host (buildahHostChanges) and with buildah run, and commits
// it. It returns the trees as the setup's own mounts show them, or why the
// runtime was refused.
func buildahScenario(t *testing.T, b *buildahEnv, archive, ctx string) (res buildahResult, refusal string) {
	b.ok("pull", "-q", "docker-archive:"+archive)
	vol := t.TempDir()
	writeFiles(t, vol, map[string]string{"sub/h": "host\n"})
	if out, errOut, err := b.run("bud", "--layers", "--isolation", "oci", "-v", vol+":/vol:O", "-t", "out:1", ctx); err != nil {
		if why := environmentRefusal(errOut); why != "" {
			return res, why
		}
		t.Fatalf("buildah bud: %v: %s%s", err, out, errOut)
	}
	if got := readFileOr(filepath.Join(vol, "sub/h")); got != "host\n" {
		t.Errorf("host dir of the :O volume: sub/h = %q, want \"host\\n\"", got)
	}
	res.built = b.snapshotImage("out:1")
	c := b.ok("from", "-q", "out:1")
	buildahHostChanges(t, b.ok("mount", c), ctx)
	b.ok("run", c, "--", "/bin/sh", "-c", buildahChanges)
	b.ok("run", "--user", "1000:1000", c, "--", "/bin/sh", "-c", buildahUserChanges)
	res.ran = b.snapshot(b.ok("mount", c))
	b.ok("commit", "-q", c, "out:2")
	b.ok("unmount", c)
	res.committed = b.snapshotImage("out:2")
	return res, ""
}

// buildahHostChanges changes the working container mounted at mnt from the host,
// with GNU tools (cp -a, tar -x over lower dirs, sed -i, mv) and xattr calls.
func buildahHostChanges(t *testing.T, mnt, ctx string) {
	t.Helper()
	w := filepath.Join(mnt, "w")
	for _, args := range [][]string{
		{"cp", "-a", filepath.Join(ctx, "ctx"), filepath.Join(w, "hostcopy")},
		{"tar", "--xattrs", "--xattrs-include=*", "-C", filepath.Join(w, "mvsrc"), "-xpf", filepath.Join(ctx, "files.tar")},
		{"sed", "-i", "s/a/A/", filepath.Join(mnt, "c/a.txt")},
		{"mv", filepath.Join(w, "opq"), filepath.Join(w, "opq-host")},
		{"ln", filepath.Join(w, "own"), filepath.Join(w, "own-link")},
		{"chmod", "-R", "g+w", filepath.Join(w, "d2f")},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := unix.Setxattr(filepath.Join(w, "mode"), "user.host", []byte("1"), 0); err != nil {
		t.Errorf("setxattr w/mode: %v", err)
	}
	if err := unix.Removexattr(filepath.Join(w, "newdir/n"), "user.buildah"); err != nil {
		t.Errorf("removexattr w/newdir/n: %v", err)
	}
}

func readFileOr(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// snapshotImage snapshots the tree of a new working container of image.
func (b *buildahEnv) snapshotImage(image string) treecmp.Tree {
	b.t.Helper()
	c := b.ok("from", "-q", image)
	tr := b.snapshot(b.ok("mount", c))
	b.ok("unmount", c)
	b.ok("rm", c)
	return tr
}

func (b *buildahEnv) snapshot(dir string) treecmp.Tree {
	b.t.Helper()
	tr, err := treecmp.Snapshot(dir, buildahCmp)
	if err != nil {
		b.t.Fatal(err)
	}
	return tr
}

// buildahCmp: the mount root's own metadata is the container's, and mtimes are
// compared by compareBuildah's own rule.
var buildahCmp = treecmp.Options{NoRootMeta: true, NoMtime: true}

// compareBuildah fails t with every difference between want and got: everything
// treecmp compares but mtimes, and the mtimes of entries the oracle shows older
// than start (set by touch -d in the build, or the base image's), which copy-up,
// chmod, chown, rename and COPY --from must keep; an entry the oracle shows as
// changed during the test must show as changed in got too.
func compareBuildah(t *testing.T, what string, want, got treecmp.Tree, start time.Time) {
	t.Helper()
	diffs := treecmp.Diff(want, got, buildahCmp)
	for p, w := range want {
		g := got[p]
		if g == nil || p == "." {
			continue
		}
		old := w.Mtime.Before(start)
		switch {
		case old && !g.Mtime.Equal(w.Mtime):
			diffs = append(diffs, p+": mtime = "+g.Mtime.UTC().Format(time.RFC3339)+", want "+w.Mtime.UTC().Format(time.RFC3339))
		case !old && g.Mtime.Before(start):
			diffs = append(diffs, p+": mtime = "+g.Mtime.UTC().Format(time.RFC3339)+", want one after the test's start (changed)")
		}
	}
	if len(diffs) > 0 {
		if len(diffs) > 60 {
			diffs = append(diffs[:60], "...")
		}
		t.Errorf("%s: tree differs from the vfs build's (%d differences):\n  %s", what, len(diffs), strings.Join(diffs, "\n  "))
	}
}

func TestBuildahBud(t *testing.T) {
	start := time.Now().Add(-time.Second)
	// Gated here, not only in the subtests: a subtest's skip would leave
	// nothing to compare.
	testenv.RequireRoot(t)
	testenv.RequireFUSE(t)
	testenv.RequireTool(t, "buildah")
	testenv.RequireTool(t, "runc")
	requireCompatMode(t, layerfsBin)
	e := newMountEnv(t)
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	e.ok("save", "-o", archive, e.image)
	ctx := buildahContext(t)

	// The builds at once (each has its own storage). A refusal of the runtime
	// counts against layerfs only if the vfs build was not refused too.
	setups := []struct{ name, opt string }{{"layerfs", ""}, {"layerfs-passthrough", "passthrough"}}
	var want buildahResult
	var wantWhy string
	got := make([]buildahResult, len(setups))
	gotWhy := make([]string, len(setups))
	t.Run("builds", func(t *testing.T) {
		t.Run("vfs", func(t *testing.T) {
			t.Parallel()
			want, wantWhy = buildahScenario(t, newBuildahEnv(t, "", ""), archive, ctx)
		})
		for i, s := range setups {
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				got[i], gotWhy[i] = buildahScenario(t, newBuildahEnv(t, layerfsBin, s.opt), archive, ctx)
			})
		}
	})
	if wantWhy != "" {
		t.Skipf("buildah cannot run containers here, not even with the vfs driver: %s", wantWhy)
	}
	for i, s := range setups {
		if gotWhy[i] != "" {
			t.Errorf("buildah bud with %s failed where vfs ran: %s", s.name, gotWhy[i])
		}
	}
	if t.Failed() || want.committed == nil {
		return
	}
	checkBuildahOracle(t, want)
	for i, s := range setups {
		if got[i].committed == nil {
			t.Fatalf("%s: no result", s.name)
		}
		compareBuildah(t, s.name+": built image", want.built, got[i].built, start)
		compareBuildah(t, s.name+": working container after buildah run", want.ran, got[i].ran, start)
		compareBuildah(t, s.name+": committed image", want.committed, got[i].committed, start)
	}
}

// checkBuildahOracle fails t if the vfs build did not do what the Dockerfile says
// in a few places: a comparison with a build that went wrong proves nothing.
func checkBuildahOracle(t *testing.T, res buildahResult) {
	t.Helper()
	tr := res.built
	for p, want := range map[string]bool{
		"w/opq/c": false, "w/opq": true, "w/opq/a": false, "w/opq-moved/c": true,
		"w/inner2/deeper/g": true, "w/mvsrc/inner": false, "w/gone": false,
		"w/kept/lnk": true, "got/s-link": true, "w/newdir/n2": true, "w/from-vol": true,
	} {
		if _, ok := tr[p]; ok != want {
			t.Errorf("vfs build: %s present = %v, want %v", p, ok, want)
		}
	}
	if _, ok := tr["w/perm/private/s"]; !ok {
		t.Errorf("vfs build: w/perm/private/s missing")
	}
	if e := tr["w/hl"]; e == nil || len(e.Group) != 3 {
		t.Errorf("vfs build: w/hl = %+v, want 3 hard links (hl2 is no link: the layer diff of `ln hl hl2` holds hl2 alone)", e)
	}
	if e := tr["w/newdir/n"]; e == nil || e.Xattrs["user.buildah"] != "tarsrc/newdir/n" {
		t.Errorf("vfs build: w/newdir/n = %+v, want xattr user.buildah from the ADDed tar", e)
	}
	if e := res.ran["w/mode"]; e == nil || e.Xattrs["user.host"] != "1" {
		t.Errorf("vfs container after the host's changes: w/mode = %+v, want xattr user.host", e)
	}
	for _, p := range []string{"w/hostcopy/dir/lnk", "w/opq-host/new", "w/perm/private/s-moved", "w/mvsrc/newdir/n2"} {
		if res.committed[p] == nil {
			t.Errorf("vfs committed image: %s missing", p)
		}
	}
	if e := tr["w/big"]; e == nil || e.Size < 3<<20 {
		t.Errorf("vfs build: w/big = %+v, want 3 MiB or more", e)
	}
}
