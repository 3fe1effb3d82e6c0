package integration

// Regressions from a bug hunt of save, load, import and export, with skopeo, umoci
// and GNU tar as oracles.

import (
	"archive/tar"
	"bytes"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestArchiveOutputToFIFOAndDevice: save -o and export -o write into a FIFO or a
// device that is there (`-o /dev/null`), as tar -f and shell redirection do. They
// used to write a temp file beside it and rename it over it, so as root
// `save -o /dev/null` replaced /dev/null with a regular file holding the archive,
// and a reader of the FIFO waited for ever.
func TestArchiveOutputToFIFOAndDevice(t *testing.T) {
	importBusybox(t, "busybox")
	root := rootFor(t) // the subtests share it
	for _, verb := range []string{"save", "export"} {
		t.Run(verb+"/fifo", func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := unix.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			got := make(chan string, 1)
			go func() {
				// blocks until the writer opens the FIFO; in-process, so a
				// writer that never does leaves no reader behind
				f, err := os.Open(fifo)
				if err != nil {
					got <- err.Error()
					return
				}
				defer f.Close()
				var names []string
				tr := tar.NewReader(f)
				for {
					h, err := tr.Next()
					if err != nil {
						break
					}
					names = append(names, h.Name)
				}
				got <- strings.Join(names, "\n")
			}()
			r := runWith(t, cmdOpts{root: root}, verb, "-o", fifo, "busybox")
			if r.Code != 0 {
				t.Fatalf("%s -o FIFO: %+v", verb, r)
			}
			fi, err := os.Lstat(fifo)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeNamedPipe == 0 {
				t.Fatalf("after %s -o FIFO it is %v: the FIFO was replaced", verb, fi.Mode())
			}
			list := <-got
			want := "bin/busybox"
			if verb == "save" {
				want = "manifest.json"
			}
			if !strings.Contains(list, want) {
				t.Errorf("the FIFO's reader got an archive listing %q, want %s in it", list, want)
			}
		})
		t.Run(verb+"/device", func(t *testing.T) {
			if os.Getuid() != 0 {
				t.Skip("mknod of a character device needs root")
			}
			null := filepath.Join(t.TempDir(), "null")
			if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
				t.Skipf("mknod: %v", err)
			}
			mustRunIn(t, root, verb, "-o", null, "busybox")
			fi, err := os.Lstat(null)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeCharDevice == 0 {
				t.Fatalf("after %s -o DEVICE it is %v: the device node was replaced", verb, fi.Mode())
			}
			entries, _ := os.ReadDir(filepath.Dir(null))
			if len(entries) != 1 {
				t.Errorf("%s -o DEVICE left %d entries beside it, want none", verb, len(entries)-1)
			}
		})
		t.Run(verb+"/bad", func(t *testing.T) {
			dir := t.TempDir()
			missing := filepath.Join(dir, "nodir", "x.tar")
			for _, c := range []struct{ path, want string }{
				{dir, "Error: " + verb + " " + dir + ": is a directory\n"},
				{missing, "Error: " + verb + " " + missing + ": no such file or directory\n"},
			} {
				r := runWith(t, cmdOpts{root: root}, verb, "-o", c.path, "busybox")
				if r.Code != 1 || r.Stderr != c.want {
					t.Errorf("%s -o %s = %d %q, want 1 %q", verb, c.path, r.Code, r.Stderr, c.want)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("failed %s left %d entries in %s", verb, len(entries), dir)
			}
		})
	}
}

