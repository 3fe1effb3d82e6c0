package integration

// A bug hunt of import (docker import: a rootfs tarball -> a one-layer image) with
// hostile input. The rule: bad input never changes the store; it gets one line
// "Error: import FILE: ..." and a non-zero exit.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/tartest"
	"github.com/layerfs/layerfs/internal/testenv"
)

// importTar is a tar of ents, written with archive/tar.
func importTar(t *testing.T, ents ...tarFileEntry) []byte {
	t.Helper()
	for _, e := range ents {
		if e.hdr.Mode == 0 {
			e.hdr.Mode = 0o644
		}
	}
	return writeTarEntries(t, ents)
}

func file(name, data string) tarFileEntry {
	return tarFileEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: name}, body: []byte(data)}
}

func entry(typ byte, name, link string) tarFileEntry {
	return tarFileEntry{hdr: &tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o755}}
}

// writeInput writes b to a file of that name in a temp dir.
func writeInput(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// importRefused runs import with args (stdin if not nil) against root, which
// holds an image already, and checks that it fails with one line naming src and
// holding want, and leaves the store as it was.
func importRefused(t *testing.T, root string, stdin []byte, src, want string, args ...string) {
	t.Helper()
	before := treeSnapshot(t, root)
	o := cmdOpts{root: root}
	if stdin != nil {
		o.stdin = bytes.NewReader(stdin)
	}
	r := runWith(t, o, append([]string{"import", "-q"}, args...)...)
	msg := strings.TrimSuffix(r.Stderr, "\n")
	prefix := "Error: import " + src + ": "
	if r.Code == 0 || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, want) {
		t.Errorf("import %s: exit %d, stderr %q; want one line %q...%q", strings.Join(args, " "), r.Code, r.Stderr, prefix, want)
	}
	if d := diffTrees(before, treeSnapshot(t, root)); d != "" {
		t.Errorf("import %s changed the store:\n%s", strings.Join(args, " "), d)
	}
}

