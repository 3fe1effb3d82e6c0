package cow

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// absTree is a layer of every entry kind whose names (and hard-link target) are
// given to name: the same tree with relative and with absolute names.
func absTree(name func(string) string) []tarEntry {
	return []tarEntry{
		dir(name("etc/")),
		reg(name("etc/abs"), "abs\n"),
		reg(name("bin/../etc/x"), "x\n"),
		hardlink(name("etc/hl"), name("etc/abs")),
		symlink(name("etc/sl"), "/etc/abs"), // a symlink's target is kept as written
		dir(name("a")),
		reg(name("a/.wh.b"), ""),
		dir(name("o")),
		reg(name("o/"+OpaqueMarker), ""),
		reg(name(WhiteoutName(strings.Repeat("w", 253))), ""),
	}
}

// TestApplyAbsoluteNames: a layer tar with absolute names (tar -P) unpacks as the
// same tar with relative ones, as docker, podman and umoci unpack it: whiteouts,
// opaque markers and absolute hard-link targets included. The diffID stays the
// hash of the stream as it is, and what is unpacked exports with relative names.
func TestApplyAbsoluteNames(t *testing.T) {
	rel := buildTar(t, absTree(func(s string) string { return s })...)
	for _, prefix := range []string{"/", "//"} {
		t.Run(prefix, func(t *testing.T) {
			abs := buildTar(t, absTree(func(s string) string { return prefix + s })...)
			if _, err := CheckLayer(bytes.NewReader(abs)); err != nil {
				t.Fatalf("CheckLayer(absolute names) = %v, want nil", err)
			}
			d := filepath.Join(tempDir(t), "root")
			must(t, os.Mkdir(d, 0o755))
			got, err := Apply(context.Background(), d, bytes.NewReader(abs))
			if err != nil {
				t.Fatalf("Apply(absolute names) = %v, want nil", err)
			}
			if want := digest.FromBytes(abs); got != want {
				t.Errorf("Apply diffID = %s, want %s (the stream's own hash)", got, want)
			}
			// (mtimes: a long whiteout is a device made now)
			compareTrees(t, "absolute vs relative names", snapshot(t, d, snapOpts{noMtime: true}), snapshot(t, applyBytes(t, rel), snapOpts{noMtime: true}))
			if b, err := os.ReadFile(filepath.Join(d, "etc/abs")); err != nil || string(b) != "abs\n" {
				t.Errorf("etc/abs = %q, %v; want %q", b, err, "abs\n")
			}
		})
	}
}

// TestExportAbsoluteLayer: the whiteout of an absolutely named layer hides the
// lower file in the merge, and the export of the merge has relative names only.
func TestExportAbsoluteLayer(t *testing.T) {
	lower := applyBytes(t, buildTar(t, dir("a"), reg("a/b", "gone"), reg("a/c", "kept")))
	upper := applyBytes(t, buildTar(t, reg("/a/.wh.b", ""), reg("/etc/abs", "abs"), hardlink("/etc/hl", "/etc/abs")))
	b := readAll(t, Export(context.Background(), []string{upper, lower}, "", FormatOCI))
	want := "a/ a/c etc/ etc/abs etc/hl link=etc/abs"
	if got := strings.Join(tarNames(t, b), " "); got != want {
		t.Errorf("Export names:\n got %s\nwant %s", got, want)
	}
}
