package registrytest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Stalling serves img read-only as <host>/<repo>:<tag> (a minimal distribution API)
// but sends only half of each layer blob and then hangs until the client goes
// away: a pull of it never completes, so a test can kill the puller mid-blob.
// Started is closed when the first half-blob has been sent.
type Stalling struct {
	Host    string
	Started <-chan struct{}

	hanging atomic.Int64
}

// Hanging is the number of half-sent layer blobs whose client is still connected.
func (s *Stalling) Hanging() int { return int(s.hanging.Load()) }

// StartStalling runs a Stalling registry on 127.0.0.1 until t ends. The layers
// named in whole are sent whole, at once; the others stall.
func StartStalling(t testing.TB, repo, tag string, img v1.Image, whole ...v1.Hash) *Stalling {
	t.Helper()
	rawManifest, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	md, _ := img.Digest()
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layers := map[string]v1.Layer{}
	for _, l := range m.Layers {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers[l.Digest.String()] = layer
	}
	started := make(chan struct{})
	var once sync.Once
	s := &Stalling{Started: started}
	prefix := "/v2/" + repo + "/"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == prefix+"manifests/"+tag || r.URL.Path == prefix+"manifests/"+md.String():
			w.Header().Set("Content-Type", string(mt))
			w.Header().Set("Docker-Content-Digest", md.String())
			w.Header().Set("Content-Length", fmt.Sprint(len(rawManifest)))
			if r.Method != http.MethodHead {
				w.Write(rawManifest)
			}
		case r.URL.Path == prefix+"blobs/"+m.Config.Digest.String():
			w.Header().Set("Content-Type", string(types.OCIConfigJSON))
			w.Write(rawConfig)
		case strings.HasPrefix(r.URL.Path, prefix+"blobs/") && layers[strings.TrimPrefix(r.URL.Path, prefix+"blobs/")] != nil:
			d := strings.TrimPrefix(r.URL.Path, prefix+"blobs/")
			l := layers[d]
			size, _ := l.Size()
			rc, err := l.Compressed()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer rc.Close()
			w.Header().Set("Content-Length", fmt.Sprint(size))
			w.WriteHeader(http.StatusOK)
			if slices.ContainsFunc(whole, func(h v1.Hash) bool { return h.String() == d }) {
				io.Copy(w, rc)
				return
			}
			io.CopyN(w, rc, size/2)
			w.(http.Flusher).Flush()
			s.hanging.Add(1)
			defer s.hanging.Add(-1)
			once.Do(func() { close(started) })
			<-r.Context().Done()
		default:
			http.Error(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	s.Host = strings.TrimPrefix(srv.URL, "http://")
	return s
}
