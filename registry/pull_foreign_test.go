package registry_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// blobServer serves one blob at /foreign.tgz (and 404 elsewhere) and records
// the paths asked for.
type blobServer struct {
	*httptest.Server
	mu   sync.Mutex
	gets []string
}

func newBlobServer(t *testing.T, body []byte) *blobServer {
	s := &blobServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.gets = append(s.gets, r.URL.Path)
		s.mu.Unlock()
		if r.Header.Get("Authorization") != "" {
			t.Errorf("a foreign layer's URL got an Authorization header")
		}
		switch r.URL.Path {
		case "/foreign.tgz":
		case "/encoded.tgz":
			// as a server that marks a .tgz as gzip-encoded: its bytes are
			// the blob's all the same
			w.Header().Set("Content-Encoding", "gzip")
		default:
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *blobServer) asked() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.gets, " ")
}

// foreignImage is a Docker schema2 image of a plain layer and a foreign one
// (rootfs.foreign.diff.tar.gzip) that lists urls.
func foreignImage(t *testing.T, base, fl v1.Layer, urls ...string) v1.Image {
	t.Helper()
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: base}, mutate.Addendum{Layer: fl, URLs: urls, MediaType: types.DockerForeignLayer})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestPullForeignLayer: a layer with urls (foreign, non-distributable) is pulled
// as docker on Linux pulls it, from the registry by digest, and when the registry
// lacks it from the first of its http(s) URLs that serves it, as containers/image
// does; the digest check guards either source. When nothing serves it the pull
// fails with one line naming the layer and every source tried, the store as it
// was. Before, every such layer was refused ("foreign layers are not
// supported"), even one the registry held (rev17-registry FINDINGS 4).
func TestPullForeignLayer(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{ManifestURLs: true})
	ctx := context.Background()
	base := remoteLayer(t, entriesTar(t, entry{name: "etc/hostname", body: "base\n"}), compression.GZip)
	flTar := entriesTar(t, entry{name: "opt/foreign", body: strings.Repeat("foreign ", 500)})
	// the layer's own media type, as ggcr's push goes by it to skip the blob
	fl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(flTar)), nil },
		tarball.WithCompression(compression.GZip), tarball.WithMediaType(types.DockerForeignLayer), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	// go-containerregistry's registry takes a manifest with URLs of any scheme,
	// which docker-registry refuses: a registry is not to be trusted with them
	ggcrReg := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(ggcrReg.Close)
	body, err := fl.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	var raw strings.Builder
	if _, err := io.Copy(&raw, body); err != nil {
		t.Fatal(err)
	}
	fd := layerDigest(t, fl)

	for _, tc := range []struct {
		name      string
		inReg     bool   // the registry holds the foreign blob too
		ggcr      bool   // pushed to go-containerregistry's in-process registry
		serve     []byte // what the URL server's /foreign.tgz serves
		urls      []string
		wantAsked string // the URL server's paths asked for, in order
		wantErr   string // "" for success; else a part of the one-line error (SRV: the server's URL)
	}{
		{name: "in registry", inReg: true, serve: []byte(raw.String()), urls: []string{"SRV/foreign.tgz"}, wantAsked: ""},
		{name: "from url", serve: []byte(raw.String()), urls: []string{"SRV/missing", "SRV/foreign.tgz"}, wantAsked: "/missing /foreign.tgz"},
		{name: "content-encoding gzip", serve: []byte(raw.String()), urls: []string{"SRV/encoded.tgz"}, wantAsked: "/encoded.tgz"},
		{name: "ftp url skipped", ggcr: true, serve: []byte(raw.String()), urls: []string{"ftp://SRVHOST/foreign.tgz", "SRV/foreign.tgz"}, wantAsked: "/foreign.tgz"},
		{name: "url wrong content", serve: []byte("not the layer"), urls: []string{"SRV/foreign.tgz"}, wantAsked: "/foreign.tgz",
			wantErr: "layer " + fd.String() + " from SRV/foreign.tgz: content does not match digest"},
		{name: "nowhere", serve: []byte(raw.String()), urls: []string{"SRV/missing", "SRV/gone"}, wantAsked: "/missing /gone",
			wantErr: "download foreign layer " + fd.String() + ": not found (tried registry: not found: blob unknown; SRV/missing: HTTP status 404 Not Found; SRV/gone: HTTP status 404 Not Found)"},
		{name: "nowhere ggcr", ggcr: true, serve: []byte(raw.String()), urls: []string{"ftp://SRVHOST/foreign.tgz", "SRV/missing"}, wantAsked: "/missing",
			wantErr: "download foreign layer " + fd.String() + ": not found (tried registry: not found: blob unknown; ftp://SRVHOST/foreign.tgz: not an http or https URL; SRV/missing: HTTP status 404 Not Found)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newBlobServer(t, tc.serve)
			sub := func(s string) string {
				return strings.NewReplacer("SRVHOST", strings.TrimPrefix(srv.URL, "http://"), "SRV", srv.URL).Replace(s)
			}
			var urls []string
			for _, u := range tc.urls {
				urls = append(urls, sub(u))
			}
			img := foreignImage(t, base, fl, urls...)
			host := reg.Host
			if tc.ggcr {
				host = strings.TrimPrefix(ggcrReg.URL, "http://")
			}
			ref := host + "/foreign/" + strings.ReplaceAll(tc.name, " ", "-") + ":1"
			r, err := name.ParseReference(ref)
			if err != nil {
				t.Fatal(err)
			}
			var opts []remote.Option
			if tc.inReg {
				opts = append(opts, remote.WithNondistributable)
			}
			if err := remote.Write(r, img, opts...); err != nil {
				t.Fatalf("remote.Write: %v", err)
			}
			st := newStore(t)
			_, err = (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: checkLayer})
			if got := srv.asked(); got != tc.wantAsked {
				t.Errorf("URL server asked for %q, want %q", got, tc.wantAsked)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Pull(%s) = %v", ref, err)
				}
				if !st.Has(fd) {
					t.Errorf("foreign layer %s not in the store after the pull", fd)
				}
				if _, err := st.Resolve(ref); err != nil {
					t.Errorf("Resolve(%s) after the pull: %v", ref, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Pull(%s) succeeded, want %q", ref, sub(tc.wantErr))
			}
			t.Logf("Pull: %v", err)
			if msg := err.Error(); !strings.HasPrefix(msg, "pull "+ref+": ") || !strings.Contains(msg, sub(tc.wantErr)) || strings.Contains(msg, "\n") {
				t.Errorf("Pull(%s) = %q, want one line with %q", ref, msg, sub(tc.wantErr))
			}
			if strings.Contains(tc.name, "wrong") && !errors.Is(err, blobstore.ErrDigestMismatch) {
				t.Errorf("Pull(%s) = %v, want ErrDigestMismatch", ref, err)
			}
			if st.Has(fd) {
				t.Errorf("foreign layer %s stored after a failed pull", fd)
			}
			if _, err := st.Resolve(ref); err == nil {
				t.Errorf("image %s recorded after a failed pull", ref)
			}
		})
	}
}