// TestImportHuntHostileTars: every tar an unpack must refuse, or that is not a
// whole tar at all, is refused before anything is stored.
func TestImportHuntHostileTars(t *testing.T) {
	root := rootFor(t)
	mustRun(t, "import", "-q", busyboxRootfs(t), "base:1")
	whole := importTar(t, entry(tar.TypeDir, "etc", ""), file("etc/hostname", "box\n"), file("data", strings.Repeat("x", 5000)))
	dataEnd := len(whole) - 1024 // the end-of-archive marker starts here
	for _, tc := range []struct {
		name string
		tar  []byte
		want string
	}{
		{"dotdot", importTar(t, file("../x", "x")), "check ../x: unsafe path in layer tar: name escapes the root"},
		{"absolute above the root", importTar(t, file("/../abs", "x")), "check /../abs: unsafe path in layer tar: name escapes the root"},
		{"dotdot inside", importTar(t, file("a/../../x", "x")), "name escapes the root"},
		{"file through symlink", importTar(t, entry(tar.TypeSymlink, "etc", "/etc"), file("etc/passwd", "x")), "check etc/passwd: unsafe path in layer tar: etc is a symlink"},
		{"dir through symlink", importTar(t, entry(tar.TypeSymlink, "etc", "../.."), entry(tar.TypeDir, "etc/x", "")), "etc is a symlink"},
		{"file below a file", importTar(t, file("f", "x"), file("f/g", "y")), "f is not a directory"},
		{"hard link absolute", importTar(t, entry(tar.TypeLink, "x", "/etc/passwd")), "hard link target etc/passwd is not in this layer"},
		{"hard link absolute above the root", importTar(t, entry(tar.TypeLink, "x", "/../etc/passwd")), "hard link target: unsafe path in layer tar: name escapes the root"},
		{"hard link dotdot", importTar(t, entry(tar.TypeLink, "x", "../etc/passwd")), "hard link target: unsafe path in layer tar: name escapes the root"},
		{"hard link to a later entry", importTar(t, entry(tar.TypeLink, "x", "y"), file("y", "y")), "hard link target y is not in this layer"},
		{"hard link to nothing", importTar(t, entry(tar.TypeLink, "x", "nope")), "hard link target nope is not in this layer"},
		{"hard link to a dir", importTar(t, entry(tar.TypeDir, "d", ""), entry(tar.TypeLink, "x", "d")), "hard link to directory d"},
		{"hard link through symlink", importTar(t, entry(tar.TypeSymlink, "etc", "/etc"), entry(tar.TypeLink, "x", "etc/passwd")), "hard link target etc/passwd is not in this layer"},
		{"name over 255 bytes", importTar(t, file(strings.Repeat("a", 300), "x")), "a name longer than 255 bytes"},
		{"symlink target past PATH_MAX", importTar(t, entry(tar.TypeSymlink, "l", strings.Repeat("x/", 3000))), "symlink target of 6000 bytes"},
		{"device number past 12:20 bits", tartest.Cat(tartest.Entry(tartest.Header{Name: "dev/x", Typeflag: tar.TypeChar, Mode: 0o600, Devmajor: 1 << 20}, nil), tartest.End()),
			"check dev/x: unsupported layer content: device number 1048576:0"},
		{"NUL in a PAX path", tartest.Cat(tartest.PAX(map[string]string{"path": "a\x00../../x"}), tartest.Entry(tartest.Header{Name: "a", Typeflag: '0', Mode: 0o644}, nil), tartest.End()), "not a tar archive: "},
		{"size past the data", tartest.Cat(tartest.Entry(tartest.Header{Name: "big", Typeflag: '0', Mode: 0o644, Size: 1 << 20}, []byte("x"))), "cut short: check big: read data: unexpected EOF"},
		{"huge size", tartest.Cat(tartest.Entry(tartest.Header{Name: "huge", Typeflag: '0', Mode: 0o644, SizeField: []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}}, []byte("x")), tartest.End()), "cut short: check huge"},
		{"garbage", bytes.Repeat([]byte("not a tar, really "), 100), "not a tar archive: read layer tar: archive/tar: invalid tar header"},
		{"empty file", nil, "not a tar archive: no entries"},
		{"zeros, one block", make([]byte, 512), "not a tar archive: no entries"},
		{"cut within data", whole[:2048+100], "cut short: check data: read data: unexpected EOF"},
		{"cut after a header", whole[:512], "tar archive cut short: no end-of-archive marker"},
		{"cut in padding", whole[:1024+100], "tar archive cut short: no end-of-archive marker"},
		{"cut after data", whole[:dataEnd], "tar archive cut short: no end-of-archive marker"},
		{"cut after one zero block", whole[:dataEnd+512], "tar archive cut short: no end-of-archive marker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-") + ".tar"
			p := writeInput(t, name, tc.tar)
			importRefused(t, root, nil, p, tc.want, p, "bad:1")
			importRefused(t, root, tc.tar, "stdin", tc.want, "-")
		})
	}
}