// TestArchiveImportLoadXZBzip2: import and load take bzip2- and xz-compressed
// tars, as docker's do (docker import documents .bzip, .tar.xz and .txz; docker
// load gzip, bzip2, xz and zstd). Both used to say "invalid tar header". A
// damaged xz stream is refused with xz's own error and stores nothing.
func TestArchiveImportLoadXZBzip2(t *testing.T) {
	rootfs := busyboxRootfs(t)
	plain := strings.TrimSpace(mustRun(t, "import", "-q", rootfs, "plain:1"))
	saved := filepath.Join(t.TempDir(), "bb.tar")
	mustRun(t, "save", "-q", "-o", saved, "plain:1")
	diffID := func(root, ref string) string {
		t.Helper()
		out := mustRunIn(t, root, "inspect", "--format", "{{json .RootFS.Layers}}", ref)
		return strings.TrimSpace(out)
	}
	want := diffID(rootFor(t), "plain:1")
	for _, tool := range []string{"bzip2", "xz"} {
		t.Run(tool, func(t *testing.T) {
			testenv.RequireTool(t, tool)
			compress := func(path string) []byte {
				t.Helper()
				b, err := exec.Command(tool, "-c", path).Output()
				if err != nil {
					t.Fatalf("%s -c %s: %v", tool, path, err)
				}
				return b
			}
			root := filepath.Join(t.TempDir(), "r")
			zrootfs := filepath.Join(t.TempDir(), "rootfs.tar."+tool)
			if err := os.WriteFile(zrootfs, compress(rootfs), 0o644); err != nil {
				t.Fatal(err)
			}
			mustRunIn(t, root, "import", "-q", zrootfs, "file:1")
			r := runWith(t, cmdOpts{root: root, stdin: bytes.NewReader(compress(rootfs))}, "import", "-q", "-", "stdin:1")
			if r.Code != 0 {
				t.Fatalf("import - of a %s stream: %+v", tool, r)
			}
			for _, ref := range []string{"file:1", "stdin:1"} {
				if got := diffID(root, ref); got != want {
					t.Errorf("import of a %s tar as %s: layers %s, want %s", tool, ref, got, want)
				}
			}
			r = runWith(t, cmdOpts{root: root, stdin: bytes.NewReader(compress(saved))}, "load", "-q")
			if r.Code != 0 || r.Stdout != "Loaded image: plain:1\n" {
				t.Fatalf("load of a %s archive: %+v", tool, r)
			}
			if got := strings.TrimSpace(mustRunIn(t, root, "images", "-q", "--no-trunc", "plain:1")); got != plain {
				t.Errorf("loaded ID = %s, want %s", got, plain)
			}
		})
	}
	t.Run("damaged xz", func(t *testing.T) {
		testenv.RequireTool(t, "xz")
		z, err := exec.Command("xz", "-c", saved).Output()
		if err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(t.TempDir(), "r")
		for _, args := range [][]string{{"load", "-q"}, {"import", "-q", "-", "x:1"}} {
			r := runWith(t, cmdOpts{root: root, stdin: bytes.NewReader(z[:len(z)/2])}, args...)
			if r.Code != 1 || !strings.Contains(r.Stderr, "xz: ") {
				t.Errorf("%s of a cut xz stream = %+v, want exit 1 naming xz's error", args[0], r)
			}
		}
		// The root did not exist: failed commands leave none behind, let alone blobs.
		if _, err := os.Lstat(root); err == nil {
			t.Errorf("failed loads left the new root %s behind", root)
		}
	})
}

// TestSaveHoldsItsBlobs: an rmi while a save (or an image's export) streams
// waits for it: the save writes the whole archive. Before, the rmi's collection
// deleted the blobs under the save, which wrote a truncated archive and failed
// (found by a review); an export's layer dirs went the same way.
func TestSaveHoldsItsBlobs(t *testing.T) {
	for _, verb := range []string{"save", "export"} {
		t.Run(verb, func(t *testing.T) { testStreamHoldsItsBlobs(t, verb) })
	}
}

func testStreamHoldsItsBlobs(t *testing.T, verb string) {
	root := rootFor(t)
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	big := make([]byte, 24<<20)
	rand.New(rand.NewSource(1)).Read(big)
	os.WriteFile(filepath.Join(src, "blob"), big, 0o644)
	tarPath := filepath.Join(t.TempDir(), "big.tar")
	if out, err := exec.Command("tar", "-C", src, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	mustRun(t, "import", "-q", tarPath, "big:1")

	args := []string{"--root", root, verb, "big:1"}
	if verb == "save" {
		args = append(args, "-q")
	}
	save := exec.Command(layerfsBin, args...)
	stdout, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	save.Stderr = &stderr
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { save.Process.Kill(); save.Wait() })
	// The save has begun (and stalls on the full pipe) before the rmi.
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(stdout, head); err != nil {
		t.Fatal(err)
	}
	rmi := make(chan result, 1)
	go func() { rmi <- run(t, "rmi", "big:1") }()
	select {
	case r := <-rmi:
		t.Fatalf("the rmi returned while the %s was stalled: exit %d, %q", verb, r.Code, r.Stdout)
	case <-time.After(500 * time.Millisecond):
	}
	tr := tar.NewReader(io.MultiReader(bytes.NewReader(head), stdout))
	var n int
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the archive after %d entries: %v", n, err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			t.Fatalf("the archive's entry %d: %v", n, err)
		}
		n++
	}
	if err := save.Wait(); err != nil {
		t.Errorf("%s with an rmi meanwhile: %v, %s", verb, err, stderr.String())
	}
	select {
	case r := <-rmi:
		if r.Code != 0 {
			t.Errorf("rmi during a save: exit %d, %s", r.Code, r.Stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("rmi did not return after the save")
	}
}
