package registry_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// TestSSRFRefusalsExplained: go-containerregistry's SSRF checks (v0.22.1;
// google/go-containerregistry#2258) refuse a token realm, a blob redirect and
// an upload Location on a private or loopback IP literal of another host, and
// layerfs keeps them. The error now says that the library refused it and how
// to get around it, which each case then does (a host name instead of the IP
// literal). It said only "realm host ... is a private or link-local address"
// or "SSRF protection: ... denied" (rev15-registry findings 1 and 2).
func TestSSRFRefusalsExplained(t *testing.T) {
	backend := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	src := newStore(t)
	img := makeImage(t, src, "ssrf:1", map[string]string{"f": "ssrf"})
	if _, err := (&registry.Client{}).Push(ctx, src, "ssrf:1", backend.Host+"/ssrf/app:1", registry.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	// byName is host ("127.0.0.1:PORT") named by host name.
	byName := func(host string) string {
		_, port, _ := net.SplitHostPort(host)
		return "localhost:" + port
	}

	n := 0
	run := func(t *testing.T, verb, host string) error {
		t.Helper()
		n++
		c := &registry.Client{Keychain: registry.Keychain(filepath.Join(t.TempDir(), "auth.json"))}
		switch verb {
		case "login":
			_, _, err := c.Login(ctx, filepath.Join(t.TempDir(), "auth.json"), host, "u", "p")
			return err
		case "pull":
			st := newStore(t)
			res, err := c.Pull(ctx, st, host+"/ssrf/app:1", registry.PullOptions{})
			if err != nil {
				if imgs, _ := st.Images(); len(imgs) != 0 {
					t.Errorf("a refused pull stored %d images", len(imgs))
				}
				return err
			}
			if res.Image.ManifestDigest != img.ManifestDigest {
				t.Errorf("Pull via %s = %s, want %s", host, res.Image.ManifestDigest, img.ManifestDigest)
			}
			return nil
		case "push":
			_, err := c.Push(ctx, src, "ssrf:1", fmt.Sprintf("%s/ssrf/new%d:1", host, n), registry.PushOptions{})
			return err
		}
		panic(verb)
	}
	for _, tc := range []struct {
		name       string
		refused    registrytest.ProxyOptions
		viaName    bool // the refused case names the proxy localhost:PORT, not by its IP
		workaround registrytest.ProxyOptions
		verbs      []string
		hint       string
	}{
		{"token realm on an IP literal", registrytest.ProxyOptions{TokenRealmHost: "127.0.0.1"}, false,
			registrytest.ProxyOptions{TokenRealmHost: "localhost"}, []string{"login", "pull", "push"},
			"refused by go-containerregistry's SSRF check: a token server on a private, loopback or link-local IP literal must be the registry's own host:port; give the realm by host name"},
		{"blob redirect to an IP literal", registrytest.ProxyOptions{BlobRedirect: backend.Host}, true,
			registrytest.ProxyOptions{BlobRedirect: byName(backend.Host)}, []string{"pull"},
			"refused by go-containerregistry's SSRF check: a redirect to a private, loopback or link-local IP literal of another host; have the registry redirect to its storage backend by host name"},
		{"upload location on an IP literal", registrytest.ProxyOptions{UploadLocation: backend.Host}, true,
			registrytest.ProxyOptions{UploadLocation: byName(backend.Host)}, []string{"push"},
			"refused by go-containerregistry's SSRF check: an upload location on a private, loopback or link-local IP literal of another host; have the registry name itself by host name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := registrytest.StartProxy(t, backend, tc.refused)
			host := p.Host
			if tc.viaName {
				host = byName(p.Host)
			}
			for _, verb := range tc.verbs {
				err := run(t, verb, host)
				if err == nil {
					t.Errorf("%s via %s succeeded, want it refused", verb, host)
					continue
				}
				if msg := err.Error(); !strings.Contains(msg, tc.hint) || strings.Contains(msg, "\n") {
					t.Errorf("%s via %s = %q, want one line containing %q", verb, host, msg, tc.hint)
				}
			}
			ok := registrytest.StartProxy(t, backend, tc.workaround)
			for _, verb := range tc.verbs {
				if err := run(t, verb, ok.Host); err != nil {
					t.Errorf("%s via %s with %+v = %v, want the workaround to work", verb, ok.Host, tc.workaround, err)
				}
			}
		})
	}
}