// TestImportHuntCutShort: a tar cut at any block boundary before its
// end-of-archive marker, plain or compressed, from a file or a pipe, is refused:
// archive/tar took one cut after an entry, in its padding or after one zero
// block for a whole (smaller) tar, and import stored it.
func TestImportHuntCutShort(t *testing.T) {
	root := rootFor(t)
	mustRun(t, "import", "-q", busyboxRootfs(t), "base:1")
	whole := importTar(t, entry(tar.TypeDir, "etc", ""), file("etc/hostname", "box\n"), file("etc/zeros", strings.Repeat("\x00", 2048)), entry(tar.TypeSymlink, "l", "etc"))
	before := treeSnapshot(t, root)
	for cut := 0; cut < len(whole)-1024+512; cut += 256 {
		r := runWith(t, cmdOpts{root: root, stdin: bytes.NewReader(whole[:cut])}, "import", "-q", "-", "cut:1")
		if msg := strings.TrimSuffix(r.Stderr, "\n"); r.Code == 0 || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "Error: import stdin: ") {
			t.Errorf("import of a tar of %d bytes cut at %d: exit %d, stderr %q; want one line \"Error: import stdin: ...\"", len(whole), cut, r.Code, r.Stderr)
		}
	}
	for _, tool := range []string{"gzip", "zstd", "xz", "bzip2"} {
		testenv.RequireTool(t, tool)
		cmd := exec.Command(tool, "-c")
		cmd.Stdin = bytes.NewReader(whole[:len(whole)-1024])
		z, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		p := writeInput(t, "cut.tar."+tool, z)
		importRefused(t, root, nil, p, "tar archive cut short", p)
		p = writeInput(t, "half.tar."+tool, z[:len(z)/2])
		r := run(t, "import", "-q", p)
		if msg := strings.TrimSuffix(r.Stderr, "\n"); r.Code == 0 || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "Error: import "+p+": ") {
			t.Errorf("import of a %s stream cut in half: exit %d, stderr %q; want one line naming it", tool, r.Code, r.Stderr)
		}
	}
	if d := diffTrees(before, treeSnapshot(t, root)); d != "" {
		t.Errorf("imports of cut tars changed the store:\n%s", d)
	}
	// The whole tar, and the whole tar with the record padding tar writes after the
	// marker, are taken.
	padded := append(bytes.Clone(whole), make([]byte, 8192)...)
	for _, b := range [][]byte{whole, padded} {
		if r := runWith(t, cmdOpts{root: root, stdin: bytes.NewReader(b)}, "import", "-q", "-"); r.Code != 0 {
			t.Errorf("import of a whole tar of %d bytes: %+v", len(b), r)
		}
	}
}

// TestImportHuntEmptyTar: a tar of no entries (with its end-of-archive marker)
// makes an image of one empty layer, as docker's scratch idiom
// `tar c -T /dev/null | docker import - scratch` does; it used to be refused.
func TestImportHuntEmptyTar(t *testing.T) {
	empty, err := exec.Command("tar", "cf", "-", "-T", "/dev/null").Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	r := runWith(t, cmdOpts{stdin: bytes.NewReader(empty)}, "import", "-q", "-", "scratch:1")
	if r.Code != 0 {
		t.Fatalf("import of an empty tar: %+v", r)
	}
	out := filepath.Join(t.TempDir(), "scratch.tar")
	mustRun(t, "save", "-q", "-o", out, "scratch:1")
	if ents := readTarFile(t, out); len(ents) == 0 {
		t.Errorf("save of the scratch image wrote nothing")
	}
}

// TestImportHuntBadArguments: a bad input path, reference, platform or -c change
// is refused before the store is touched: a root that did not exist still does
// not.
func TestImportHuntBadArguments(t *testing.T) {
	good := busyboxRootfs(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{filepath.Join(t.TempDir(), "missing.tar")}, "no such file or directory"},
		// a URL is fetched (as docker import fetches it), before the store is touched
		{[]string{"http://127.0.0.1:1/rootfs.tar"}, "import http://127.0.0.1:1/rootfs.tar: dial tcp 127.0.0.1:1: connect: connection refused"},
		{[]string{t.TempDir()}, "is a directory"},
		{[]string{good, "UPPER:1"}, "invalid reference format"},
		{[]string{good, "a:b:c"}, "invalid reference format"},
		{[]string{good, "a@sha256:abc"}, "invalid reference format"},
		{[]string{good, "a:" + strings.Repeat("t", 200)}, "invalid reference format"},
		{[]string{"-c", "RUN echo hi", good}, `invalid change "RUN echo hi"`},
		{[]string{"-c", "FROM busybox", good}, "invalid change"},
		{[]string{"-c", "ENV", good}, "ENV requires at least one argument"},
		{[]string{"-c", "HEALTHCHECK --interval=soon CMD true", good}, "invalid duration"},
		{[]string{"-c", "LABEL a=1", "-c", "BOGUS x", good}, `invalid change "BOGUS x"`},
		{[]string{"--platform", "linux", good}, `invalid platform "linux"`},
		{[]string{"--platform", "windows/amd64", good}, `import --platform windows/amd64: image operating system "windows" cannot be used on this platform`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			r := runWith(t, cmdOpts{root: root}, append([]string{"import", "-q"}, tc.args...)...)
			if msg := strings.TrimSuffix(r.Stderr, "\n"); r.Code == 0 || strings.Contains(msg, "\n") || !strings.Contains(msg, tc.want) {
				t.Errorf("import %v: exit %d, stderr %q; want one line with %q", tc.args, r.Code, r.Stderr, tc.want)
			}
			if _, err := os.Lstat(root); !os.IsNotExist(err) {
				t.Errorf("import %v made the root %s (%v)", tc.args, root, err)
			}
		})
	}
}

