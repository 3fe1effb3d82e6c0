package integration

// End-to-end tests of cp (docker cp): the real binary, mounted and unmounted
// working containers of the busybox image.

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

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/internal/testenv"
	"github.com/layerfs/layerfs/internal/treecmp"
)

// cpHost makes a host tree to copy: f, and d with d/f1, d/sub/f2 and a symlink.
func cpHost(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"f": "F\n", "d/f1": "1\n", "d/sub/f2": "2\n"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/f2", filepath.Join(dir, "d/link")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cpMountedBy reports whether a mount of container name is live anywhere.
func cpMountedBy(name string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, " - "); ok {
			if f := strings.Fields(rest); len(f) > 1 && f[1] == "layerfs:"+name {
				return true
			}
		}
	}
	return false
}

func cpReadFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Error(err)
	}
	return string(b)
}

func cpTreesEqual(t *testing.T, want, got string) {
	t.Helper()
	o := treecmp.Options{NoMtime: true, NoRootMeta: true}
	a, err := treecmp.Snapshot(want, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := treecmp.Snapshot(got, o)
	if err != nil {
		t.Fatal(err)
	}
	if d := treecmp.Diff(a, b, o); len(d) > 0 {
		t.Errorf("%s and %s differ:\n%s", want, got, strings.Join(d, "\n"))
	}
}

// Host to a mounted container and back, files and dirs, with docker's rules.
func TestCpMountedRoundTrip(t *testing.T) {
	e := newMountEnv(t)
	mp := e.dir()
	e.ok("mount", "--name", "cpweb", e.image, mp)
	host := cpHost(t)

	e.ok("cp", filepath.Join(host, "f"), "cpweb:/tmp/")
	e.ok("cp", filepath.Join(host, "d"), "cpweb:/tmp/newd")     // created with that name
	e.ok("cp", filepath.Join(host, "d"), "cpweb:/data")         // into the existing dir
	e.ok("cp", filepath.Join(host, "d")+"/.", "cpweb:tmp/cont") // contents; a relative path is from /
	if got := cpReadFile(t, filepath.Join(mp, "tmp/f")); got != "F\n" {
		t.Errorf("tmp/f = %q", got)
	}
	cpTreesEqual(t, filepath.Join(host, "d"), filepath.Join(mp, "tmp/newd"))
	cpTreesEqual(t, filepath.Join(host, "d"), filepath.Join(mp, "data/d"))
	cpTreesEqual(t, filepath.Join(host, "d"), filepath.Join(mp, "tmp/cont"))
	e.fails("no such directory", "cp", filepath.Join(host, "f"), "cpweb:/nodir/")
	e.fails("cannot copy directory", "cp", filepath.Join(host, "d"), "cpweb:/etc/passwd")

	back := t.TempDir()
	e.ok("cp", "cpweb:/tmp/newd", filepath.Join(back, "d"))
	cpTreesEqual(t, filepath.Join(host, "d"), filepath.Join(back, "d"))
	e.ok("cp", "cpweb:/data/html/.", back)
	if got := cpReadFile(t, filepath.Join(back, "index.html")); got != "<h1>Busybox test page</h1>\n" {
		t.Errorf("index.html = %q", got)
	}
	e.ok("cp", "cpweb:/etc/passwd", filepath.Join(back, "d")) // into a dir
	if got := cpReadFile(t, filepath.Join(back, "d/passwd")); !strings.HasPrefix(got, "root:") {
		t.Errorf("d/passwd = %q", got)
	}
	if got := e.psField("cpweb", "Mount"); got != "mounted" {
		t.Errorf("status after cp = %q, want mounted", got)
	}
}

// An unmounted container is mounted for the copy and unmounted again; the change
// is in its upper dir: diff lists it, a later mount shows it.
func TestCpUnmounted(t *testing.T) {
	e := newMountEnv(t)
	mp := e.dir()
	e.ok("mount", "--name", "cpoff", e.image, mp)
	e.ok("umount", "cpoff")
	host := cpHost(t)

	e.ok("cp", filepath.Join(host, "f"), "cpoff:/etc/f")
	e.ok("cp", filepath.Join(host, "d"), "cpoff:/d")
	if got := e.psField("cpoff", "Mount"); got != "unmounted" {
		t.Errorf("status after cp = %q, want unmounted", got)
	}
	if cpMountedBy("cpoff") {
		t.Error("a mount of cpoff is left after cp")
	}
	upper := filepath.Join(e.root, "work/cpoff/upper")
	if got := cpReadFile(t, filepath.Join(upper, "etc/f")); got != "F\n" {
		t.Errorf("upper etc/f = %q", got)
	}
	diff := e.ok("diff", "cpoff")
	for _, want := range []string{"A /etc/f\n", "A /d\n", "A /d/sub/f2\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff = %q, want %q in it", diff, want)
		}
	}

	// Reading leaves the container as it was.
	out := t.TempDir()
	e.ok("cp", "cpoff:/d", filepath.Join(out, "d"))
	e.ok("cp", "cpoff:/etc/passwd", out)
	cpTreesEqual(t, filepath.Join(host, "d"), filepath.Join(out, "d"))
	if got := e.ok("diff", "cpoff"); got != diff {
		t.Errorf("diff after reading = %q, want %q", got, diff)
	}
	if cpMountedBy("cpoff") {
		t.Error("a mount of cpoff is left after cp")
	}

	e.ok("mount", "--name", "cpoff", mp)
	if got := cpReadFile(t, filepath.Join(mp, "etc/f")); got != "F\n" {
		t.Errorf("etc/f after remount = %q", got)
	}
	cpTreesEqual(t, filepath.Join(host, "d"), filepath.Join(mp, "d"))
}

