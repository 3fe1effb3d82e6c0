package integration

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/layerfs/layerfs/registry/registrytest"
)

// TestPullHuntResumes: a pull from a real distribution registry (with a login)
// whose blob download drops its connection a third of the way in goes on from
// where it stopped, with a Range request carrying the same credentials, and gets
// the image; the blob's bytes cross the wire about once, not twice.
func TestPullHuntResumes(t *testing.T) {
	f := startFaultReg(t, registrytest.Options{Users: map[string]string{"me": "secret"}})
	e := newRegEnv(t)
	big := make([]byte, 3<<20)
	rand.Read(big)
	img := e.addImage("big:1", map[string]string{"data/blob": base64.StdEncoding.EncodeToString(big)})
	ref := f.host + "/me/big:1"
	if _, errs, code := e.run("secret\n", "login", "-u", "me", "--password-stdin", f.host); code != 0 {
		t.Fatalf("login: %s", errs)
	}
	e.ok("push", "-q", "big:1", ref)

	var mu sync.Mutex
	var ranges []string
	var sent, size int64
	f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
			return false
		}
		f.forward(w, r, func(resp *http.Response) error {
			if resp.ContentLength < 1<<20 {
				return nil // the config
			}
			mu.Lock()
			defer mu.Unlock()
			ranges = append(ranges, r.Header.Get("Range")+" "+resp.Status)
			cut := int64(-1)
			if len(ranges) == 1 {
				size = resp.ContentLength
				cut = size / 3
			}
			resp.Body = &cutBody{ReadCloser: resp.Body, left: cut, sent: &sent, mu: &mu}
			return nil
		})
		return true
	})
	p := newRegEnv(t)
	p.home = e.home // its credentials
	p.ok("pull", "-q", ref)
	if got, err := p.store().Resolve(ref); err != nil || got.ID != img.ID {
		t.Errorf("pulled %s: %v, %v; want ID %s", ref, got, err, img.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 2 || ranges[0] != " 200 OK" || !strings.HasPrefix(ranges[1], "bytes=") || !strings.HasSuffix(ranges[1], " 206 Partial Content") {
		t.Errorf("GETs of the layer (Range, status): %q, want a whole one cut off, then one of the rest", ranges)
	}
	if sent > size+size/10 {
		t.Errorf("the registry sent %d bytes of a %d-byte layer", sent, size)
	}
}

// cutBody passes a body on, and breaks it off after left bytes (never if left <
// 0), counting what it passed in *sent.
type cutBody struct {
	io.ReadCloser
	left int64
	sent *int64
	mu   *sync.Mutex
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, errors.New("cut off")
	}
	if c.left > 0 && int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ReadCloser.Read(p)
	if c.left > 0 {
		c.left -= int64(n)
	}
	c.mu.Lock()
	*c.sent += int64(n)
	c.mu.Unlock()
	return n, err
}
