package cow

import (
	"archive/tar"
	"bytes"
	"path/filepath"
	"testing"
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
