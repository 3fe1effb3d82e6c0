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
