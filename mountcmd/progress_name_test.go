package mountcmd

import (
	"strings"
	"testing"
)

// TestShortBlobName: a blob's progress line names it by 12 hex digits, also in a
// tar of an OCI layout made with "tar -C dir ." (names start with "./"), which
// printed the whole path.
func TestShortBlobName(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for in, want := range map[string]string{
		"sha256:" + hex:            hex[:12],
		"blobs/sha256/" + hex:      hex[:12],
		"./blobs/sha256/" + hex:    hex[:12],
		hex + "/layer.tar":         hex[:12],
		"./" + hex + "/layer.tar":  hex[:12],
		"layers/some.tar":          "layers/some.tar",
		"blobs/sha256/" + hex[:10]: hex[:10],
	} {
		if got := shortBlobName(in); got != want {
			t.Errorf("shortBlobName(%q) = %q, want %q", in, got, want)
		}
	}
}
