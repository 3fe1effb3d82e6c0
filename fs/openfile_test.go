package fs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestOpenFileUpperRegularOnly: an upper dir's name is opened only if it is a
// regular file. A container may rename a device node it made (or a FIFO) over a
// file's name between a request's lookup and the server's open; the server, as
// root, then opened the host's device (or hung on the FIFO). Found by a review.
func TestOpenFileUpperRegularOnly(t *testing.T) {
	testenv.RequireRoot(t)
	d := t.TempDir()
	must(t, os.WriteFile(filepath.Join(d, "file"), []byte("data"), 0o644))
	must(t, unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mkfifo(filepath.Join(d, "fifo"), 0o644))
	dfd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(dfd)
	fd, err := openFile(dfd, "file", unix.O_RDWR, true)
	if err != nil {
		t.Fatalf("openFile of a regular file: %v", err)
	}
	buf := make([]byte, 4)
	if n, _ := unix.Read(fd, buf); string(buf[:n]) != "data" {
		t.Errorf("read %q", buf[:n])
	}
	unix.Close(fd)
	for _, name := range []string{"null", "fifo"} {
		fd, err := openFile(dfd, name, unix.O_RDONLY, true)
		if err == nil {
			unix.Close(fd)
			t.Errorf("openFile opened the upper's %s", name)
		} else if !errors.Is(err, unix.ESTALE) {
			t.Errorf("openFile of the upper's %s = %v, want ESTALE", name, err)
		}
	}
}
