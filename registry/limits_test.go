package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/layerfs/layerfs/registry"
)

// TestPullStopsRedirectLoops: a registry whose blob or manifest GET answers 307 to
// itself. go-containerregistry follows redirects without a limit, so a pull looped
// for good, thousands of requests a second with its memory growing (review
// rev21-reg, finding 1); it now stops after 10, as skopeo does, with one line
// naming the image, and leaves the store as it was.
func TestPullStopsRedirectLoops(t *testing.T) {
	h := startHostileRegistry(t)
	layer := entriesTar(t, entry{name: "etc/hostname", body: "loop"})
	img := h.image("loop", 0, nil, layer)
	for _, what := range []string{"blob", "manifest"} {
		t.Run(what, func(t *testing.T) {
			var hits atomic.Int64
			host := proxyRegistry(t, h, func(w http.ResponseWriter, r *http.Request, _ *http.Response, _ []byte) bool {
				dir, _ := path.Split(r.URL.Path)
				loop := what == "blob" && strings.HasSuffix(dir, "/blobs/") && strings.HasSuffix(r.URL.Path, img.layers[0].Encoded()) ||
					what == "manifest" && strings.HasSuffix(dir, "/manifests/")
				if r.Method != http.MethodGet || !loop {
					return false
				}
				hits.Add(1)
				http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
				return true
			})
			st := newStore(t)
			snap := snapshot(t, st)
			ref := host + "/loop:latest"
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := (&registry.Client{}).Pull(ctx, st, ref, registry.PullOptions{CheckLayer: checkLayer})
			if err == nil || !(strings.HasPrefix(err.Error(), "pull "+ref+": ") || strings.HasPrefix(err.Error(), "pull "+ref+" from ")) || !strings.Contains(err.Error(), "stopped after 10 redirects") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Pull(%s) = %v, want one line: stopped after 10 redirects", ref, err)
			}
			if n := hits.Load(); n > 50 {
				t.Errorf("%d requests to the looping URL", n) // a few, with ggcr's retries
			}
			storeUnchanged(t, st, snap)
		})
	}
}

