package integration

import (
	"archive/tar"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrmutate "github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// hostileReg is a read-only registry (a minimal distribution API on 127.0.0.1)
// serving crafted manifests and blobs; hook, if set, may answer a request itself
// (return true) to misbehave: a wrong length, an error, a stall.
type hostileReg struct {
	host string

	mu        sync.Mutex
	manifests map[string]hostileManifest // by "repo:tag" and "repo@digest"
	blobs     map[string][]byte          // by digest
	hook      func(w http.ResponseWriter, r *http.Request, kind, key string) bool
}

type hostileManifest struct {
	mt  string
	raw []byte
}

func startHostileReg(t *testing.T) *hostileReg {
	t.Helper()
	h := &hostileReg{manifests: map[string]hostileManifest{}, blobs: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(srv.Close)
	h.host = strings.TrimPrefix(srv.URL, "http://")
	return h
}

func (h *hostileReg) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		w.WriteHeader(http.StatusOK)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	h.mu.Lock()
	hook := h.hook
	h.mu.Unlock()
	if i := strings.LastIndex(p, "/manifests/"); i >= 0 {
		repo, ref := p[:i], p[i+len("/manifests/"):]
		key := repo + ":" + ref
		if strings.HasPrefix(ref, "sha256:") {
			key = repo + "@" + ref
		}
		if hook != nil && hook(w, r, "manifest", key) {
			return
		}
		h.mu.Lock()
		m, ok := h.manifests[key]
		h.mu.Unlock()
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", m.mt)
		w.Header().Set("Docker-Content-Digest", digestOf(m.raw).String())
		w.Header().Set("Content-Length", fmt.Sprint(len(m.raw)))
		if r.Method != http.MethodHead {
			w.Write(m.raw)
		}
		return
	}
	if i := strings.LastIndex(p, "/blobs/"); i >= 0 {
		d := p[i+len("/blobs/"):]
		if hook != nil && hook(w, r, "blob", d) {
			return
		}
		h.mu.Lock()
		b, ok := h.blobs[d]
		h.mu.Unlock()
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		if r.Method != http.MethodHead {
			w.Write(b)
		}
		return
	}
	http.Error(w, `{"errors":[{"code":"UNSUPPORTED","message":"read-only"}]}`, http.StatusMethodNotAllowed)
}

// addImage serves img as repo:tag (and by digest) with all its blobs.
func (h *hostileReg) addImage(t *testing.T, repo, tag string, img v1.Image) {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.manifests[repo+":"+tag] = hostileManifest{string(mt), raw}
	h.manifests[repo+"@"+digestOf(raw).String()] = hostileManifest{string(mt), raw}
	h.blobs[digestOf(cfg).String()] = cfg
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := readAllClose(rc)
		if err != nil {
			t.Fatal(err)
		}
		h.blobs[digestOf(b).String()] = b
	}
}

func (h *hostileReg) setHook(fn func(w http.ResponseWriter, r *http.Request, kind, key string) bool) {
	h.mu.Lock()
	h.hook = fn
	h.mu.Unlock()
}

// huntImage is a linux/amd64 OCI image of the given layers.
func huntImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := ggcrmutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = ggcrmutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := ggcrmutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = ggcrmutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func huntLayer(t *testing.T, name, body string) v1.Layer {
	return regLayer(t, compression.GZip, tarFileEntry{hdr: &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg}, body: []byte(body)})
}

// storeIntact checks what every failed command must leave: every blob verifies
// against its name, index.json parses, and after gc no temp file is left.
func storeIntact(t *testing.T, e *regEnv) {
	t.Helper()
	for _, d := range blobFiles(t, e.root) {
		b, err := os.ReadFile(filepath.Join(e.root, "store", "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
		if err != nil {
			t.Fatal(err)
		}
		if got := digestOf(b); got.String() != d {
			t.Errorf("blob %s holds %s", d, got)
		}
	}
	if _, err := e.store().Images(); err != nil {
		t.Errorf("images: %v", err)
	}
}

func readAllClose(rc interface {
	Read([]byte) (int, error)
	Close() error
}) ([]byte, error) {
	defer rc.Close()
	var b []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			if err.Error() == "EOF" {
				return b, nil
			}
			return b, err
		}
	}
}

// nginxPage is what a proxy in front of a registry answers with: an HTML page of
// many lines.
const nginxPage = "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

// TestRegistryPullErrorBodyOneLine: a registry (or the proxy in front of it) that
// answers a blob request with an error page of many lines fails the pull with one
// error line naming the image and the blob, the store as it was, and the same pull
// works once the registry answers. The page's lines used to go to stderr as they
// came.
func TestRegistryPullErrorBodyOneLine(t *testing.T) {
	h := startHostileReg(t)
	a := huntLayer(t, "etc/a", strings.Repeat("a", 4096))
	img := huntImage(t, a)
	h.addImage(t, "x/app", "1", img)
	ad, _ := a.Digest()
	cd, _ := img.ConfigName()
	ref := h.host + "/x/app:1"
	e := newRegEnv(t)
	e.addImage("base:1", map[string]string{"etc/base": "base"})
	for _, bad := range []v1.Hash{cd, ad} {
		t.Run(bad.String()[:15], func(t *testing.T) {
			h.setHook(func(w http.ResponseWriter, r *http.Request, kind, key string) bool {
				if key != bad.String() {
					return false
				}
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(nginxPage))
				return true
			})
			t.Cleanup(func() { h.setHook(nil) })
			before := treeSnapshot(t, e.root)
			e.fails(bad.String(), "pull", "-q", ref)
			if diff := diffTrees(before, treeSnapshot(t, e.root)); diff != "" {
				t.Errorf("root changed by a failed pull:\n%s", diff)
			}
			storeIntact(t, e)
		})
	}
	e.ok("pull", "-q", ref)
	e.ok("gc")
	storeIntact(t, e)
}
