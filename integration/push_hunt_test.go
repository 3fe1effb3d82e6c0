package integration

// Push hunt: `layerfs push` against a registry that fails in chosen ways. faultReg
// is a real distribution registry (registrytest) behind a proxy whose hook may
// answer a request itself: an error status, a wrong digest, a dropped connection,
// a stall. Every failed push must say what failed on one line, exit non-zero and
// leave the local store as it was; the same push must then work.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/internal/testenv"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// faultReg is a writable registry on 127.0.0.1 whose requests pass a hook first.
type faultReg struct {
	host string
	back *registrytest.Server

	mu   sync.Mutex
	hook func(w http.ResponseWriter, r *http.Request) bool
}

func startFaultReg(t *testing.T, opts registrytest.Options) *faultReg {
	t.Helper()
	back := registrytest.Start(t, opts)
	u, _ := url.Parse("http://" + back.Host)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // clients the tests kill
	f := &faultReg{back: back}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		hook := f.hook
		f.mu.Unlock()
		if hook != nil && hook(w, r) {
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.host = strings.TrimPrefix(srv.URL, "http://")
	return f
}

func (f *faultReg) setHook(fn func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.hook = fn
	f.mu.Unlock()
}

// isBlobUpload reports whether r is a step of a blob upload: "POST" starts one,
// "PATCH" sends data, "PUT" ends it.
func isBlobUpload(r *http.Request, method string) bool {
	return r.Method == method && strings.Contains(r.URL.Path, "/blobs/uploads/")
}

func isManifestPut(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
}

// forward passes r to the registry behind f, letting modify change the answer.
func (f *faultReg) forward(w http.ResponseWriter, r *http.Request, modify func(*http.Response) error) {
	u, _ := url.Parse("http://" + f.back.Host)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = modify
	p.ErrorLog = log.New(io.Discard, "", 0)
	p.ServeHTTP(w, r)
}

// stall takes a request's body and then answers nothing until the client goes.
func stall(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(time.Minute):
	}
}

// pushFails runs push and wants a non-zero exit, one "Error: " line on stderr
// holding every one of want, no upload state token in it, and root unchanged.
func pushFails(t *testing.T, e *regEnv, want []string, args ...string) {
	t.Helper()
	before := treeSnapshot(t, e.root)
	out, errs, code := e.run("", append([]string{"push"}, args...)...)
	if code == 0 {
		t.Fatalf("push %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "Error: ") || stateToken.MatchString(lines[0]) {
		t.Errorf("push %s: stderr = %q, want one \"Error: \" line without the upload state", strings.Join(args, " "), errs)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("push %s: stderr = %q, want it to contain %q", strings.Join(args, " "), errs, w)
		}
	}
	if diff := diffTrees(before, treeSnapshot(t, e.root)); diff != "" {
		t.Errorf("root changed by a failed push:\n%s", diff)
	}
	storeIntact(t, e)
}

// stateToken is an upload URL's state not redacted.
var stateToken = regexp.MustCompile(`_state=[^R&]`)

// remoteDigest is the digest skopeo finds for ref, "" if it finds no manifest.
func remoteDigest(t *testing.T, ref string) string {
	t.Helper()
	skopeo := testenv.RequireTool(t, "skopeo")
	out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "--format", "{{.Digest}}", "docker://"+ref).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "manifest unknown") {
			return ""
		}
		t.Fatalf("skopeo inspect %s: %v: %s", ref, err, out)
	}
	return strings.TrimSpace(string(out))
}

// pushRoundTrip pushes src to ref, wants skopeo to see the same manifest digest,
// and pulls it back into a new store.
func pushRoundTrip(t *testing.T, e *regEnv, src, ref string, img *blobstore.Image) {
	t.Helper()
	e.ok("push", "-q", src, ref)
	if got := remoteDigest(t, ref); got != img.ManifestDigest.String() {
		t.Errorf("skopeo inspect %s: digest %s, want %s", ref, got, img.ManifestDigest)
	}
	p := newRegEnv(t)
	p.ok("pull", "-q", ref)
	if got, err := p.store().Resolve(ref); err != nil || got.ID != img.ID {
		t.Errorf("pulled back %s: %v, %v; want ID %s", ref, got, err, img.ID)
	}
}