// "-" streams a tar: from STDIN into a container dir, of a container path to STDOUT.
func TestCpTarStreams(t *testing.T) {
	e := newMountEnv(t)
	e.ok("mount", "--name", "cptar", e.image, e.dir())
	e.ok("umount", "cptar")

	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	tw.WriteHeader(&tar.Header{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o750})
	tw.WriteHeader(&tar.Header{Name: "x/y", Typeflag: tar.TypeReg, Mode: 0o600, Size: 2})
	tw.Write([]byte("y\n"))
	tw.Close()
	r := runWith(t, cmdOpts{root: e.root, stdin: &in}, "cp", "-", "cptar:/tmp")
	if r.Code != 0 {
		t.Fatalf("cp - cptar:/tmp: exit %d: %s", r.Code, r.Stderr)
	}
	res := runWith(t, cmdOpts{root: e.root, stdin: strings.NewReader("")}, "cp", "-", "cptar:/etc/passwd")
	if res.Code == 0 || !strings.Contains(res.Stderr, `destination "cptar:/etc/passwd" must be a directory`) {
		t.Errorf("cp - to a file: exit %d, %q", res.Code, res.Stderr)
	}

	out := e.ok("cp", "cptar:/tmp/x", "-")
	tr := tar.NewReader(strings.NewReader(out))
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got = append(got, h.Name+" "+string(b)+" "+os.FileMode(h.Mode).String())
	}
	want := []string{"x/  -rwxr-x---", "x/y y\n -rw-------"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("cp cptar:/tmp/x - = %q, want %q", got, want)
	}
	if cpMountedBy("cptar") {
		t.Error("a mount of cptar is left after cp")
	}
}

// Into the container files are root's, unless -a keeps the source's owners.
func TestCpArchiveOwners(t *testing.T) {
	e := newMountEnv(t)
	mp := e.dir()
	e.ok("mount", "--name", "cpown", e.image, mp)
	f := filepath.Join(cpHost(t), "f")
	if err := os.Chown(f, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	e.ok("cp", f, "cpown:/tmp/plain")
	e.ok("cp", "-a", f, "cpown:/tmp/kept")
	for name, want := range map[string][2]uint32{"plain": {0, 0}, "kept": {1234, 5678}} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(mp, "tmp", name), &st); err != nil {
			t.Fatal(err)
		}
		if got := [2]uint32{st.Uid, st.Gid}; got != want {
			t.Errorf("/tmp/%s owner = %v, want %v", name, got, want)
		}
	}
	out := t.TempDir()
	e.ok("cp", "-a", "cpown:/tmp/kept", out)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(out, "kept"), &st); err != nil || st.Uid != 1234 {
		t.Errorf("cp -a out: owner %d, %v; want 1234", st.Uid, err)
	}
}

