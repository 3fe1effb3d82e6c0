package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/layerfs/layerfs/blobstore"
)

// clientPair writes a client certificate signed by a fresh CA as dir/name.cert
// and dir/name.key, and returns a pool holding the CA.
func clientPair(t *testing.T, dir, name string) *x509.CertPool {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, name+".cert"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// An mTLS registry (client certificates required) is reached with the
// *.cert/*.key pair of --cert-dir or of certs.d/<host>, as docker, skopeo and
// podman do; before, only *.crt CAs were read and the handshake failed with
// "tls: bad certificate".
func TestClientCertificates(t *testing.T) {
	certDir := t.TempDir()
	pool := clientPair(t, certDir, "client")
	srv := httptest.NewUnstartedServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	// The server's certificate, trusted through --cert-dir for --tls-verify=true.
	os.WriteFile(filepath.Join(certDir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)

	// Seed the registry with the client certificate.
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "client.cert"), filepath.Join(certDir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	seed := http.DefaultTransport.(*http.Transport).Clone()
	seed.TLSClientConfig = &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(host + "/bb:1")
	if err := remote.Write(ref, img, remote.WithTransport(seed)); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	pull := func(c *Client) error {
		st, err := blobstore.Open(filepath.Join(t.TempDir(), "store"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Pull(ctx, st, host+"/bb:1", PullOptions{})
		return err
	}
	if err := pull(&Client{}); err == nil {
		t.Fatalf("pull without a client certificate succeeded: the server does not require one")
	}
	if err := pull(&Client{CertDir: certDir}); err != nil {
		t.Errorf("pull with --cert-dir holding client.cert/client.key: %v", err)
	}
	if err := pull(&Client{CertDir: certDir, RequireTLS: true}); err != nil {
		t.Errorf("pull with --cert-dir and --tls-verify=true: %v", err)
	}

	// certs.d/<host>/ is read as docker's /etc/docker/certs.d/<host:port>/.
	certsd := t.TempDir()
	old := certDirs
	certDirs = []string{certsd}
	t.Cleanup(func() { certDirs = old })
	clientPair(t, filepath.Join(certsd, host), "x")
	if err := pull(&Client{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("pull with a certs.d pair from another CA = %v, want a TLS refusal", err)
	}
	os.Remove(filepath.Join(certsd, host, "x.cert"))
	os.Remove(filepath.Join(certsd, host, "x.key"))
	for _, f := range []string{"client.cert", "client.key"} {
		b, _ := os.ReadFile(filepath.Join(certDir, f))
		os.WriteFile(filepath.Join(certsd, host, f), b, 0o600)
	}
	if err := pull(&Client{}); err != nil {
		t.Errorf("pull with certs.d/%s holding client.cert/client.key: %v", host, err)
	}

	// A certificate without its key is an error that names it, as in docker.
	os.Remove(filepath.Join(certsd, host, "client.key"))
	if err := pull(&Client{}); err == nil || !strings.Contains(err.Error(), "missing key") || strings.Contains(err.Error(), "\n") {
		t.Errorf("pull with client.cert and no client.key = %v, want one line naming the missing key", err)
	}
}
