package fs

import (
	"bytes"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// syncBuffer is a bytes.Buffer safe for the log's writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBigReadsSpliced: sequential reads (readahead of 1 MiB) are served in READs
// whose replies fit a pipe, so go-fuse splices them and logs nothing (it logged a
// line per MiB that cat(1) read into the server's log, and copied the data).
func TestBigReadsSpliced(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 8<<16) // 8 MiB
	lower := t.TempDir()
	must(t, os.WriteFile(filepath.Join(lower, "big"), data, 0o644))
	var logs syncBuffer
	log.SetOutput(io.MultiWriter(&logs, os.Stderr))
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	u := mountUnion(t, cow.FormatOverlay, lower)
	f, err := os.Open(filepath.Join(u.mnt, "big"))
	must(t, err)
	defer f.Close()
	must(t, unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED))
	// As cat(1) and cp(1) read: sequential doubles the readahead, to 1 MiB.
	must(t, unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL))
	var got bytes.Buffer
	buf := make([]byte, 4<<20)
	for {
		n, err := f.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		must(t, err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes, not the file's %d", got.Len(), len(data))
	}
	if l := logs.String(); strings.Contains(l, "trySplice") {
		t.Errorf("the server logged while reading:\n%.500s", l)
	}
}