// A symlink SRC_PATH is copied as a symlink; -L copies what it points to.
func TestCpFollowLink(t *testing.T) {
	e := newMountEnv(t)
	e.ok("mount", "--name", "cplink", e.image, e.dir())
	out := t.TempDir()
	e.ok("cp", "cplink:/bin/sh", filepath.Join(out, "sh"))
	if l, err := os.Readlink(filepath.Join(out, "sh")); l != "busybox" {
		t.Errorf("cp /bin/sh made %q, %v; want a symlink to busybox", l, err)
	}
	e.ok("cp", "-L", "cplink:/bin/sh", filepath.Join(out, "sh2"))
	fi, err := os.Lstat(filepath.Join(out, "sh2"))
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < 100000 {
		t.Errorf("cp -L /bin/sh made %v, %v; want the busybox binary", fi, err)
	}
}

// Symlinks in the container that name a host dir, absolutely or by climbing
// with .., lead nowhere outside the container, mounted or not; nothing outside
// is read or written.
func TestCpHostileSymlinks(t *testing.T) {
	e := newMountEnv(t)
	mp := e.dir()
	e.ok("mount", "--name", "cpevil", e.image, mp)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("TOPSECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(outside, "sub"), 0o755)
	for name, target := range map[string]string{
		"abs": outside,
		"rel": strings.Repeat("../", 30) + strings.TrimPrefix(outside, "/"),
	} {
		if err := os.Symlink(target, filepath.Join(mp, name)); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshotDir(t, outside)
	host := cpHost(t)
	attempts := func() {
		for _, l := range []string{"abs", "rel"} {
			for _, dst := range []string{"/" + l, "/" + l + "/", "/" + l + "/secret", "/" + l + "/sub/", "/" + l + "/sub/x"} {
				run(t, "cp", filepath.Join(host, "f"), "cpevil:"+dst)
				run(t, "cp", filepath.Join(host, "d"), "cpevil:"+dst)
			}
			for _, src := range []string{"/" + l + "/secret", "/" + l + "/", "/" + l + "/."} {
				for _, flag := range []string{"-q", "-L"} {
					r := runWith(t, cmdOpts{root: e.root}, "cp", flag, "cpevil:"+src, "-")
					if strings.Contains(r.Stdout, "TOPSECRET") {
						t.Errorf("cp %s cpevil:%s - read the host's file", flag, src)
					}
				}
			}
			var in bytes.Buffer
			tw := tar.NewWriter(&in)
			tw.WriteHeader(&tar.Header{Name: l + "/sub/x", Typeflag: tar.TypeReg, Mode: 0o644})
			tw.Close()
			runWith(t, cmdOpts{root: e.root, stdin: bytes.NewReader(in.Bytes())}, "cp", "-", "cpevil:/")
		}
	}
	attempts()
	e.ok("umount", "cpevil")
	attempts() // through cp's own mount
	if after := snapshotDir(t, outside); after != before {
		t.Errorf("the host dir changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// A hostile tar on STDIN is refused whole and changes nothing.
func TestCpHostileTar(t *testing.T) {
	e := newMountEnv(t)
	e.ok("mount", "--name", "cpbad", e.image, e.dir())
	e.ok("umount", "cpbad")
	diff := e.ok("diff", "cpbad")
	for name, hdrs := range map[string][]tar.Header{
		"dotdot":                  {{Name: "ok", Typeflag: tar.TypeReg}, {Name: "../../../../escape", Typeflag: tar.TypeReg}},
		"absolute above the root": {{Name: "/../../etc/escape", Typeflag: tar.TypeReg}},
		"through a symlink": {
			{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"},
			{Name: "l/escape", Typeflag: tar.TypeReg}},
		"hard link out": {{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
	} {
		var in bytes.Buffer
		tw := tar.NewWriter(&in)
		for _, h := range hdrs {
			h.Mode = 0o644
			tw.WriteHeader(&h)
		}
		tw.Close()
		r := runWith(t, cmdOpts{root: e.root, stdin: &in}, "cp", "-", "cpbad:/tmp")
		if r.Code == 0 || !strings.Contains(r.Stderr, "refusing the tar archive") {
			t.Errorf("%s: exit %d, stderr %q; want it refused", name, r.Code, r.Stderr)
		}
	}
	if got := e.ok("diff", "cpbad"); got != diff {
		t.Errorf("diff after refused tars = %q, want %q", got, diff)
	}
	if cpMountedBy("cpbad") {
		t.Error("a mount of cpbad is left after cp")
	}
}

// Errors: one line naming the thing, exit 1.
func TestCpErrors(t *testing.T) {
	e := newMountEnv(t)
	e.ok("mount", "--name", "cperr", "--read-only", e.image, e.dir())
	f := filepath.Join(cpHost(t), "f")
	out := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cp", "nope:/etc", out}, "Error: No such container: nope\n"},
		{[]string{"cp", "cperr:/nope", out}, "Error: No such container:path: cperr:/nope\n"},
		{[]string{"cp", f, "cperr:/tmp/"}, "Error: container cperr is mounted read-only\n"},
		{[]string{"cp", f, out}, "Error: must specify at least one container source\n"},
		{[]string{"cp", "cperr:/etc", "cperr:/tmp"}, "Error: copying between containers is not supported\n"},
		{[]string{"cp", "cperr:/etc/passwd", filepath.Join(out, "no/such")}, "Error: invalid output path: directory \"" + filepath.Join(out, "no") + "\" does not exist\n"},
	} {
		_, stderr, code := e.run(tc.args...)
		if code != 1 || stderr != tc.want {
			t.Errorf("layerfs %s: exit %d, stderr %q; want 1, %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

// On a terminal cp says what it copied, as docker does (and nothing when STDOUT
// is not one, unless --quiet=false), and refuses to write a tar there.
func TestCpTerminal(t *testing.T) {
	e := newMountEnv(t)
	script := testenv.RequireTool(t, "script")
	e.ok("mount", "--name", "cptty", e.image, e.dir())
	f := filepath.Join(cpHost(t), "f")
	if _, stderr, _ := e.run("cp", f, "cptty:/tmp/"); stderr != "" {
		t.Errorf("cp, STDOUT no terminal: stderr %q, want nothing", stderr)
	}
	if _, stderr, _ := e.run("cp", "--quiet=false", f, "cptty:/tmp/"); stderr != "Successfully copied 2.05kB to cptty:/tmp/\n" {
		t.Errorf("cp --quiet=false: stderr %q", stderr)
	}
	tty := func(args string) string {
		line := fmt.Sprintf("%s --root %s %s", layerfsBin, e.root, args)
		out, _ := exec.Command(script, "-qec", line, "/dev/null").CombinedOutput()
		return strings.ReplaceAll(string(out), "\r", "")
	}
	if out := tty("cp " + f + " cptty:/tmp/g"); out != "Successfully copied 2.05kB to cptty:/tmp/g\n" {
		t.Errorf("cp on a terminal printed %q", out)
	}
	if out := tty("cp -q " + f + " cptty:/tmp/g"); out != "" {
		t.Errorf("cp -q on a terminal printed %q", out)
	}
	if out := tty("cp cptty:/tmp -"); !strings.Contains(out, "refusing to write a tar archive to a terminal") {
		t.Errorf("cp cptty:/tmp - on a terminal printed %q", out)
	}
}
