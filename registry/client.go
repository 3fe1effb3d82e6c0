// Package registry moves images between registries and the local image store, with
// go-containerregistry's remote, authn and name packages speaking the distribution
// protocol over blobstore.
//
// # Pull
//
// A reference resolves to a manifest or an index (which picks one platform). Layers
// already in the store are skipped; the others stream into blobstore's Put, which
// hashes while it copies and renames into place only when the digest matches. The
// config and manifest follow with their registry bytes unchanged (so digests are the
// registry's), and the tag last: an interrupted pull leaves only unreferenced blobs,
// which gc reclaims.
//
// # Push
//
// Each blob is checked with a HEAD first (already there: nothing sent), mounted from
// another repository of the same registry when the store knows one that holds it,
// uploaded otherwise; the manifest goes last with the store's bytes, or, when the
// image has uncompressed layers, a copy naming their deterministic gzip (sent in
// their place, as docker and skopeo push), whose digest the store records. A blob or
// manifest the registry accepts under another Docker-Content-Digest than the one
// sent fails the push, and nothing is recorded locally.
//
// # Mirrors, TLS, credentials
//
// Docker Hub references try Config.Mirrors first, then the origin. Registries listed
// in Config.Insecure, the loopback (127.0.0.0/8, ::1, localhost, *.localhost: docker's
// default insecure registries), and every registry with SkipTLSVerify, are reached
// without certificate checks and fall back to plain HTTP; with RequireTLS none is.
// Credentials come from a docker config.json (see AuthFile and Keychain), credential
// helpers included.
//
// # Refused addresses
//
// go-containerregistry's SSRF checks, which layerfs keeps, refuse a token realm,
// a download redirect or an upload location that a registry gives as a private,
// loopback or link-local IP literal of another host (docker follows them all);
// the errors say so and how to get around it (refused.go).
//
// # Concurrency
//
// A Client holds no mutable state after construction and may be shared.
package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// HubOriginEnv, when set, replaces Docker Hub's origin (index.docker.io) with another
// registry host: tests point it at a local registry so no request leaves the machine.
const HubOriginEnv = "LAYERFS_DOCKER_HUB_ORIGIN"

// Client talks to registries. The zero value reads no credentials and verifies TLS.
type Client struct {
	Keychain      authn.Keychain // nil: anonymous
	Config        Config         // mirrors and insecure registries
	SkipTLSVerify bool           // --tls-verify=false: no certificate checks, HTTP fallback, for every registry
	// RequireTLS is an explicit --tls-verify=true, as podman means it: HTTPS with
	// certificates checked (CertDir's and certs.d's CAs trusted) for every
	// registry, the loopback, Config.Insecure's and http:// mirrors included.
	// SkipTLSVerify wins over it.
	RequireTLS bool
	CertDir    string // extra CA certificates (*.crt) trusted and client certificates (*.cert, *.key) offered for every registry
	HubOrigin  string // Docker Hub's host; "" is index.docker.io (or $LAYERFS_DOCKER_HUB_ORIGIN)
	UserAgent  string
}

// certDirs are searched for <host>/*.crt CA certificates and <host>/*.cert
// client certificates (with *.key), as docker's certs.d.
var certDirs = []string{"/etc/layerfs/certs.d", "/etc/docker/certs.d", "/etc/containers/certs.d"}

func (c *Client) keychain() authn.Keychain {
	if c.Keychain == nil {
		return authn.NewMultiKeychain()
	}
	return c.Keychain
}

func (c *Client) hubOrigin() string {
	if c.HubOrigin != "" {
		return c.HubOrigin
	}
	if h := os.Getenv(HubOriginEnv); h != "" {
		return h
	}
	return name.DefaultRegistry
}

// insecure reports whether host is an insecure registry, as docker's: one
// listed in insecure-registries, the loopback (docker's default insecure
// 127.0.0.0/8; localhost and ::1 too), or every registry with SkipTLSVerify;
// none with RequireTLS. Such a registry is reached over HTTPS without
// certificate checks, then plain HTTP.
func (c *Client) insecure(host string) bool {
	switch {
	case c.SkipTLSVerify:
		return true
	case c.RequireTLS:
		return false
	}
	return c.Config.IsInsecure(host) || loopbackHost(host)
}