func answer(code int, ctype, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// TestPushHuntRegistryFails: each step of a push failing in the registry fails the
// push with one line naming the image and what failed, the store as it was, no
// manifest on the registry, and the same push then works and round-trips.
func TestPushHuntRegistryFails(t *testing.T) {
	f := startFaultReg(t, registrytest.Options{})
	e := newRegEnv(t)
	wrong := "sha256:" + strings.Repeat("0", 64)
	cases := []struct {
		name string
		hit  func(r *http.Request) bool
		do   func(w http.ResponseWriter, r *http.Request)
		want []string // besides the image; "BLOB" is the layer's digest
	}{
		{"post500", upload("POST"), func(w http.ResponseWriter, r *http.Request) { answer(500, "", "")(w) }, []string{"BLOB", "500 Internal Server Error"}},
		{"post503html", upload("POST"), func(w http.ResponseWriter, r *http.Request) { answer(503, "text/html", nginxPage)(w) }, []string{"BLOB", "503 Service Unavailable"}},
		{"patch500", upload("PATCH"), func(w http.ResponseWriter, r *http.Request) { answer(500, "", "")(w) }, []string{"BLOB", "500 Internal Server Error"}},
		{"put500", upload("PUT"), func(w http.ResponseWriter, r *http.Request) { answer(500, "", "")(w) }, []string{"BLOB", "500 Internal Server Error"}},
		{"manifest500", isManifestPut, func(w http.ResponseWriter, r *http.Request) { answer(500, "", "")(w) }, []string{"manifest", "500 Internal Server Error"}},
		{"manifest400", isManifestPut, func(w http.ResponseWriter, r *http.Request) {
			answer(400, "application/json", `{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{"reason":"no\nway"}}]}`)(w)
		}, []string{"manifest", "MANIFEST_INVALID: manifest invalid"}},
		{"denied403", func(r *http.Request) bool { return r.URL.Path != "/v2/" }, func(w http.ResponseWriter, r *http.Request) {
			answer(403, "application/json", `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`)(w)
		}, []string{"push access denied"}},
		{"hangup", upload("PATCH"), func(w http.ResponseWriter, r *http.Request) {
			io.CopyN(io.Discard, r.Body, 1000)
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		}, []string{"BLOB", "EOF"}},
		{"blobdigest", upload("PUT"), func(w http.ResponseWriter, r *http.Request) {
			f.forward(w, r, func(resp *http.Response) error {
				resp.Header.Set("Docker-Content-Digest", wrong)
				return nil
			})
		}, []string{"BLOB", wrong}},
		{"manifestdigest", isManifestPut, func(w http.ResponseWriter, r *http.Request) {
			f.forward(w, r, func(resp *http.Response) error {
				resp.Header.Set("Docker-Content-Digest", wrong)
				return nil
			})
		}, []string{"manifest", wrong}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Layers of its own, so nothing is found on the registry already.
			src := "app-" + strings.ToLower(c.name) + ":1"
			img := e.addImage(src, map[string]string{"etc/big": strings.Repeat(c.name, 1<<18)})
			ref := f.host + "/hunt/" + strings.ToLower(c.name) + ":1"
			f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if !c.hit(r) || (r.Method != http.MethodHead && strings.Contains(r.URL.Path, img.Manifest.Config.Digest.Encoded())) {
					return false
				}
				c.do(w, r)
				return true
			})
			t.Cleanup(func() { f.setHook(nil) })
			want := []string{f.host + "/hunt/" + strings.ToLower(c.name)}
			for _, w := range c.want {
				want = append(want, strings.ReplaceAll(w, "BLOB", img.Manifest.Layers[0].Digest.String()))
			}
			pushFails(t, e, want, src, ref)
			f.setHook(nil)
			if c.name != "manifestdigest" {
				if got := remoteDigest(t, ref); got != "" {
					t.Errorf("a failed push left manifest %s on the registry", got)
				}
			}
			pushRoundTrip(t, e, src, ref, img)
		})
	}
}

