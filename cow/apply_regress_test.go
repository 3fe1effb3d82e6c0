package cow

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/tartest"
)

// Regressions the fuzz targets found, each as a plain test. The fuzz corpus files
// under testdata/fuzz replay the original inputs.

// TestApplyUserXattrOnSpecialFiles: the kernel refuses user.* xattrs on anything
// but regular files and directories (EPERM, root too). Apply failed on such a
// layer while CheckLayer accepted it (FuzzApplyEntries/f535d7d26f4254dc: a block
// device with user.k); like Docker it now skips them.
func TestApplyUserXattrOnSpecialFiles(t *testing.T) {
	x := map[string]string{"SCHILY.xattr.user.k": "v"}
	ents := []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "f", PAXRecords: x}}}
	for _, h := range []tar.Header{
		{Typeflag: tar.TypeBlock, Name: "b", Devmajor: 7, Devminor: 9},
		{Typeflag: tar.TypeChar, Name: "c", Devmajor: 1, Devminor: 3},
		{Typeflag: tar.TypeFifo, Name: "p"},
		{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "f"},
	} {
		h.PAXRecords = x
		ents = append(ents, tarEntry{hdr: h})
	}
	b := buildTar(t, ents...)
	sb := newSandbox(t)
	if err := checkApply(t, sb, b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := xattrString(t, filepath.Join(sb.root, "f")); got != `user.k="v"` {
		t.Errorf("f xattrs = %s, want user.k=\"v\"", got)
	}
	if _, err := CheckLayer(bytes.NewReader(b)); err != nil {
		t.Errorf("CheckLayer: %v", err)
	}
}

// TestApplySparseMapMismatch: archive/tar checks a sparse file's map against the
// data stored only when the data is read, which Apply does and CheckLayer did not
// (Next skips it). A layer whose map refers to less or more data than it holds
// passed CheckLayer and failed in Apply (FuzzApply/c9daae20434c3242); once
// CheckLayer read it, an empty sparse file with stored data failed CheckLayer but
// not Apply, which read none of it (FuzzApply/7c8df3f7410b3eef).
func TestApplySparseMapMismatch(t *testing.T) {
	sparse := func(data string) []byte {
		return tartest.Cat(
			tartest.PAX(map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s", "GNU.sparse.realsize": "70000"}),
			tartest.Entry(tartest.Header{Name: "GNUSparseFile.0/s", Typeflag: '0', Mode: 0o644},
				append(tartest.Pad([]byte("1\n69997\n3\n")), data...)),
			tartest.End())
	}
	for name, b := range map[string][]byte{
		"exact":        sparse("abc"),
		"unreferenced": sparse("abcdef"),
		"missing":      sparse("ab"),
		"empty, unreferenced": tartest.Cat(
			tartest.Entry(tartest.Header{Name: "s", Typeflag: 'S', Mode: 0o644, Magic: tartest.GNUMagic}, []byte("abc")),
			tartest.End()),
	} {
		t.Run(name, func(t *testing.T) {
			err := checkApply(t, newSandbox(t), b)
			if (err == nil) != (name == "exact") {
				t.Errorf("Apply = %v, want an error: %v", err, name != "exact")
			}
		})
	}
}

// TestApplyXattrLimits: setxattr(2) refuses some records on every filesystem
// (E2BIG, ERANGE, EINVAL); Apply failed on them after CheckLayer had accepted the
// layer. Found while widening FuzzApplyEntries' xattr table, and for malformed
// security.capability values by FuzzApply; check refuses them now.
func TestApplyXattrLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		recs map[string]string
		ok   bool
	}{
		{"value of 64 KiB", map[string]string{"SCHILY.xattr.user.k": strings.Repeat("v", 64<<10)}, true},
		{"value over 64 KiB", map[string]string{"SCHILY.xattr.user.k": strings.Repeat("v", 64<<10+1)}, false},
		{"name of 255 bytes", map[string]string{"SCHILY.xattr.user." + strings.Repeat("k", 250): "v"}, true},
		{"name over 255 bytes", map[string]string{"SCHILY.xattr.user." + strings.Repeat("k", 251): "v"}, false},
		{"empty name", map[string]string{"SCHILY.xattr.": "v"}, false},
		{"bare namespace", map[string]string{"SCHILY.xattr.trusted.": "v"}, false},
		{"private, dropped", map[string]string{"SCHILY.xattr.trusted.overlay.x": strings.Repeat("v", 70000)}, true},
		// EINVAL from the kernel's capability parser: FuzzApply/315b9f3ff721b064.
		{"capability v2", map[string]string{"SCHILY.xattr.security.capability": capNetBindService}, true},
		{"capability v3", map[string]string{"SCHILY.xattr.security.capability": capV3(1000)}, true},
		{"capability v3, root -1", map[string]string{"SCHILY.xattr.security.capability": capV3(0xffffffff)}, false},
		{"capability v1", map[string]string{"SCHILY.xattr.security.capability": "\x00\x00\x00\x01" + strings.Repeat("\x00", 8)}, false},
		{"capability garbage", map[string]string{"SCHILY.xattr.security.capability": "garbage"}, false},
	} {
		for _, typ := range []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink} {
			t.Run(fmt.Sprintf("%s/%c", tc.name, typ), func(t *testing.T) {
				h := tar.Header{Typeflag: typ, Name: "e", Linkname: "x", PAXRecords: tc.recs, Format: tar.FormatPAX}
				if typ != tar.TypeSymlink {
					h.Linkname = ""
				}
				err := checkApply(t, newSandbox(t), buildTar(t, tarEntry{hdr: h}))
				if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrUnsupported) {
					t.Errorf("Apply = %v, want ok: %v, else ErrUnsupported", err, tc.ok)
				}
			})
		}
	}
}

// capV3 is a VFS_CAP_REVISION_3 security.capability value with root uid root.
func capV3(root uint32) string {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b, 0x03000000)
	binary.LittleEndian.PutUint32(b[20:], root)
	return string(b)
}