// nameOptions are the go-containerregistry name options for host: name.Insecure
// for a host that may be reached over plain HTTP (plainHTTP), so that its ping
// tries HTTPS and then HTTP. Without it go-containerregistry falls back to HTTP
// only for the names its own patterns take for local (127.0.0.1, localhost:PORT,
// *.localhost, ::1, RFC 1918 addresses): 127.0.0.2 or a port-less localhost got
// HTTPS alone.
func (c *Client) nameOptions(host string) []name.Option {
	return c.endpointNameOptions(host, false)
}

// endpointNameOptions are nameOptions for host as a Docker Hub mirror (mirror)
// or as itself: an http:// mirror is reached over plain HTTP only as a mirror.
func (c *Client) endpointNameOptions(host string, mirror bool) []name.Option {
	if c.plainHTTP(host, mirror) {
		return []name.Option{name.Insecure}
	}
	return nil
}

// registry names host with the options its insecurity calls for.
func (c *Client) registry(host string) (name.Registry, error) {
	r, err := name.NewRegistry(host, c.nameOptions(host)...)
	if err != nil {
		return r, fmt.Errorf("registry %q: %w", host, err)
	}
	return r, nil
}

// httpTransport is the base transport for host: proxy from the environment, the
// system CAs plus CertDir's and certs.d's, no verification for insecure hosts,
// and the client certificates (*.cert with its *.key) of the same directories,
// as docker and containers/image offer them.
func (c *Client) httpTransport(host string, mirror bool) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	var dirs []string
	if c.CertDir != "" {
		dirs = append(dirs, c.CertDir)
	}
	for _, d := range certDirs {
		dirs = append(dirs, filepath.Join(d, host))
	}
	if c.insecure(host) {
		cfg.InsecureSkipVerify = true
	} else {
		var files []string
		for _, d := range dirs {
			m, _ := filepath.Glob(filepath.Join(d, "*.crt"))
			files = append(files, m...)
		}
		if len(files) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			for _, f := range files {
				if b, err := os.ReadFile(f); err == nil {
					pool.AppendCertsFromPEM(b)
				}
			}
			cfg.RootCAs = pool
		}
	}
	certs, err := clientCerts(dirs)
	if err != nil {
		return failing{fmt.Errorf("registry %s: %w", host, err)}
	}
	cfg.Certificates = certs
	t.TLSClientConfig = cfg
	if !c.plainHTTP(host, mirror) {
		why := "not an insecure registry (list it in insecure-registries)"
		if c.RequireTLS {
			why = "TLS verification required (--tls-verify=true)"
		}
		return httpsOnly{limited{t}, host, why}
	}
	return limited{t}
}

const (
	// maxRedirects is Go's own limit, which go-containerregistry's redirect
	// check replaces with none.
	maxRedirects = 10
	// maxManifestSize is the store's cap on a manifest or index it reads whole
	// (blobstore's metadata limit); containers/image caps them at 4 MiB.
	maxManifestSize = 16 << 20
)

// limited bounds what a registry can make a client do. go-containerregistry
// follows redirects without a limit: a blob, manifest GET or manifest PUT that
// answered 307 to itself looped for good, thousands of requests a second, with
// memory growing (review rev21-reg), where skopeo stops after 10. And it reads a
// manifest or index whole, up to 100 MiB, before anything here could refuse it:
// a 100 MB manifest took 500 MB of memory to refuse, a 100 MB index was taken.
// It also resumes a blob download that breaks off (resume.go).
type limited struct{ http.RoundTripper }

