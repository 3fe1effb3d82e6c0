package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/tartest"
	"golang.org/x/sys/unix"
)

// TestCheckLayerRequireEndMarker: archive/tar ends a stream that stops right after
// an entry, within the padding after its data, or after one zero block as if it
// were whole, so an import of a tar cut short there stored a smaller image. With
// RequireEndMarker every cut short of the two zero blocks is refused with
// ErrTruncated; cuts after them (the record padding tar writes) are not.
func TestCheckLayerRequireEndMarker(t *testing.T) {
	whole := buildTar(t, dir("etc"), reg("etc/hostname", "box\n"), reg("zeros", strings.Repeat("\x00", 3000)),
		symlink("l", "etc"), tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax-" + strings.Repeat("n", 120)}, data: "x"})
	marker := len(whole) - 1024
	padded := append(append([]byte(nil), whole...), make([]byte, 9*1024)...) // GNU tar's 10 KiB record
	for cut := 0; cut <= len(padded); cut++ {
		b := padded[:cut]
		_, err := CheckLayer(bytes.NewReader(b), RequireEndMarker())
		_, lax := CheckLayer(bytes.NewReader(b))
		switch {
		case cut >= len(whole):
			if err != nil {
				t.Fatalf("CheckLayer(tar of %d bytes, marker at %d, cut at %d, RequireEndMarker) = %v, want nil", len(whole), marker, cut, err)
			}
		case err == nil:
			t.Fatalf("CheckLayer(tar cut at %d of %d, RequireEndMarker) = nil, want an error", cut, len(whole))
		case lax == nil && !errors.Is(err, ErrTruncated):
			t.Fatalf("CheckLayer(tar cut at %d, RequireEndMarker) = %v, want ErrTruncated", cut, err)
		}
	}
	// A tar of no entries has the marker too: docker's scratch idiom
	// (tar c -T /dev/null | docker import -) passes.
	if n, err := CheckLayer(bytes.NewReader(buildTar(t)), RequireEndMarker()); n != 0 || err != nil {
		t.Errorf("CheckLayer(empty tar, RequireEndMarker) = %d, %v; want 0, nil", n, err)
	}
}

// TestCheckDeviceNumbers: mknod(2) takes a 32-bit dev_t, so Apply made another
// device of numbers past Linux's 12:20 bits (1048576:1073741824 became 0:0, a
// whiteout that hid the entry in a mount); both now refuse them.
func TestCheckDeviceNumbers(t *testing.T) {
	for _, tc := range []struct {
		major, minor int64
		ok           bool
	}{
		{1, 3, true}, {maxDevMajor, maxDevMinor, true},
		{maxDevMajor + 1, 0, false}, {0, maxDevMinor + 1, false},
		{1 << 20, 1 << 30, false}, {-1, 0, false}, {0, 1 << 32, false},
	} {
		for _, typ := range []byte{tar.TypeChar, tar.TypeBlock} {
			t.Run(fmt.Sprintf("%c-%d:%d", typ, tc.major, tc.minor), func(t *testing.T) {
				var b bytes.Buffer
				tw := tar.NewWriter(&b)
				h := &tar.Header{Typeflag: typ, Name: "d", Mode: 0o600, Devmajor: tc.major, Devminor: tc.minor, Format: tar.FormatGNU}
				if err := tw.WriteHeader(h); err != nil {
					t.Skipf("tar cannot write %d:%d: %v", tc.major, tc.minor, err)
				}
				tw.Close()
				_, err := CheckLayer(bytes.NewReader(b.Bytes()))
				if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrUnsupported) {
					t.Errorf("CheckLayer(device %d:%d) = %v, want ok: %v, else ErrUnsupported", tc.major, tc.minor, err, tc.ok)
				}
				sb := newSandbox(t)
				checkApply(t, sb, b.Bytes()) // Apply agrees with CheckLayer
			})
		}
	}
}

