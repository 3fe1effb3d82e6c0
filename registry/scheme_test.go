package registry

import (
	"testing"

	"github.com/distribution/reference"
)

// TestLoopbackTriesHTTP: every loopback name gets go-containerregistry's
// insecure handling (its ping tries HTTPS, then HTTP), as docker treats
// 127.0.0.0/8 as an insecure registry: the names go-containerregistry does not
// take for local itself (127.0.0.2, a port-less localhost, whose HTTP is port
// 80) got HTTPS alone. Login, pull (endpoints) and push (nameOptions) agree.
// A port-less localhost is checked here rather than against a registry, which
// would have to bind port 80.
func TestLoopbackTriesHTTP(t *testing.T) {
	for _, tc := range []struct {
		host string
		http bool // ping falls back to plain HTTP
	}{
		{"localhost", true},
		{"localhost:5000", true},
		{"127.0.0.2:5000", true},
		{"127.0.0.1", true},
		{"127.255.1.2", true},
		{"reg.localhost", true},
		{"[::1]:5000", true},
		{"registry.example.com", false},
		{"registry.example.com:5000", false},
		{"192.0.2.1:5000", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			want := "https"
			if tc.http {
				want = "http"
			}
			c := &Client{}
			reg, err := c.registry(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if got := reg.Scheme(); got != want {
				t.Errorf("registry(%q).Scheme() = %s, want %s", tc.host, got, want)
			}
			named, err := reference.ParseNormalizedNamed(tc.host + "/app:1")
			if err != nil {
				t.Fatal(err)
			}
			eps, err := c.endpoints(named)
			if err != nil || len(eps) != 1 {
				t.Fatalf("endpoints(%s) = %v, %v", named, eps, err)
			}
			if got := eps[0].Context().Scheme(); got != want {
				t.Errorf("endpoints(%s) scheme = %s, want %s", named, got, want)
			}
			if got := len(c.nameOptions(tc.host)) == 1; got != tc.http {
				t.Errorf("nameOptions(%q) insecure = %v, want %v", tc.host, got, tc.http)
			}
		})
	}
}

// TestHTTPMirrorOnlyAsMirror: an http:// registry mirror is reached over plain
// HTTP as a Docker Hub mirror only. A reference that names its host directly
// gets HTTPS alone, as any registry not in insecure-registries (docker
// attaches mirrors to docker.io alone): it got go-containerregistry's HTTP
// fallback and no HTTPS-only guard, so whoever could block port 443 on the way
// made a push or login send credentials in clear text. An explicit
// --tls-verify=true (RequireTLS) takes the mirror's plain HTTP away too, as
// podman's.
func TestHTTPMirrorOnlyAsMirror(t *testing.T) {
	const host = "192.0.2.2:5055" // TEST-NET-1: neither loopback nor RFC 1918
	for _, requireTLS := range []bool{false, true} {
		c := &Client{Config: Config{Mirrors: []string{"http://" + host}}, RequireTLS: requireTLS}
		hub, err := reference.ParseNormalizedNamed("busybox:1")
		if err != nil {
			t.Fatal(err)
		}
		eps, err := c.endpoints(hub)
		if err != nil || len(eps) != 2 || eps[0].Context().RegistryStr() != host || !eps[0].mirror {
			t.Fatalf("endpoints(%s) = %v, %v; want the mirror first", hub, eps, err)
		}
		wantMirror := "http"
		if requireTLS {
			wantMirror = "https"
		}
		if got := eps[0].Context().Scheme(); got != wantMirror {
			t.Errorf("RequireTLS %v: the mirror endpoint's scheme = %s, want %s", requireTLS, got, wantMirror)
		}
		if _, guarded := c.httpTransport(host, true).(httpsOnly); guarded != requireTLS {
			t.Errorf("RequireTLS %v: the mirror endpoint's transport refuses plain HTTP: %v", requireTLS, guarded)
		}

		direct, err := reference.ParseNormalizedNamed(host + "/app:1")
		if err != nil {
			t.Fatal(err)
		}
		eps, err = c.endpoints(direct)
		if err != nil || len(eps) != 1 || eps[0].mirror {
			t.Fatalf("endpoints(%s) = %v, %v", direct, eps, err)
		}
		if got := eps[0].Context().Scheme(); got != "https" {
			t.Errorf("RequireTLS %v: %s named directly: scheme %s, want https", requireTLS, host, got)
		}
		if len(c.nameOptions(host)) != 0 {
			t.Errorf("RequireTLS %v: nameOptions(%s) marks the mirror's host insecure", requireTLS, host)
		}
		if _, guarded := c.httpTransport(host, false).(httpsOnly); !guarded {
			t.Errorf("RequireTLS %v: the transport to %s named directly allows plain HTTP", requireTLS, host)
		}
	}
}
