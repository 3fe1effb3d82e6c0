package registrytest

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// ProxyOptions say how a Proxy departs from the registry behind it.
type ProxyOptions struct {
	// TokenRealmHost, when set, puts bearer token auth in front: a request
	// without the token gets a 401 whose realm is a token server (run on
	// 127.0.0.1 with a port of its own, handing the token to anyone) named by
	// this host ("127.0.0.1" or "localhost"), as docker_auth or GitLab's
	// token endpoint on another port.
	TokenRealmHost string
	// BlobRedirect, when set, answers each blob GET with a 307 to the same path
	// on this host:port over plain HTTP (the registry itself, named as the
	// test chooses), as distribution does with a storage backend that serves
	// blobs (the s3 driver).
	BlobRedirect string
	// UploadLocation, when set, moves the host:port of each upload's Location
	// to this one, as a registry whose configured external address (http.host)
	// is another host's.
	UploadLocation string
	// ManifestFrom, when set ("repo/manifests/ref"), answers every manifest
	// request with that manifest instead, as a broken or hostile registry (or
	// a proxy rewriting bodies) would.
	ManifestFrom string
}

// Proxy is a plain-HTTP server on 127.0.0.1 in front of a registry.
type Proxy struct {
	Host string // "127.0.0.1:PORT"
}

// proxyToken is the bearer token the proxy's token server hands out.
const proxyToken = "registrytest-token"

// StartProxy runs a Proxy in front of backend (a plain-HTTP Server) until t
// ends. Requests keep the Host they were sent with, so the registry's own
// Locations name the proxy.
func StartProxy(t testing.TB, backend *Server, opts ProxyOptions) *Proxy {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: backend.Host}
	var challenge string
	if opts.TokenRealmHost != "" {
		tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"token": proxyToken, "access_token": proxyToken})
		}))
		t.Cleanup(tokens.Close)
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(tokens.URL, "http://"))
		realm := "http://" + net.JoinHostPort(opts.TokenRealmHost, port) + "/token"
		challenge = `Bearer realm="` + realm + `",service="registrytest"`
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
			r.Out.Header.Del("Authorization")
		},
		ModifyResponse: func(resp *http.Response) error {
			if loc := resp.Header.Get("Location"); opts.UploadLocation != "" && loc != "" {
				if u, err := url.Parse(loc); err == nil && u.IsAbs() && strings.Contains(u.Path, "/blobs/uploads/") {
					u.Host = opts.UploadLocation
					resp.Header.Set("Location", u.String())
				}
			}
			return nil
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if challenge != "" && r.Header.Get("Authorization") != "Bearer "+proxyToken {
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		if opts.ManifestFrom != "" && strings.Contains(r.URL.Path, "/manifests/") {
			r.URL.Path, r.URL.RawPath = "/v2/"+opts.ManifestFrom, ""
		}
		if opts.BlobRedirect != "" && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			http.Redirect(w, r, "http://"+opts.BlobRedirect+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &Proxy{Host: strings.TrimPrefix(srv.URL, "http://")}
}
