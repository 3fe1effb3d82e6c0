package cow

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A whiteout of a 252-255-byte name is longer than NAME_MAX: valid in a tar (PAX
// path), applied by docker, containerd and umoci, and once refused by Apply and
// CheckLayer, so load, import and pull refused the image. It is stored as a 0/0
// device (whiteout.go, Long names).
func TestApplyLongWhiteout(t *testing.T) {
	n253 := strings.Repeat("L", 253)
	wh := func(dir string, n int) tarEntry {
		return reg(filepath.Join(dir, WhiteoutPrefix+strings.Repeat("L", n)), "")
	}
	isDev := func(name string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, name), &st); err != nil || !IsWhiteoutDevice(FormatOCI, filepath.Base(name), &st) {
				t.Errorf("lstat %.20s... = mode %o rdev %d (%v), want a 0/0 whiteout device", name, st.Mode, st.Rdev, err)
			}
		}
	}
	isReg := func(name, data string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			b, err := os.ReadFile(filepath.Join(root, name))
			if err != nil || string(b) != data {
				t.Errorf("read %.20s... = %q, %v; want %q", name, b, err, data)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		ents  []tarEntry
		err   error // from both CheckLayer and Apply
		check func(t *testing.T, root string)
	}{
		{"252 bytes", []tarEntry{wh("", 252)}, nil, isDev(strings.Repeat("L", 252))},
		{"255 bytes in a dir", []tarEntry{dir("d"), wh("d", 255)}, nil, isDev("d/" + strings.Repeat("L", 255))},
		{"parent made", []tarEntry{wh("a/b", 253)}, nil, isDev("a/b/" + n253)},
		// The whiteout deletes from lower layers only: an entry of the same layer
		// stays, before or after it.
		{"entry after", []tarEntry{wh("", 253), reg(n253, "new")}, nil, isReg(n253, "new")},
		{"entry before", []tarEntry{reg(n253, "kept"), wh("", 253)}, nil, isReg(n253, "kept")},
		{"twice", []tarEntry{wh("", 253), wh("", 253)}, nil, isDev(n253)},
		{"dir below it", []tarEntry{wh("", 253), reg(n253+"/f", "in")}, nil, isReg(n253+"/f", "in")},
		{"hard link to it", []tarEntry{wh("", 253), hardlink("h", n253)}, ErrUnsafePath, nil},
		{"256 bytes", []tarEntry{wh("", 256)}, ErrUnsupported, nil},
		{"not last", []tarEntry{reg(WhiteoutPrefix+n253+"/f", "")}, ErrUnsupported, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := buildTar(t, tc.ents...)
			if _, err := CheckLayer(bytes.NewReader(b)); !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Errorf("CheckLayer = %v, want %v", err, tc.err)
			}
			root := tempDir(t)
			if _, err := Apply(context.Background(), root, bytes.NewReader(b)); !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("Apply = %v, want %v", err, tc.err)
			}
			if tc.check != nil {
				tc.check(t, root)
			}
		})
	}
}

// The readers of lower dirs take the device for the whiteout it is: Export of
// the layer over the one holding the name leaves the name out.
func TestExportLongWhiteout(t *testing.T) {
	n := strings.Repeat("L", 253)
	base, top := tempDir(t), tempDir(t)
	if _, err := Apply(context.Background(), base, bytes.NewReader(buildTar(t, reg(n, "x"), reg("keep", "k"), dir("d"), reg("d/"+n, "y")))); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), top, bytes.NewReader(buildTar(t, reg(WhiteoutPrefix+n, ""), reg("d/"+WhiteoutPrefix+n, "")))); err != nil {
		t.Fatal(err)
	}
	rc := Export(context.Background(), []string{top, base}, "", FormatOCI)
	b, err := io.ReadAll(rc)
	must(t, err)
	must(t, rc.Close())
	if got := strings.Join(tarNames(t, b), " "); got != "d/ keep" {
		t.Errorf("Export(layer with long whiteouts over base) = %s, want d/ keep", got)
	}
	// An upper dir in the OCI format holds them the same way (the union fs's
	// deletes).
	upper := tempDir(t)
	must(t, MakeWhiteout(unixOpen(t, upper), n, FormatOCI))
	rc = Export(context.Background(), []string{base}, upper, FormatOCI)
	b, err = io.ReadAll(rc)
	must(t, err)
	must(t, rc.Close())
	if got, want := strings.Join(tarNames(t, b), " "), "d/ d/"+n+" keep"; got != want {
		t.Errorf("Export(OCI upper with a long whiteout over base) = %.40s..., want %.40s...", got, want)
	}
}

func unixOpen(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// A layer that whites out a dir and has it too replaces the lower dir: Apply
// makes the layer's dir opaque, and Export (as the union) gives only its own
// entries there.
func TestApplyWhiteoutAndDirOpaque(t *testing.T) {
	base, top := tempDir(t), tempDir(t)
	if _, err := Apply(context.Background(), base, bytes.NewReader(buildTar(t, dir("d"), reg("d/old", "o")))); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), top, bytes.NewReader(buildTar(t, reg(WhiteoutPrefix+"d", ""), dir("d"), reg("d/new", "n")))); err != nil {
		t.Fatal(err)
	}
	rc := Export(context.Background(), []string{top, base}, "", FormatOCI)
	b, err := io.ReadAll(rc)
	must(t, err)
	must(t, rc.Close())
	if got := strings.Join(tarNames(t, b), " "); got != "d/ d/new" {
		t.Errorf("Export(a layer with .wh.d and d/new over d/old) = %s, want d/ d/new", got)
	}
}
