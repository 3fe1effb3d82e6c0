package build

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// TestExtractOwnerBounds: ADD of a tar keeps the entries' owners, and chown(2)
// took a uid or gid past 32 bits modulo 2^32 (4294967296 made a root-owned file,
// -1 left root's). Such an entry is refused, naming it, before it is written;
// with --chown the header's owner is not used and nothing is refused.
func TestExtractOwnerBounds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: extract chowns to the tar's owners")
	}
	for _, tc := range []struct {
		name     string
		uid, gid int
		chown    string
		ok       bool
	}{
		{"in range", 1000, 1001, "", true},
		{"largest", 1<<32 - 2, 1<<32 - 2, "", true},
		{"uid past 32 bits", 1 << 32, 0, "", false},
		{"gid past 32 bits", 0, 1<<32 + 5, "", false},
		{"uid -1 as uint32", 1<<32 - 1, 0, "", false},
		{"negative gid", 0, -1, "", false},
		{"chown overrides", 1 << 32, 0, "7:8", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			p := filepath.Join(t.TempDir(), "in.tar")
			f := headerTar(t, p,
				&tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755},
				&tar.Header{Typeflag: tar.TypeReg, Name: "d/f", Mode: 0o644, Uid: tc.uid, Gid: tc.gid, Format: tar.FormatPAX})
			cp, err := newCopier(rootfs, tc.chown, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cp.close()
			err = cp.extractFrom(f, "/dest")
			var st unix.Stat_t
			serr := unix.Lstat(filepath.Join(rootfs, "dest/d/f"), &st)
			if !tc.ok {
				if err == nil || !errors.Is(err, cow.ErrUnsupported) || !strings.Contains(err.Error(), "d/f") {
					t.Errorf("extract(owner %d:%d) = %v, want ErrUnsupported naming d/f", tc.uid, tc.gid, err)
				}
				if serr == nil {
					t.Errorf("extract(owner %d:%d) refused d/f but wrote it, owned by %d:%d", tc.uid, tc.gid, st.Uid, st.Gid)
				}
				return
			}
			if err != nil || serr != nil {
				t.Fatalf("extract(owner %d:%d) = %v; lstat d/f: %v", tc.uid, tc.gid, err, serr)
			}
			wu, wg := uint32(tc.uid), uint32(tc.gid)
			if tc.chown != "" {
				wu, wg = 7, 8
			}
			if st.Uid != wu || st.Gid != wg {
				t.Errorf("extract(owner %d:%d, chown %q) made d/f owned by %d:%d, want %d:%d", tc.uid, tc.gid, tc.chown, st.Uid, st.Gid, wu, wg)
			}
		})
	}
}

// TestExtractDeviceBounds: ADD of a tar refuses a device node whose numbers
// mknod(2) would wrap into another device, as layer unpacking does.
func TestExtractDeviceBounds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mknod")
	}
	for _, tc := range []struct {
		name         string
		major, minor int64
		ok           bool
	}{
		{"null", 1, 3, true},
		{"largest", 1<<12 - 1, 1<<20 - 1, true},
		{"minor past 20 bits", 0, 1 << 30, false},
		{"major past 12 bits", 1 << 20, 0, false},
		{"negative", -1, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			f := headerTar(t, filepath.Join(t.TempDir(), "in.tar"),
				&tar.Header{Typeflag: tar.TypeChar, Name: "dev", Mode: 0o600, Devmajor: tc.major, Devminor: tc.minor, Format: tar.FormatGNU})
			cp, err := newCopier(rootfs, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cp.close()
			err = cp.extractFrom(f, "/dest")
			_, serr := os.Lstat(filepath.Join(rootfs, "dest/dev"))
			if tc.ok {
				if err != nil || serr != nil {
					t.Fatalf("extract(%d:%d) = %v; lstat: %v", tc.major, tc.minor, err, serr)
				}
				return
			}
			if err == nil || !errors.Is(err, cow.ErrUnsupported) || !strings.Contains(err.Error(), "dev") {
				t.Errorf("extract(%d:%d) = %v, want ErrUnsupported naming the entry", tc.major, tc.minor, err)
			}
			if serr == nil {
				t.Errorf("extract(%d:%d) refused the entry but made it", tc.major, tc.minor)
			}
		})
	}
}

// headerTar writes a tar of data-less entries to p and returns it open at its
// start (closed when the test ends).
func headerTar(t *testing.T, p string, hdrs ...*tar.Header) *os.File {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tw := tar.NewWriter(f)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestIsArchiveSkipsSpecialFiles: ADD asks of each source whether it is an
// archive; a FIFO in the context made that open wait for a writer for good (a
// device's read would reach its driver). Only regular files are read.
func TestIsArchiveSkipsSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan bool, 1)
	go func() { done <- isArchive(fifo) }()
	select {
	case got := <-done:
		if got {
			t.Errorf("isArchive(fifo) = true")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("isArchive(fifo) still waiting after 10s")
	}
}
