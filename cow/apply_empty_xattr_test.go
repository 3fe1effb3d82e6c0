package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestApplyEmptyXattrs: an empty-valued SCHILY.xattr record (what GNU tar and
// Diff write for an xattr set with no value) is restored as an empty xattr, as
// GNU tar and containerd restore it, and Diff carries it on; but an empty
// security.capability is no capability: set, the kernel kept it and then
// refused the file with EINVAL (exec, getxattr), so its copy-up and a commit
// of it failed after the layer had been accepted.
func TestApplyEmptyXattrs(t *testing.T) {
	recs := map[string]string{paxXattrPrefix + "user.empty": "", paxXattrPrefix + capabilityXattr: ""}
	b := buildTar(t,
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/", PAXRecords: recs, Format: tar.FormatPAX}},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "d/tool", Mode: 0o755, PAXRecords: recs, Format: tar.FormatPAX}, data: "#!/bin/sh\n"})
	if _, err := CheckLayer(bytes.NewReader(b)); err != nil {
		t.Fatalf("CheckLayer = %v", err)
	}
	root := applyBytes(t, b)
	for _, p := range []string{"d", "d/tool"} {
		full := filepath.Join(root, p)
		if n, err := unix.Lgetxattr(full, "user.empty", nil); err != nil || n != 0 {
			t.Errorf("%s: getxattr user.empty = %d, %v; want an empty value", p, n, err)
		}
		if n, err := unix.Lgetxattr(full, capabilityXattr, make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%s: getxattr %s = %d, %v; want ENODATA (no capability)", p, capabilityXattr, n, err)
		}
	}
	if _, err := os.ReadFile(filepath.Join(root, "d/tool")); err != nil {
		t.Errorf("read d/tool: %v", err)
	}
	// Diff of the result writes the empty user xattr again, and no capability.
	rc := Diff(context.Background(), root, DiffOptions{})
	out, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("Diff of the applied tree = %v", err)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	seen := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		if h.Name != "d/" && h.Name != "d/tool" {
			continue
		}
		seen++
		if v, ok := h.PAXRecords[paxXattrPrefix+"user.empty"]; !ok || v != "" {
			t.Errorf("Diff %s: user.empty record %q (present %v), want an empty one", h.Name, v, ok)
		}
		if v, ok := h.PAXRecords[paxXattrPrefix+capabilityXattr]; ok {
			t.Errorf("Diff %s: capability record %q, want none", h.Name, v)
		}
	}
	if seen != 2 {
		t.Errorf("Diff wrote %d of d/ and d/tool", seen)
	}
}
