package mountcmd

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// pullWith pulls ref into a fresh store with c and returns the error.
func pullWith(t *testing.T, c *registry.Client, ref string) error {
	t.Helper()
	st, err := blobstore.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Pull(context.Background(), st, ref, registry.PullOptions{})
	return err
}

// TestRegistryFlagsUnparsedVerify: the client run and build pull with, from
// registryFlags that no command line filled, checks certificates as
// --tls-verify's default says. It skipped them, and fell back to plain HTTP,
// for every registry: the zero value's tlsVerify is false.
func TestRegistryFlagsUnparsedVerify(t *testing.T) {
	c, err := (&registryFlags{}).client(&globalOptions{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SkipTLSVerify {
		t.Errorf("client() of unparsed flags: SkipTLSVerify = true, want false")
	}
	reg := registrytest.Start(t, registrytest.Options{TLS: true, NonLoopback: true})
	ref := reg.Host + "/none/app:1"
	if err := pullWith(t, c, ref); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Pull(%s) from a self-signed registry = %v, want a certificate error", ref, err)
	}
}