func (l limited) RoundTrip(req *http.Request) (*http.Response, error) {
	hops, first := 0, req
	for ; first.Response != nil && first.Response.Request != nil; first = first.Response.Request {
		hops++
	}
	if hops >= maxRedirects {
		return nil, fmt.Errorf("stopped after %d redirects", maxRedirects) // (as Go's client says)
	}
	resp, err := l.RoundTripper.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet {
		return resp, err
	}
	if blobURL(first.URL.Path) && resp.StatusCode == http.StatusOK {
		resp.Body = &resumingBody{rt: l.RoundTripper, req: req, body: resp.Body, size: resp.ContentLength}
		return resp, nil
	}
	if !manifestURL(first.URL.Path) {
		return resp, err
	}
	if resp.ContentLength > maxManifestSize {
		resp.Body.Close()
		return nil, fmt.Errorf("a manifest of %d bytes, larger than %d", resp.ContentLength, maxManifestSize)
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: maxManifestSize}
	return resp, nil
}

// manifestURL reports whether p is a registry API path of a manifest,
// /v2/<name>/manifests/<reference>: the blobs of a repository named
// "acme/manifests/app" are not (/v2/acme/manifests/app/blobs/<digest>), nor
// where a redirect sends a request (the first request's path is asked).
func manifestURL(p string) bool {
	return strings.HasPrefix(p, "/v2/") && strings.HasSuffix(path.Dir(p), "/manifests")
}

var errManifestSize = fmt.Errorf("a manifest larger than %d bytes", maxManifestSize)

// cappedBody fails a manifest body once it passes maxManifestSize.
type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errManifestSize
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errManifestSize
	}
	return n, err
}

// clientCerts loads the client certificate pairs of dirs: each NAME.cert with
// NAME.key beside it. A certificate without its key, or a key without its
// certificate, is an error, as in docker (registry.ReadCertsDirectory).
func clientCerts(dirs []string) ([]tls.Certificate, error) {
	var certs []tls.Certificate
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue // no such directory: nothing to offer
		}
		for _, e := range entries {
			n := e.Name()
			switch {
			case strings.HasSuffix(n, ".cert"):
				key := strings.TrimSuffix(n, ".cert") + ".key"
				if !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == key }) {
					return nil, fmt.Errorf("missing key %s for client certificate %s", filepath.Join(d, key), filepath.Join(d, n))
				}
				pair, err := tls.LoadX509KeyPair(filepath.Join(d, n), filepath.Join(d, key))
				if err != nil {
					return nil, fmt.Errorf("client certificate %s: %w", filepath.Join(d, n), err)
				}
				certs = append(certs, pair)
			case strings.HasSuffix(n, ".key"):
				cert := strings.TrimSuffix(n, ".key") + ".cert"
				if !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == cert }) {
					return nil, fmt.Errorf("missing client certificate %s for key %s", filepath.Join(d, cert), filepath.Join(d, n))
				}
			}
		}
	}
	return certs, nil
}

// failing fails every request with err: a transport that could not be set up.
type failing struct{ err error }

func (f failing) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// plainHTTP reports whether host may be reached over plain HTTP: an insecure
// registry (the loopback among them), or an http:// mirror reached as a Docker Hub
// mirror (mirror), unless RequireTLS. go-containerregistry
// also falls back to HTTP for private (RFC 1918) addresses, which docker does
// not do: httpTransport refuses that.
func (c *Client) plainHTTP(host string, mirror bool) bool {
	if c.insecure(host) {
		return true
	}
	if !mirror || c.RequireTLS {
		// The host of an http:// mirror is a registry like any other when a
		// reference names it: docker attaches mirrors to docker.io alone.
		return false
	}
	for _, m := range c.Config.Mirrors {
		if mm, err := parseMirror(m); err == nil && mm.http && mm.host == host {
			return true
		}
	}
	return false
}

// loopbackHost reports whether host (with its port, if any) is the loopback:
// 127.0.0.0/8, ::1, localhost and *.localhost (which resolve there), docker's
// default insecure registry.
func loopbackHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// httpsOnly refuses plain-HTTP requests to the registry host (go-containerregistry
// falls back to HTTP for private addresses); a blob download it redirects to
// another host (a storage backend) is not its business. go-containerregistry
// itself refuses such a redirect to a private or loopback IP literal, which
// docker follows (refused.go).
type httpsOnly struct {
	http.RoundTripper
	host string
	why  string // the refusal's reason
}