func upload(method string) func(r *http.Request) bool {
	return func(r *http.Request) bool { return isBlobUpload(r, method) }
}

// TestPushHuntLocalBlob: a layer missing or damaged in the local store fails the
// push naming the blob and the store, before any manifest is sent; restored, the
// same push works. A blob a byte short was reported as "registry ... is
// unreachable" (the HTTP client words a failed body read as a network error).
func TestPushHuntLocalBlob(t *testing.T) {
	f := startFaultReg(t, registrytest.Options{})
	for _, c := range []struct {
		name string
		harm func(b []byte) []byte // nil: remove the blob
		want string
	}{
		{"missing", nil, "not found"},
		{"flipped", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0xff; return b }, "content does not match digest"},
		{"short", func(b []byte) []byte { return b[:len(b)-1] }, "content does not match digest"},
		{"long", func(b []byte) []byte { return append(bytes.Clone(b), 'x') }, "content does not match digest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newRegEnv(t)
			img := e.addImage("app:1", map[string]string{"etc/a": strings.Repeat(c.name, 1<<18)}, map[string]string{"etc/b": c.name})
			l := img.Manifest.Layers[0].Digest
			p := filepath.Join(e.root, "store", "blobs", "sha256", l.Encoded())
			good, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if c.harm == nil {
				err = os.Remove(p)
			} else {
				err = os.WriteFile(p, c.harm(good), 0o444)
			}
			if err != nil {
				t.Fatal(err)
			}
			ref := f.host + "/local/" + c.name + ":1"
			before := treeSnapshot(t, e.root)
			out, errs, code := e.run("", "push", "app:1", ref)
			if code == 0 {
				t.Fatalf("push with blob %s %s succeeded:\n%s", l, c.name, out)
			}
			line := strings.TrimRight(errs, "\n")
			for _, w := range []string{ref, "local store", l.String(), c.want} {
				if strings.Count(errs, "\n") != 1 || !strings.Contains(line, w) || strings.Contains(line, "unreachable") {
					t.Errorf("push: stderr = %q, want one line containing %q", errs, w)
				}
			}
			if diff := diffTrees(before, treeSnapshot(t, e.root)); diff != "" {
				t.Errorf("root changed by a failed push:\n%s", diff)
			}
			if got := remoteDigest(t, ref); got != "" {
				t.Errorf("a push with a bad blob left manifest %s on the registry", got)
			}
			if err := os.WriteFile(p, good, 0o444); err != nil {
				t.Fatal(err)
			}
			pushRoundTrip(t, e, "app:1", ref, img)
		})
	}
}