// TestImportHuntAccepted: what a rootfs tar may hold and docker import keeps
// (device nodes, set-id bits, duplicate entries, whiteout files), stored as given.
func TestImportHuntAccepted(t *testing.T) {
	suid := file("bin/su", "#!/bin/sh\n")
	suid.hdr.Mode = 0o4755
	dev := entry(tar.TypeChar, "dev/null", "")
	dev.hdr.Devmajor, dev.hdr.Devminor, dev.hdr.Mode = 1, 3, 0o666
	b := importTar(t, suid, dev, file("etc/motd", "one"), file("etc/motd", "two"),
		file("a/.wh.b", ""), file(".wh..wh..opq", ""))
	mustRun(t, "import", "-q", writeInput(t, "ok.tar", b), "ok:1")
	got := strings.TrimSpace(mustRun(t, "inspect", "--format", "{{json .RootFS.Layers}}", "ok:1"))
	if want := fmt.Sprintf("[%q]", digestOf(b)); got != want {
		t.Errorf("image layers %s, want %s: the tar as given", got, want)
	}
}

// TestImportHuntKilled: an import killed with SIGKILL at any point leaves a store
// that lists and imports as before; gc clears what it left (a temp file or an
// unnamed blob).
func TestImportHuntKilled(t *testing.T) {
	root := rootFor(t)
	mustRun(t, "import", "-q", busyboxRootfs(t), "base:1")
	big := randomTar(t, 48<<20)
	blobs := blobFiles(t, root)
	images := mustRun(t, "images", "-q", "--no-trunc")
	start := time.Now()
	mustRunIn(t, filepath.Join(t.TempDir(), "r"), "import", "-q", big, "big:1")
	took := time.Since(start)
	for i := 1; i <= 8; i++ {
		cmd := exec.Command(layerfsBin, "--root", root, "import", "-q", big, "big:1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(took * time.Duration(i) / 9)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if run(t, "inspect", "big:1").Code == 0 { // done before the kill
			mustRun(t, "rmi", "big:1")
		}
		if got := mustRun(t, "images", "-q", "--no-trunc"); got != images {
			t.Fatalf("after an import killed at %d/9 of its time: images = %q, want %q", i, got, images)
		}
	}
	gc := mustRun(t, "gc")
	if got := blobFiles(t, root); fmt.Sprint(got) != fmt.Sprint(blobs) {
		t.Errorf("after killed imports and gc (%q): blobs %v, want %v", gc, got, blobs)
	}
	// A metadata temp file (index.json's, "file-*") a kill left just now is
	// spared by gc for a while by design (its writers take no lease): only
	// data temps must be gone.
	if ents, err := os.ReadDir(filepath.Join(root, "store", ".layerfs", "tmp")); err == nil {
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "file-") {
				t.Errorf("after gc the store's temp dir holds %s", e.Name())
			}
		}
	}
	mustRun(t, "import", "-q", big, "big:1")
}