// TestSparseHoleBound: CheckLayer and Apply refuse a layer whose sparse files
// hold more than maxHoleBytes of holes, which they would read as zeros (a 3.5
// KiB tar declaring a file of 2^62 bytes kept both reading for years), and take
// one within the bound, holes kept.
func TestSparseHoleBound(t *testing.T) {
	old := maxHoleBytes
	maxHoleBytes = 8 << 20
	t.Cleanup(func() { maxHoleBytes = old })

	for _, real := range []int64{1 << 62, 8<<20 + 2} {
		b := tartest.SparseTail("s", real)
		if _, err := CheckLayer(bytes.NewReader(b)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "holes") {
			t.Errorf("CheckLayer of a sparse file of %d bytes: %v, want ErrUnsupported (holes)", real, err)
		}
		if _, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(b)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Apply of a sparse file of %d bytes: %v, want ErrUnsupported", real, err)
		}
	}
	b := tartest.SparseTail("s", 8<<20)
	if _, err := CheckLayer(bytes.NewReader(b)); err != nil {
		t.Fatalf("CheckLayer within the bound: %v", err)
	}
	dir := t.TempDir()
	if _, err := Apply(context.Background(), dir, bytes.NewReader(b)); err != nil {
		t.Fatalf("Apply within the bound: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "s"))
	if err != nil || len(got) != 8<<20 || got[len(got)-1] != 'x' || !bytes.Equal(got[:len(got)-1], make([]byte, len(got)-1)) {
		t.Errorf("unpacked sparse file: %d bytes, %v", len(got), err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "s"), &st); err == nil && st.Blocks*512 > 1<<20 {
		t.Errorf("unpacked sparse file uses %d bytes: holes not kept", st.Blocks*512)
	}
}

// TestCheckOwnerIDs: a PAX record or a GNU base-256 field carries any uid or gid,
// and chown(2) took it as a 32-bit uid_t: uid 4294967296 made a root-owned file,
// and -1 (or 4294967295) left the unpacker's owner. CheckLayer and Apply refuse
// them, naming the entry, before anything is created.
func TestCheckOwnerIDs(t *testing.T) {
	for _, tc := range []struct {
		uid, gid int
		ok       bool
	}{
		{0, 0, true}, {1000, 1000, true}, {maxID, maxID, true},
		{1 << 32, 0, false}, {0, 1 << 32, false}, {1<<32 + 1000, 1000, false},
		{maxID + 1, 0, false}, {0, maxID + 1, false}, {1 << 62, 0, false},
		{-1, 0, false}, {0, -1, false}, {-1 << 32, 0, false},
	} {
		for _, format := range []tar.Format{tar.FormatPAX, tar.FormatGNU} {
			t.Run(fmt.Sprintf("%v-%d:%d", format, tc.uid, tc.gid), func(t *testing.T) {
				var b bytes.Buffer
				tw := tar.NewWriter(&b)
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755, Format: format}); err != nil {
					t.Fatal(err)
				}
				h := &tar.Header{Typeflag: tar.TypeReg, Name: "d/f", Mode: 0o644, Size: 1, Uid: tc.uid, Gid: tc.gid, Format: format}
				if err := tw.WriteHeader(h); err != nil {
					t.Skipf("tar cannot write owner %d:%d as %v: %v", tc.uid, tc.gid, format, err)
				}
				tw.Write([]byte("x"))
				tw.Close()
				hdrs := readHeaders(t, b.Bytes())
				if got := hdrs[1]; got.Uid != tc.uid || got.Gid != tc.gid {
					t.Skipf("tar reads owner %d:%d back as %d:%d", tc.uid, tc.gid, got.Uid, got.Gid)
				}
				_, err := CheckLayer(bytes.NewReader(b.Bytes()))
				if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrUnsupported) {
					t.Errorf("CheckLayer(owner %d:%d) = %v, want ok: %v, else ErrUnsupported", tc.uid, tc.gid, err, tc.ok)
				}
				if err != nil && !strings.HasPrefix(err.Error(), "check d/f: ") {
					t.Errorf("CheckLayer(owner %d:%d) = %q, want it to name d/f", tc.uid, tc.gid, err)
				}
				sb := newSandbox(t)
				aerr := checkApply(t, sb, b.Bytes()) // Apply agrees with CheckLayer
				if aerr != nil && !strings.HasPrefix(aerr.Error(), "apply d/f: ") {
					t.Errorf("Apply(owner %d:%d) = %q, want it to name d/f", tc.uid, tc.gid, aerr)
				}
				if _, err := os.Lstat(filepath.Join(sb.root, "d/f")); aerr != nil && err == nil {
					t.Errorf("Apply(owner %d:%d) refused the entry but created it", tc.uid, tc.gid)
				}
				if aerr == nil && os.Geteuid() == 0 {
					var st unix.Stat_t
					must(t, unix.Lstat(filepath.Join(sb.root, "d/f"), &st))
					if int(st.Uid) != tc.uid || int(st.Gid) != tc.gid {
						t.Errorf("Apply(owner %d:%d) made d/f owned by %d:%d", tc.uid, tc.gid, st.Uid, st.Gid)
					}
				}
			})
		}
	}
}

// readHeaders is every header of the tar b.
func readHeaders(t *testing.T, b []byte) []*tar.Header {
	t.Helper()
	var hdrs []*tar.Header
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		must(t, err)
		hdrs = append(hdrs, h)
	}
}

// TestCheckLayerLinkCount: a layer with more hard links to one file than ext4
// takes (65,000 names) was imported, and then every mount failed with EMLINK
// (review rev22-scale: 200,000 links); CheckLayer now refuses it, naming the
// file. Links to a link count with its file; a name that a later entry
// replaces stops counting; exactly the limit passes, and is unpacked.
func TestCheckLayerLinkCount(t *testing.T) {
	layer := func(links int, extra ...tarEntry) []byte {
		ents := []tarEntry{dir("d"), reg("d/f", "x")}
		for i := 1; i < links; i++ {
			target := "d/f"
			if i%2 == 0 {
				target = fmt.Sprintf("d/l%d", i-1) // a link to a link: the same file
			}
			ents = append(ents, hardlink(fmt.Sprintf("d/l%d", i), target))
		}
		return buildTar(t, append(ents, extra...)...)
	}
	if _, err := CheckLayer(bytes.NewReader(layer(maxLinks))); err != nil {
		t.Errorf("CheckLayer(%d names of one file) = %v, want nil", maxLinks, err)
	}
	over := layer(maxLinks, hardlink("d/one-more", "d/l5"))
	if _, err := CheckLayer(bytes.NewReader(over)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "more than 65000 hard links to d/l5") {
		t.Errorf("CheckLayer(%d names of one file) = %v, want ErrUnsupported naming it", maxLinks+1, err)
	}
	// d/l7 is a file of its own by the time d/one-more links to d/f
	replaced := layer(maxLinks, reg("d/l7", "own"), hardlink("d/one-more", "d/f"))
	if _, err := CheckLayer(bytes.NewReader(replaced)); err != nil {
		t.Errorf("CheckLayer(%d names of one file after one was replaced) = %v, want nil", maxLinks, err)
	}
	dst := t.TempDir()
	if _, err := Apply(context.Background(), dst, bytes.NewReader(layer(maxLinks))); err != nil {
		t.Fatalf("Apply(%d names of one file) = %v", maxLinks, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "d/f"), &st); err != nil || st.Nlink != maxLinks {
		t.Errorf("d/f: nlink %d (%v), want %d", st.Nlink, err, maxLinks)
	}
}
