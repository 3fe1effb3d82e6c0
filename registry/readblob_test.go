package registry

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// openOnly is a Store whose Open serves one blob; nothing else is called.
type openOnly struct {
	Store
	b []byte
}

func (o openOnly) Open(digest.Digest) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(o.b)), nil
}

// A manifest over the limit is refused, not pushed cut short.
func TestReadBlobRefusesOversize(t *testing.T) {
	if b, err := readBlob(openOnly{b: make([]byte, maxManifest)}, "sha256:x"); err != nil || len(b) != maxManifest {
		t.Fatalf("readBlob of %d bytes = %d, %v", maxManifest, len(b), err)
	}
	if _, err := readBlob(openOnly{b: make([]byte, maxManifest+1)}, "sha256:x"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("readBlob of %d bytes: %v, want a refusal", maxManifest+1, err)
	}
}
