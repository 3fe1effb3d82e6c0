package mountcmd

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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

// layerfs runs the command line args against a store under root and returns
// its error and output.
func layerfs(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	cmd := NewRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--root", root}, args...))
	err := cmd.Execute()
	return out.String(), err
}

// TestTLSVerifyExplicit: an explicit --tls-verify=true verifies on the loopback
// too, as podman's does, so a pull from a plain-HTTP loopback registry is
// refused and stores nothing; the default still takes the loopback for an
// insecure registry, as docker's. The explicit flag was ignored there: the
// pull went over plain HTTP (rev15-registry finding 4).
func TestTLSVerifyExplicit(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref := reg.Host + "/tv/app:1"
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("remote.Write(%s) = %v", ref, err)
	}
	root := t.TempDir()
	// A login that goes wrong must not write the user's credentials file.
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "auth.json"))
	for _, verb := range [][]string{{"pull", "-q"}, {"login", "-u", "a", "-p", "b"}} {
		arg := ref
		if verb[0] == "login" {
			arg = reg.Host
		}
		args := append(append(verb, "--tls-verify=true"), arg)
		out, err := layerfs(t, root, args...)
		if err == nil || !strings.Contains(err.Error(), "HTTP response to HTTPS client") {
			t.Errorf("layerfs %s = %v (output %q), want plain HTTP refused", strings.Join(args, " "), err, out)
		}
	}
	st, err := blobstore.Open(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if imgs, _ := st.Images(); len(imgs) != 0 {
		t.Errorf("a refused pull stored %d images", len(imgs))
	}
	if out, err := layerfs(t, root, "pull", "-q", ref); err != nil {
		t.Errorf("layerfs pull -q %s = %v (output %q), want the loopback's default HTTP fallback", ref, err, out)
	}
}
