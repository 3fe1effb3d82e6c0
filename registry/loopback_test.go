package registry_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// TestLoopbackPlainHTTP: a plain-HTTP registry on a loopback address other
// than 127.0.0.1 is reached as docker reaches it (127.0.0.0/8 is among its
// default insecure registries): HTTPS first, then HTTP. go-containerregistry
// falls back to HTTP only for 127.0.0.1, localhost:PORT, *.localhost and ::1,
// so login, push, pull and tag listing failed with "server gave HTTP response
// to HTTPS client" (rev15-registry finding 3).
func TestLoopbackPlainHTTP(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{IP: "127.0.0.2", Users: map[string]string{"alice": "s3cret"}})
	ctx := context.Background()
	authfile := filepath.Join(t.TempDir(), "auth.json")
	c := &registry.Client{Keychain: registry.Keychain(authfile)}

	if _, _, err := c.Login(ctx, authfile, reg.Host, "alice", "wrong"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("Login(%s) with a wrong password = %v, want ErrUnauthorized", reg.Host, err)
	}
	if _, _, err := c.Login(ctx, authfile, reg.Host, "alice", "s3cret"); err != nil {
		t.Fatalf("Login(%s) = %v", reg.Host, err)
	}
	src := newStore(t)
	img := makeImage(t, src, "lo:1", map[string]string{"f": "loopback"})
	dest := reg.Host + "/lo/app:1"
	if _, err := c.Push(ctx, src, "lo:1", dest, registry.PushOptions{}); err != nil {
		t.Fatalf("Push(%s) = %v", dest, err)
	}
	res, err := c.Pull(ctx, newStore(t), dest, registry.PullOptions{})
	if err != nil {
		t.Fatalf("Pull(%s) = %v", dest, err)
	}
	if res.Image.ManifestDigest != img.ManifestDigest {
		t.Errorf("Pull(%s) = manifest %s, want %s", dest, res.Image.ManifestDigest, img.ManifestDigest)
	}
	if tags, err := c.Tags(ctx, reg.Host+"/lo/app"); err != nil || len(tags) != 1 || tags[0] != "1" {
		t.Errorf("Tags(%s/lo/app) = %v, %v, want [1]", reg.Host, tags, err)
	}
}

// TestLoopbackNoPortUnreachable: a loopback registry named without a port is
// tried over HTTPS on 443 and then HTTP on 80, and when neither answers the
// error names both. It named port 443 alone, which read as if layerfs never
// tried plain HTTP (port 80) on the loopback. Uses 127.0.0.3, skipped if
// anything listens on its port 80 or 443.
func TestLoopbackNoPortUnreachable(t *testing.T) {
	const host = "127.0.0.3"
	for _, port := range []string{"80", "443"} {
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), time.Second); err == nil {
			conn.Close()
			t.Skipf("something listens on %s:%s", host, port)
		}
	}
	ref := host + "/none/app:1"
	_, err := (&registry.Client{}).Pull(context.Background(), newStore(t), ref, registry.PullOptions{})
	if err == nil {
		t.Fatalf("Pull(%s) succeeded", ref)
	}
	msg := err.Error()
	if !strings.Contains(msg, "is unreachable") || !strings.Contains(msg, host+":443") || !strings.Contains(msg, host+":80") || strings.Contains(msg, "\n") {
		t.Errorf("Pull(%s) = %q, want one line saying it is unreachable on %s:443 and %s:80", ref, msg, host, host)
	}
}

// TestRequireTLS: an explicit --tls-verify=true (RequireTLS) verifies, as
// podman's does, where the loopback and insecure-registries are otherwise
// exempt: a plain-HTTP registry is refused (push, pull, login) with the
// store unchanged, a self-signed one fails its certificate check until
// --cert-dir trusts it. It was ignored on the loopback: a pull went over
// plain HTTP (rev15-registry finding 4).
func TestRequireTLS(t *testing.T) {
	plain := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	src := newStore(t)
	makeImage(t, src, "req:1", map[string]string{"f": "tls"})
	dest := plain.Host + "/req/app:1"
	if _, err := (&registry.Client{}).Push(ctx, src, "req:1", dest, registry.PushOptions{}); err != nil {
		t.Fatalf("Push(%s) = %v", dest, err)
	}
	for _, c := range []*registry.Client{
		{RequireTLS: true},
		{RequireTLS: true, Config: registry.Config{Insecure: []string{plain.Host}}},
	} {
		st := newStore(t)
		_, err := c.Pull(ctx, st, dest, registry.PullOptions{})
		if err == nil || !strings.Contains(err.Error(), "HTTP response to HTTPS client") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Pull(%s) with RequireTLS, insecure-registries %v = %v, want one line refusing plain HTTP", dest, c.Config.Insecure, err)
		}
		if imgs, _ := st.Images(); len(imgs) != 0 {
			t.Errorf("refused pull stored %d images", len(imgs))
		}
		if _, err := c.Push(ctx, src, "req:1", plain.Host+"/req/other:1", registry.PushOptions{}); err == nil {
			t.Errorf("Push to plain HTTP %s with RequireTLS succeeded", plain.Host)
		}
		if _, _, err := c.Login(ctx, filepath.Join(t.TempDir(), "auth.json"), plain.Host, "a", "b"); err == nil {
			t.Errorf("Login to plain HTTP %s with RequireTLS succeeded", plain.Host)
		}
	}
	if _, err := (&registry.Client{RequireTLS: true, SkipTLSVerify: true}).Pull(ctx, newStore(t), dest, registry.PullOptions{}); err != nil {
		t.Errorf("Pull(%s) with SkipTLSVerify and RequireTLS = %v, want SkipTLSVerify to win", dest, err)
	}

	tlsReg := registrytest.Start(t, registrytest.Options{TLS: true})
	for _, host := range []string{tlsReg.Host, strings.Replace(tlsReg.Host, "127.0.0.1", "localhost", 1)} {
		tdest := host + "/req/app:1"
		_, err := (&registry.Client{RequireTLS: true}).Push(ctx, src, "req:1", tdest, registry.PushOptions{})
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("Push(%s) to a self-signed registry with RequireTLS = %v, want a certificate error", tdest, err)
		}
		if _, err := (&registry.Client{RequireTLS: true, CertDir: tlsReg.CertDir}).Push(ctx, src, "req:1", tdest, registry.PushOptions{}); err != nil {
			t.Errorf("Push(%s) with RequireTLS and its CA in CertDir = %v", tdest, err)
		}
	}
}
