// Package registrytest starts throwaway instances of the CNCF distribution registry
// (Debian's docker-registry package, /usr/bin/docker-registry) for tests: plain HTTP,
// htpasswd basic auth, or TLS with a self-signed certificate made in Go. Every
// instance listens on 127.0.0.1 (or the address Options name) with a free port,
// keeps its storage in t.TempDir and is killed in t.Cleanup. Nothing here touches
// any network but the loopback, unless Options.NonLoopback asks for it.
package registrytest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Options choose the kind of registry to start.
type Options struct {
	// Users, when non-empty, turns on htpasswd basic auth with these user -> password pairs.
	Users map[string]string
	// TLS serves https with a self-signed certificate for 127.0.0.1 and localhost
	// (and the address it listens on).
	TLS bool
	// NonLoopback listens on this machine's first non-loopback IPv4 address,
	// not 127.0.0.1 (skips the test if there is none): a client checks the
	// certificate of such a registry, while docker (and layerfs) take the
	// loopback for an insecure registry and do not.
	NonLoopback bool
	// IP, when set, is the address to listen on instead of 127.0.0.1: another
	// loopback address such as 127.0.0.2, which go-containerregistry does not
	// take for a local registry as it takes 127.0.0.1. The test is skipped if
	// the address cannot be bound.
	IP string
	// ManifestURLs accepts manifests whose layers list http(s) URLs (foreign,
	// non-distributable layers), which the registry refuses by default.
	ManifestURLs bool
}

// Server is one running registry.
type Server struct {
	Host    string // "127.0.0.1:PORT" (or Options.IP's), the registry part of image references
	Dir     string // storage root (the filesystem driver's rootdirectory)
	CertDir string // with TLS: a directory holding ca.crt (podman's --cert-dir layout)
	CAFile  string // with TLS: the PEM certificate clients must trust
	LogFile string // the registry's stderr: access log and errors

	cmd *exec.Cmd
}

// Binary is the registry program the tests run.
const Binary = "docker-registry"

// Require skips t unless the registry binary is installed; in CI (CI=true) it fails.
func Require(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath(Binary)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not on PATH in CI; hack/test.sh must install docker-registry", Binary)
	}
	t.Skipf("%s not on PATH (Debian package docker-registry)", Binary)
	return ""
}

// Start runs a registry with opts and waits until it answers /v2/.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	s := &Server{Dir: filepath.Join(dir, "storage"), LogFile: filepath.Join(dir, "registry.log")}
	ip := "127.0.0.1"
	switch {
	case opts.NonLoopback:
		ip = nonLoopbackIPv4(t)
	case opts.IP != "":
		ip = opts.IP
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Skipf("cannot serve a registry on %s: %v", ip, err)
		}
		l.Close()
	}
	port := freePortOn(t, ip)
	s.Host = ip + ":" + strconv.Itoa(port)

	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 0.1\nlog:\n  level: info\n  formatter: text\n")
	fmt.Fprintf(&cfg, "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n", s.Dir)
	fmt.Fprintf(&cfg, "http:\n  addr: %s\n  secret: registrytest\n", s.Host)
	if opts.TLS {
		certFile, keyFile := writeCert(t, dir, ip)
		s.CAFile = certFile
		s.CertDir = filepath.Join(dir, "certs.d")
		if err := os.MkdirAll(s.CertDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(certFile, filepath.Join(s.CertDir, "ca.crt")); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cfg, "  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	if opts.ManifestURLs {
		fmt.Fprintf(&cfg, "validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n")
	}
	if len(opts.Users) > 0 {
		htpasswd := filepath.Join(dir, "htpasswd")
		writeHtpasswd(t, htpasswd, opts.Users)
		fmt.Fprintf(&cfg, "auth:\n  htpasswd:\n    realm: registrytest\n    path: %s\n", htpasswd)
	}
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "serve", cfgFile)
	s.cmd.Stdout = logf
	s.cmd.Stderr = logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(s.LogFile); err == nil {
				t.Logf("registry %s log (tail):\n%s", s.Host, tail(b, 3000))
			}
		}
	})
	s.waitReady(t, opts.TLS, exited)
	return s
}

func (s *Server) waitReady(t testing.TB, useTLS bool, exited <-chan struct{}) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		Proxy:           nil,
	}}
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			b, _ := os.ReadFile(s.LogFile)
			t.Fatalf("registry exited early:\n%s", tail(b, 3000))
		default:
		}
		resp, err := client.Get(scheme + "://" + s.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(s.LogFile)
	t.Fatalf("registry on %s not ready after 15s:\n%s", s.Host, tail(b, 3000))
}

// Log returns the registry's log so far.
func (s *Server) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Uploads counts the blob uploads started so far (POST .../blobs/uploads/ without a
// mount that succeeded is one upload; a cross-repository mount is counted in Mounts).
func (s *Server) Uploads(t testing.TB) (uploads, mounts int) {
	t.Helper()
	for _, line := range strings.Split(s.Log(t), "\n") {
		if !strings.Contains(line, `"PUT /v2/`) || !strings.Contains(line, "/blobs/uploads/") {
			if strings.Contains(line, `"POST /v2/`) && strings.Contains(line, "mount=") && strings.Contains(line, `" 201 `) {
				mounts++
			}
			continue
		}
		uploads++
	}
	return uploads, mounts
}

// BlobPath is where the filesystem driver keeps the content of blob d ("sha256:<hex>").
func (s *Server) BlobPath(d string) string {
	algo, hex, _ := strings.Cut(d, ":")
	return filepath.Join(s.Dir, "docker", "registry", "v2", "blobs", algo, hex[:2], hex, "data")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePortOn(t, "127.0.0.1")
}

func freePortOn(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nonLoopbackIPv4 is the first IPv4 address of an interface that is up and not
// the loopback; the test is skipped if there is none.
func nonLoopbackIPv4(t testing.TB) string {
	t.Helper()
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				return n.IP.String()
			}
		}
	}
	t.Skip("no non-loopback IPv4 address to serve a registry on")
	return ""
}

func writeHtpasswd(t testing.TB, path string, users map[string]string) {
	t.Helper()
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("htpasswd not on PATH in CI; hack/test.sh must install apache2-utils")
		}
		t.Skip("htpasswd not on PATH (Debian package apache2-utils)")
	}
	var buf bytes.Buffer
	for u, p := range users {
		out, err := exec.Command(bin, "-Bbn", u, p).Output()
		if err != nil {
			t.Fatalf("htpasswd -Bbn %s: %v", u, err)
		}
		buf.Write(bytes.TrimSpace(out))
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeCert makes a self-signed ECDSA certificate for 127.0.0.1, localhost and ip.
func writeCert(t testing.TB, dir, ip string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "layerfs registrytest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(ip)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
