package integration

// Regressions from a bug hunt of save, load, import and export, with skopeo, umoci
// and GNU tar as oracles.

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