// TestPullCapsManifestBody: a manifest or index body is read up to 16 MiB, the
// store's cap, not go-containerregistry's 100 MiB: a 100 MB manifest took 500 MB
// of memory to refuse and a 100 MB index was taken (review rev21-reg, finding 3).
// Both with a Content-Length and without one (chunked).
func TestPullCapsManifestBody(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprint("chunked=", chunked), func(t *testing.T) {
			var sent atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.Contains(r.URL.Path, "/manifests/") {
					w.WriteHeader(http.StatusOK) // /v2/
					return
				}
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				body := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","annotations":{"pad":"`
				total := 40 << 20
				if !chunked {
					w.Header().Set("Content-Length", fmt.Sprint(total))
				}
				if r.Method == http.MethodHead {
					return
				}
				w.Write([]byte(body))
				pad := []byte(strings.Repeat("x", 64<<10))
				for n := len(body); n < total; n += len(pad) {
					if _, err := w.Write(pad); err != nil {
						return
					}
					sent.Add(int64(len(pad)))
				}
			}))
			defer srv.Close()
			st := newStore(t)
			snap := snapshot(t, st)
			ref := strings.TrimPrefix(srv.URL, "http://") + "/big:latest"
			_, err := (&registry.Client{}).Pull(context.Background(), st, ref, registry.PullOptions{CheckLayer: checkLayer})
			if err == nil || !strings.Contains(err.Error(), "larger than 16777216") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Pull(%s) = %v, want one line: larger than 16777216", ref, err)
			}
			if chunked && sent.Load() > 24<<20 {
				t.Errorf("the server sent %d MiB of the index before the pull gave up", sent.Load()>>20)
			}
			storeUnchanged(t, st, snap)
		})
	}
}

// TestPullCanceledNamesImage: a pull stopped (^C, SIGTERM) while its manifest
// was being fetched said only "context canceled" (review rev21-reg, finding 4);
// it names the image and the cause, as a stop later in the pull did.
func TestPullCanceledNamesImage(t *testing.T) {
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			select {
			case <-stall:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	defer close(stall)
	cause := errors.New("terminated signal received")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { cancel(cause) })
	ref := strings.TrimPrefix(srv.URL, "http://") + "/x:y"
	_, err := (&registry.Client{}).Pull(ctx, newStore(t), ref, registry.PullOptions{CheckLayer: checkLayer})
	if err == nil || !strings.HasPrefix(err.Error(), "pull "+ref+": ") || !errors.Is(err, cause) {
		t.Fatalf("Pull(%s) stopped while fetching its manifest = %v, want %q", ref, err, "pull "+ref+": "+cause.Error())
	}
}

// TestPullResumesDroppedDownload: a layer download whose connection drops half
// way. One dropped connection failed the whole pull (review rev21-reg, finding
// 2); then the layer was downloaded again from its start. Now, as moby does, the
// download goes on from where it broke off (a Range request), and when the
// registry does not honour that, from the start; a download that keeps breaking
// fails after five attempts in all, with one line, and the store as it was.
func TestPullResumesDroppedDownload(t *testing.T) {
	t.Cleanup(registry.SetRetryDelay(10 * time.Millisecond))
	h := startHostileRegistry(t)
	layer := entriesTar(t, entry{name: "etc/hostname", body: strings.Repeat("dropped ", 20000)})
	img := h.image("drop", 0, nil, layer)
	half := len(layer) / 2
	for _, tc := range []struct {
		name   string
		drops  int64  // GETs of the layer cut off half way
		ranged string // what the proxy does with a Range request: "" pass it on, "strip" it, or answer "416" or "0-" (a range from byte 0)
		ok     bool
		ranges []string // the Range header of each GET of the layer
	}{
		{"resumed", 1, "", true, []string{"", fmt.Sprintf("bytes=%d-%d", half, len(layer)-1)}},
		{"no ranges", 1, "strip", true, []string{"", fmt.Sprintf("bytes=%d-%d", half, len(layer)-1)}},
		{"range refused", 1, "416", true, []string{"", fmt.Sprintf("bytes=%d-%d", half, len(layer)-1), ""}},
		{"range from elsewhere", 1, "0-", true, []string{"", fmt.Sprintf("bytes=%d-%d", half, len(layer)-1), ""}},
		{"always dropped", 99, "", false, []string{"", fmt.Sprintf("bytes=%d-%d", half, len(layer)-1), fmt.Sprintf("bytes=%d-%d", half+half/2, len(layer)-1),
			fmt.Sprintf("bytes=%d-%d", half+half/2+half/4, len(layer)-1), fmt.Sprintf("bytes=%d-%d", half+half/2+half/4+half/8, len(layer)-1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var ranges []string
			host := proxyRegistry(t, h, func(w http.ResponseWriter, r *http.Request, resp *http.Response, b []byte) bool {
				if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, img.layers[0].Encoded()) {
					return false
				}
				mu.Lock()
				ranges = append(ranges, r.Header.Get("Range"))
				n := int64(len(ranges))
				mu.Unlock()
				if r.Header.Get("Range") != "" {
					switch tc.ranged {
					case "strip": // the whole blob, as a registry without ranges answers
						w.Header().Set("Content-Length", fmt.Sprint(len(layer)))
						w.Write(layer)
						return true
					case "416":
						http.Error(w, "no", http.StatusRequestedRangeNotSatisfiable)
						return true
					case "0-":
						w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(layer)-1, len(layer)))
						w.WriteHeader(http.StatusPartialContent)
						w.Write(layer)
						return true
					}
				}
				if n > tc.drops {
					return false
				}
				maps.Copy(w.Header(), resp.Header)
				w.WriteHeader(resp.StatusCode)
				w.Write(b[:len(b)/2])
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					conn.Close()
				}
				return true
			})
			st := newStore(t)
			snap := snapshot(t, st)
			ref := host + "/drop:latest"
			_, err := (&registry.Client{}).Pull(context.Background(), st, ref, registry.PullOptions{CheckLayer: checkLayer})
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(ranges, tc.ranges) {
				t.Errorf("Pull(%s) sent GETs of the layer with Range %q, want %q", ref, ranges, tc.ranges)
			}
			if tc.ok {
				if err != nil || !st.Has(img.layers[0]) {
					t.Fatalf("Pull(%s) = %v, want the layer pulled", ref, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "download layer "+img.layers[0].String()) || !strings.Contains(err.Error(), "resumed too many times") {
				t.Fatalf("Pull(%s) with every download dropped = %v, want a failure naming the layer and the resumes", ref, err)
			}
			storeUnchanged(t, st, snap)
		})
	}
}

// proxyRegistry serves what h serves, on a host of its own, except where serve
// answers a request itself (and returns true): it gets h's answer to it, read
// whole, to change.
func proxyRegistry(t *testing.T, h *hostileRegistry, serve func(w http.ResponseWriter, r *http.Request, resp *http.Response, body []byte) bool) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := r.Clone(context.Background())
		up.RequestURI, up.URL.Scheme, up.URL.Host = "", "http", h.host
		resp, err := http.DefaultTransport.RoundTrip(up)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if serve(w, r, resp, b) {
			return
		}
		maps.Copy(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestManifestCapSparesBlobs: the manifest cap applies to manifest URLs only: a
// layer over 16 MiB of a repository with "manifests" in its name pulled as
// "a manifest larger than 16777216 bytes" (review rev21-diff2, finding 2).
func TestManifestCapSparesBlobs(t *testing.T) {
	h := startHostileRegistry(t)
	layer := entriesTar(t, entry{name: "big", body: strings.Repeat("m", 17<<20)})
	img := h.image("acme/manifests/app", 0, nil, layer)
	st := newStore(t)
	if _, err := (&registry.Client{}).Pull(context.Background(), st, h.host+"/acme/manifests/app:latest", registry.PullOptions{CheckLayer: checkLayer}); err != nil {
		t.Fatalf("Pull of a 17 MiB layer from acme/manifests/app: %v", err)
	}
	if !st.Has(img.layers[0]) {
		t.Errorf("the layer is not in the store")
	}
}