// TestImportHuntHugeSparse: a sparse file of 2^62 logical bytes kept the check
// reading its hole as zeros, without a byte of input, for years. Holes past
// 256 GiB in a layer are now refused (about 2 s of reading here), the store as
// it was.
func TestImportHuntHugeSparse(t *testing.T) {
	root := rootFor(t)
	mustRun(t, "import", "-q", busyboxRootfs(t), "base:1")
	p := writeInput(t, "sparse.tar", tartest.SparseTail("s", 1<<62))
	before := treeSnapshot(t, root)
	res := run(t, "import", "-q", p, "sparse:1")
	if res.Code == 0 || !strings.Contains(res.Stderr, "GiB of holes") || strings.Count(strings.TrimSpace(res.Stderr), "\n") > 0 {
		t.Errorf("import of a 2^62-byte sparse file: exit %d, stderr %q; want one line refusing its holes", res.Code, res.Stderr)
	}
	if d := diffTrees(before, treeSnapshot(t, root)); d != "" {
		t.Errorf("refused import changed the store:\n%s", d)
	}
}

// TestImportHuntTerminatedDuringHugeSparse: SIGTERM used to leave an import
// reading a huge sparse file's holes running (a 38-minute spin was seen); it now
// ends it with one line and the store as it was.
func TestImportHuntTerminatedDuringHugeSparse(t *testing.T) {
	root := rootFor(t)
	mustRun(t, "import", "-q", busyboxRootfs(t), "base:1")
	p := writeInput(t, "sparse.tar", tartest.SparseTail("s", 1<<62))
	before := treeSnapshot(t, root)
	cmd := exec.Command(layerfsBin, "--root", root, "import", "-q", p, "sparse:1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		msg := strings.TrimSuffix(stderr.String(), "\n")
		if err == nil || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "Error: import") {
			t.Errorf("import terminated: %v, stderr %q; want a failure with one error line", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("import still running 10s after SIGTERM")
	}
	if d := diffTrees(before, treeSnapshot(t, root)); d != "" {
		t.Errorf("terminated import changed the store:\n%s", d)
	}
}

// TestImportAbsoluteNames: a rootfs tar with absolute names (tar -P) imports
// with its names taken from the root, as docker, podman and umoci take them: the
// layer is stored as given (its diffID is the hash of the input), and export
// writes relative names, an absolute hard-link target included.
func TestImportAbsoluteNames(t *testing.T) {
	in := importTar(t, entry(tar.TypeDir, "/etc", ""), file("/etc/abs", "abs\n"), file("/bin/../etc/x", "x\n"),
		entry(tar.TypeLink, "/etc/hl", "/etc/abs"), entry(tar.TypeSymlink, "/etc/sl", "/etc/abs"))
	mustRun(t, "import", "-q", writeInput(t, "abs.tar", in), "abs:1")
	if got, want := strings.TrimSpace(mustRun(t, "inspect", "-f", "{{range .RootFS.Layers}}{{.}}{{end}}", "abs:1")), "sha256:"+sha256Hex(in); got != want {
		t.Errorf("diffID = %s, want %s (the input's hash)", got, want)
	}
	out := filepath.Join(t.TempDir(), "export.tar")
	mustRun(t, "export", "-o", out, "abs:1")
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b) + h.Linkname
	}
	for name, want := range map[string]string{"etc/": "", "etc/abs": "abs\n", "etc/x": "x\n", "etc/hl": "etc/abs", "etc/sl": "/etc/abs"} {
		if g, ok := got[name]; !ok || g != want {
			t.Errorf("export: %s = %q (present %v), want %q; all: %q", name, g, ok, want, got)
		}
	}
	for name := range got {
		if strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
			t.Errorf("export has entry %q, want relative clean names", name)
		}
	}
}