// TestPushHuntAuth: no credentials, a refused login and wrong stored credentials
// each fail with one line and change neither the store nor config.json; then a
// login and the push work.
func TestPushHuntAuth(t *testing.T) {
	f := startFaultReg(t, registrytest.Options{Users: map[string]string{"me": "secret"}})
	e := newRegEnv(t)
	img := e.addImage("app:1", map[string]string{"etc/a": "auth"})
	ref := f.host + "/me/app:1"
	deny := []string{"push access denied for " + f.host + "/me/app", "layerfs login " + f.host}
	pushFails(t, e, deny, "app:1", ref)

	cfg := filepath.Join(e.home, ".docker", "config.json")
	if _, errs, code := e.run("wrong\n", "login", "-u", "me", "--password-stdin", f.host); code == 0 || errs != "Error: login "+f.host+": unauthorized: incorrect username or password\n" {
		t.Errorf("login with a wrong password: exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(cfg); !os.IsNotExist(err) {
		t.Errorf("a refused login wrote %s: %v", cfg, err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	bad := `{"auths":{"` + f.host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("me:wrong")) + `"}}}`
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	pushFails(t, e, deny, "app:1", ref)
	if b, _ := os.ReadFile(cfg); string(b) != bad {
		t.Errorf("a failed push changed %s: %s", cfg, b)
	}
	if _, errs, code := e.run("secret\n", "login", "-u", "me", "--password-stdin", f.host); code != 0 {
		t.Fatalf("login: %s", errs)
	}
	e.ok("push", "-q", "app:1", ref)
	p := newRegEnv(t)
	p.home = e.home // its credentials
	p.ok("pull", "-q", ref)
	if got, err := p.store().Resolve(ref); err != nil || got.ID != img.ID {
		t.Errorf("pulled back %s: %v, %v; want ID %s", ref, got, err, img.ID)
	}
}

// TestPushHuntInterrupted: a push stalled in a blob upload or the manifest PUT
// stops at SIGINT promptly with one line, and a SIGKILLed one leaves nothing; the
// store is as it was either way and the push then works.
func TestPushHuntInterrupted(t *testing.T) {
	f := startFaultReg(t, registrytest.Options{})
	e := newRegEnv(t)
	img := e.addImage("app:1", map[string]string{"etc/a": strings.Repeat("stall", 1<<18)}, map[string]string{"etc/b": "b"})
	ref := f.host + "/slow/app:1"
	// Blob uploads first: once the manifest stalls, the blobs are on the registry.
	for _, c := range []struct {
		at  string
		sig syscall.Signal
	}{{"upload", syscall.SIGINT}, {"upload", syscall.SIGKILL}, {"manifest", syscall.SIGINT}, {"manifest", syscall.SIGKILL}} {
		sig := c.sig
		t.Run(c.at+"-"+sig.String(), func(t *testing.T) {
			started := make(chan struct{}, 8)
			f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if c.at == "upload" && !isBlobUpload(r, "PATCH") || c.at == "manifest" && !isManifestPut(r) {
					return false
				}
				started <- struct{}{}
				stall(w, r)
				return true
			})
			t.Cleanup(func() { f.setHook(nil) })
			before := treeSnapshot(t, e.root)
			cmd := exec.Command(regBinary(t), "--root", e.root, "push", "app:1", ref)
			cmd.Env = append(os.Environ(), "HOME="+e.home, "DOCKER_CONFIG="+filepath.Join(e.home, ".docker"), registry.HubOriginEnv+"="+e.hub)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() { cmd.Process.Kill(); <-done })
			select {
			case <-started:
			case err := <-done:
				t.Fatalf("push ended before it uploaded: %v: %s", err, stderr.String())
			case <-time.After(20 * time.Second):
				t.Fatal("the push never started an upload")
			}
			time.Sleep(100 * time.Millisecond)
			cmd.Process.Signal(sig)
			select {
			case err := <-done:
				done <- err // for the cleanup
				if err == nil {
					t.Fatalf("push after %v exited 0", sig)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("push still running 5s after %v", sig)
			}
			if sig == syscall.SIGINT {
				errs := stderr.String()
				if strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "Error: ") || !strings.Contains(errs, ref) || !strings.Contains(errs, "interrupt") || stateToken.MatchString(errs) {
					t.Errorf("push after SIGINT: stderr = %q, want one line naming %s and the interrupt", errs, ref)
				}
			}
			if diff := diffTrees(before, treeSnapshot(t, e.root)); diff != "" {
				t.Errorf("root changed by an interrupted push:\n%s", diff)
			}
			storeIntact(t, e)
			f.setHook(nil)
			if got := remoteDigest(t, ref); got != "" {
				t.Errorf("an interrupted push left manifest %s on the registry", got)
			}
		})
	}
	pushRoundTrip(t, e, "app:1", ref, img)
}

// TestPushHuntBadArgs: what cannot be pushed fails at once, with one line.
func TestPushHuntBadArgs(t *testing.T) {
	e := newRegEnv(t)
	e.addImage("app:1", map[string]string{"etc/a": "a"})
	host := fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	for _, c := range []struct {
		want string
		args []string
	}{
		{"does not exist locally with the tag: nope:1", []string{"nope:1", host + "/x/nope:1"}},
		{"must be lowercase", []string{"app:1", host + "/X/app:1"}},
		{"must be lowercase", []string{"UPPER:1"}},
		{"cannot push to a digest reference", []string{"app:1", host + "/x/app@sha256:" + strings.Repeat("0", 64)}},
		{"registry " + host + " is unreachable", []string{"app:1", host + "/x/app:1"}},
	} {
		pushFails(t, e, []string{c.want}, c.args...)
	}
}