func (t httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && req.URL.Host == t.host {
		return nil, fmt.Errorf("registry %s: plain HTTP refused: %s", req.URL.Host, t.why)
	}
	return t.RoundTripper.RoundTrip(req)
}

// Sentinels for failures a user can act on; check them with errors.Is.
var (
	ErrNotFound   = errors.New("not found")
	ErrDenied     = errors.New("access denied")
	ErrNoPlatform = errors.New("no matching manifest")
)

// classify maps a registry error to a sentinel where one fits.
func classify(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
			return fmt.Errorf("%w: %s", ErrNotFound, strings.ReplaceAll(strings.ToLower(string(d.Code)), "_", " "))
		case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
			return deniedError{diagnostics(te)}
		}
	}
	switch te.StatusCode {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return deniedError{diagnostics(te)}
	}
	return err
}

// deniedError is ErrDenied with the registry's own words ("denied: quota
// exceeded"), which docker prints after its prefix too: that is where a
// registry says why (policy, quota, an expired token).
type deniedError struct{ msg string }

func (e deniedError) Error() string {
	if e.msg == "" {
		return ErrDenied.Error()
	}
	return e.msg
}

func (e deniedError) Is(target error) bool { return target == ErrDenied }

// diagnostics words te's error entries as docker does ("denied: proxy says
// no"; several joined with "; "), on one line.
func diagnostics(te *transport.Error) string {
	var parts []string
	for _, d := range te.Errors {
		s := strings.ReplaceAll(strings.ToLower(string(d.Code)), "_", " ")
		if d.Message != "" {
			s += ": " + d.Message
		}
		if s = strings.Join(strings.Fields(s), " "); s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

func isUnauthorized(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden
	}
	return false
}

// unreachable words a connection failure, or returns nil if err is not one. Only
// a failed dial is: a connection that breaks later was reached, and an upload's
// "readfrom" error may be the local file's. Each address that failed is named
// once: the https and http attempts of a ping fail alike on a host:port, while a
// host without a port is tried on 443 and then 80.
func unreachable(host string, err error) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return nil
	}
	var more []string
	for _, o := range dialErrors(err) {
		if s := o.Error(); s != op.Error() && !slices.Contains(more, s) {
			more = append(more, s)
		}
	}
	if len(more) == 0 {
		return fmt.Errorf("registry %s is unreachable: %w", host, op)
	}
	return fmt.Errorf("registry %s is unreachable: %w; %s", host, op, strings.Join(more, "; "))
}

// dialErrors lists the failed dials inside err, through errors.Join's branches
// and go-containerregistry's ping error, whose HTTPS and HTTP attempts are a
// []error with no Unwrap method (it answers errors.As with the first match only).
func dialErrors(err error) []*net.OpError {
	var out []*net.OpError
	for err != nil {
		if op, ok := err.(*net.OpError); ok {
			if op.Op == "dial" {
				out = append(out, op)
			}
			return out
		}
		var branches []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			branches = j.Unwrap()
		} else if v := reflect.ValueOf(err); v.Kind() == reflect.Slice {
			for i := range v.Len() {
				if e, ok := v.Index(i).Interface().(error); ok {
					branches = append(branches, e)
				}
			}
		}
		if branches != nil {
			for _, b := range branches {
				out = append(out, dialErrors(b)...)
			}
			return out
		}
		err = errors.Unwrap(err)
	}
	return out
}

// oneLine joins a multi-line error (errors.Join of parallel attempts) with "; ".
func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	return lineError{err}
}

type lineError struct{ err error }

func (e lineError) Error() string {
	return strings.Join(strings.Fields(strings.ReplaceAll(e.err.Error(), "\n", "; ")), " ")
}
func (e lineError) Unwrap() error { return e.err }
