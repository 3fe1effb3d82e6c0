package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// These tests drive the built binary against real distribution registries on
// 127.0.0.1. Docker Hub references go to LAYERFS_DOCKER_HUB_ORIGIN, which every
// invocation sets to a local address, so nothing ever reaches docker.io.

var (
	regBinOnce sync.Once
	regBin     string
	regBinErr  error
)

// regBinary builds the layerfs binary once for these tests.
func regBinary(t *testing.T) string {
	t.Helper()
	regBinOnce.Do(func() {
		dir, err := os.MkdirTemp(workDir, "registry-it-") // removed with workDir
		if err != nil {
			regBinErr = err
			return
		}
		regBin = filepath.Join(dir, "layerfs")
		out, err := exec.Command("go", "build", "-o", regBin, "github.com/layerfs/layerfs").CombinedOutput()
		if err != nil {
			regBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if regBinErr != nil {
		t.Fatal(regBinErr)
	}
	return regBin
}

// regEnv is an isolated environment: its own root, HOME, DOCKER_CONFIG, config file
// and a Docker Hub origin on the loopback.
type regEnv struct {
	t      *testing.T
	root   string
	home   string
	config string
	hub    string
	extra  []string
}

func newRegEnv(t *testing.T) *regEnv {
	t.Helper()
	d := t.TempDir()
	e := &regEnv{t: t, root: filepath.Join(d, "root"), home: filepath.Join(d, "home"), config: filepath.Join(d, "config.json")}
	e.hub = fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t)) // nothing listens there
	os.MkdirAll(e.home, 0o755)
	if err := os.WriteFile(e.config, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs layerfs with args and stdin; it returns stdout, stderr and the exit code.
func (e *regEnv) run(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(regBinary(e.t), append([]string{"--root", e.root}, args...)...)
	cmd.Env = append(os.Environ(),
		"HOME="+e.home,
		"DOCKER_CONFIG="+filepath.Join(e.home, ".docker"),
		"REGISTRY_AUTH_FILE=",
		registry.HubOriginEnv+"="+e.hub,
	)
	cmd.Env = append(cmd.Env, e.extra...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run layerfs %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs layerfs and fails the test unless it exits 0.
func (e *regEnv) ok(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run("", args...)
	if code != 0 {
		e.t.Fatalf("layerfs %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs layerfs, wants a non-zero exit and exactly one stderr line containing want.
func (e *regEnv) fails(want string, args ...string) {
	e.t.Helper()
	out, errs, code := e.run("", args...)
	if code == 0 {
		e.t.Fatalf("layerfs %s succeeded; stdout:\n%s", strings.Join(args, " "), out)
	}
	lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "Error: ") || !strings.Contains(lines[0], want) {
		e.t.Errorf("layerfs %s: stderr = %q, want one \"Error: ...\" line containing %q", strings.Join(args, " "), errs, want)
	}
}

func (e *regEnv) store() *blobstore.Store {
	e.t.Helper()
	st, err := blobstore.Open(filepath.Join(e.root, "store"))
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// addImage writes an image with one gzip layer per file set into e's store, tagged ref.
func (e *regEnv) addImage(ref string, layers ...map[string]string) *blobstore.Image {
	e.t.Helper()
	ctx := context.Background()
	st := e.store()
	var descs []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, files := range layers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for n, c := range files {
			tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg})
			tw.Write([]byte(c))
		}
		tw.Close()
		d, diffID, err := st.AppendLayer(ctx, &buf, "gzip")
		if err != nil {
			e.t.Fatal(err)
		}
		descs = append(descs, d)
		diffIDs = append(diffIDs, diffID)
	}
	cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	img, err := st.WriteImage(ctx, cfg, descs)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := st.Tag(ctx, img, ref); err != nil {
		e.t.Fatal(err)
	}
	img, err = st.Resolve(ref)
	if err != nil {
		e.t.Fatal(err)
	}
	return img
}

func regLines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

// matchLines checks got against regular expressions, line by line.
func regMatchLines(t *testing.T, what, got string, want ...string) {
	t.Helper()
	gl := regLines(got)
	if len(gl) != len(want) {
		t.Errorf("%s: %d lines, want %d:\n%s", what, len(gl), len(want), got)
		return
	}
	for i, w := range want {
		if !regexp.MustCompile("^" + w + "$").MatchString(gl[i]) {
			t.Errorf("%s: line %d = %q, want /%s/\n%s", what, i+1, gl[i], w, got)
		}
	}
}

func TestRegistryPushPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	a := newRegEnv(t)
	img := a.addImage("app:1", map[string]string{"etc/a": "one"}, map[string]string{"etc/b": "two"})
	dest := reg.Host + "/team/app:1"
	hex12 := "[0-9a-f]{12}"
	d := regexp.QuoteMeta(img.ManifestDigest.String())

	out := a.ok("push", "app:1", dest)
	regMatchLines(t, "first push", out,
		regexp.QuoteMeta("The push refers to repository ["+reg.Host+"/team/app]"),
		hex12+": Preparing", hex12+": Preparing",
		hex12+": Pushed", hex12+": Pushed",
		"1: digest: "+d+" size: [0-9]+")
	out = a.ok("push", "app:1", dest)
	regMatchLines(t, "second push", out,
		regexp.QuoteMeta("The push refers to repository ["+reg.Host+"/team/app]"),
		hex12+": Preparing", hex12+": Preparing",
		hex12+": Layer already exists", hex12+": Layer already exists",
		"1: digest: "+d+" size: [0-9]+")
	out = a.ok("push", "app:1", reg.Host+"/other/app")
	regMatchLines(t, "push to another repository", out,
		"Using default tag: latest",
		regexp.QuoteMeta("The push refers to repository ["+reg.Host+"/other/app]"),
		hex12+": Preparing", hex12+": Preparing",
		hex12+": Mounted from team/app", hex12+": Mounted from team/app",
		"latest: digest: "+d+" size: [0-9]+")

	b := newRegEnv(t)
	out = b.ok("pull", dest)
	want := []string{"1: Pulling from team/app"}
	for range 2 {
		want = append(want, hex12+": Pulling fs layer")
	}
	for range 2 {
		want = append(want, hex12+": (Verifying Checksum|Download complete|Pull complete)")
		want = append(want, hex12+": (Verifying Checksum|Download complete|Pull complete)")
		want = append(want, hex12+": (Verifying Checksum|Download complete|Pull complete)")
	}
	want = append(want, "Digest: "+d, "Status: Downloaded newer image for "+regexp.QuoteMeta(dest), regexp.QuoteMeta(dest))
	regMatchLines(t, "pull", out, want...)
	got, err := b.store().Resolve(dest)
	if err != nil {
		t.Fatal(err)
	}
	if got.ManifestDigest != img.ManifestDigest || got.ID != img.ID {
		t.Errorf("pulled image = %s (ID %s), want %s (ID %s)", got.ManifestDigest, got.ID, img.ManifestDigest, img.ID)
	}
	rd, _ := b.store().RepoDigests(got.ManifestDigest)
	if len(rd) != 1 || rd[0] != reg.Host+"/team/app@"+img.ManifestDigest.String() {
		t.Errorf("RepoDigests = %v", rd)
	}
	regMatchLines(t, "pull again", b.ok("pull", dest),
		"1: Pulling from team/app", "Digest: "+d, "Status: Image is up to date for "+regexp.QuoteMeta(dest), regexp.QuoteMeta(dest))
	regMatchLines(t, "pull -q", b.ok("pull", "-q", reg.Host+"/other/app"), regexp.QuoteMeta(reg.Host+"/other/app:latest"))
	// The layers were in the store already: they are skipped.
	regMatchLines(t, "pull by digest", b.ok("pull", reg.Host+"/team/app@"+img.ManifestDigest.String()),
		d+": Pulling from team/app", "Digest: "+d,
		"Status: Image is up to date for "+regexp.QuoteMeta(reg.Host+"/team/app@"+img.ManifestDigest.String()),
		regexp.QuoteMeta(reg.Host+"/team/app@"+img.ManifestDigest.String()))

	c := newRegEnv(t)
	c.addImage("base:1", map[string]string{"etc/a": "one"})
	out = c.ok("pull", dest)
	if !strings.Contains(out, ": Already exists\n") {
		t.Errorf("pull with the base layer stored: no \"Already exists\" line:\n%s", out)
	}
}

func TestRegistryLogin(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Users: map[string]string{"alice": "s3cret"}})
	e := newRegEnv(t)
	e.addImage("private:1", map[string]string{"secret": "x"})
	dest := reg.Host + "/private/app:1"
	authfile := filepath.Join(e.home, "auth.json")

	e.fails("push access denied", "push", "private:1", dest)
	out, errs, code := e.run("wrong\n", "login", "--authfile", authfile, "-u", "alice", "--password-stdin", reg.Host)
	if code == 0 || strings.TrimSpace(errs) != "Error: login "+reg.Host+": unauthorized: incorrect username or password" {
		t.Errorf("login with a wrong password: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, err := os.Stat(authfile); err == nil {
		t.Errorf("failed login wrote %s", authfile)
	}
	out, errs, code = e.run("s3cret\n", "login", "--authfile", authfile, "-u", "alice", "--password-stdin", reg.Host)
	if code != 0 || out != "Login Succeeded\n" {
		t.Fatalf("login: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if !strings.Contains(errs, "WARNING! Your credentials are stored unencrypted in '"+authfile+"'.\n") {
		t.Errorf("login stderr = %q, want docker's unencrypted-password warning", errs)
	}
	var cf struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, _ := os.ReadFile(authfile)
	if err := json.Unmarshal(b, &cf); err != nil || cf.Auths[reg.Host].Auth == "" {
		t.Errorf("auth file = %s, want auths[%q].auth", b, reg.Host)
	}
	e.ok("push", "--authfile", authfile, "private:1", dest)

	// Pulls read the same file through REGISTRY_AUTH_FILE; without it they are refused.
	p := newRegEnv(t)
	p.fails("pull access denied for "+reg.Host+"/private/app", "pull", dest)
	p.extra = []string{"REGISTRY_AUTH_FILE=" + authfile}
	p.ok("pull", dest)

	// -p works too, with docker's warning; the default file is $DOCKER_CONFIG/config.json.
	out, errs, code = e.run("", "login", "-u", "alice", "-p", "s3cret", reg.Host)
	if code != 0 || !strings.HasPrefix(errs, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n") {
		t.Errorf("login -p: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(e.home, ".docker", "config.json")); err != nil {
		t.Errorf("login without --authfile: %v", err)
	}
	// Saved credentials are tried first, as docker's (it prompted, and with no
	// terminal failed on "username required").
	out, errs, code = e.run("", "login", "--authfile", authfile, reg.Host)
	if code != 0 || out != "Authenticating with existing credentials... [Username: alice]\nLogin Succeeded\n" {
		t.Errorf("login with saved credentials: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// Prompts read the username and password from stdin.
	fresh := filepath.Join(t.TempDir(), "fresh.json")
	out, errs, code = e.run("alice\ns3cret\n", "login", "--authfile", fresh, reg.Host)
	if code != 0 || out != "Username: Password: \nLogin Succeeded\n" {
		t.Errorf("login with prompts: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if out := e.ok("logout", "--authfile", authfile, reg.Host); out != "Removing login credentials for "+reg.Host+"\n" {
		t.Errorf("logout = %q", out)
	}
	if out := e.ok("logout", "--authfile", authfile, reg.Host); out != "Not logged in to "+reg.Host+"\n" {
		t.Errorf("second logout = %q", out)
	}
}

func TestRegistryTLS(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{TLS: true, NonLoopback: true})
	e := newRegEnv(t)
	img := e.addImage("tls:1", map[string]string{"f": "tls"})
	dest := reg.Host + "/tls/app:1"
	e.fails("certificate", "push", "tls:1", dest)
	e.ok("push", "--cert-dir", reg.CertDir, "tls:1", dest)
	p := newRegEnv(t)
	p.fails("certificate", "pull", dest)
	p.ok("pull", "--tls-verify=false", dest)
	if got, err := p.store().Resolve(dest); err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Errorf("pulled over TLS: %v, %v", got, err)
	}
}

func TestRegistryPlatform(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, idxDigest, want := regPushIndex(t, reg)
	e := newRegEnv(t)
	out := e.ok("pull", "--platform", "linux/arm64", ref)
	if !strings.Contains(out, "Digest: "+idxDigest.String()+"\n") {
		t.Errorf("pull of an index: want the index digest %s in\n%s", idxDigest, out)
	}
	got, err := e.store().Resolve(ref)
	if err != nil || got.ManifestDigest.String() != want["arm64"] || got.Config.Architecture != "arm64" {
		t.Errorf("pull --platform linux/arm64 = %v, %v; want %s", got, err, want["arm64"])
	}
	e.fails("no matching manifest for linux/s390x in the manifest list entries", "pull", "--platform", "linux/s390x", ref)
}

func TestRegistryMirrors(t *testing.T) {
	mirror := registrytest.Start(t, registrytest.Options{})
	e := newRegEnv(t)
	img := e.addImage("hub:1", map[string]string{"m": "mirror"})
	e.ok("push", "hub:1", mirror.Host+"/library/busybox:latest")
	down := fmt.Sprintf("http://127.0.0.1:%d", registrytest.FreePort(t))

	p := newRegEnv(t)
	cfg, _ := json.Marshal(registry.Config{Mirrors: []string{down, "http://" + mirror.Host}})
	os.WriteFile(p.config, cfg, 0o644)
	out := p.ok("pull", "--config", p.config, "busybox")
	regMatchLines(t, "pull through a mirror", out,
		"Using default tag: latest", "latest: Pulling from library/busybox",
		"[0-9a-f]{12}: Pulling fs layer",
		"[0-9a-f]{12}: Verifying Checksum", "[0-9a-f]{12}: Download complete", "[0-9a-f]{12}: Pull complete",
		"Digest: "+img.ManifestDigest.String(), "Status: Downloaded newer image for busybox:latest",
		regexp.QuoteMeta("docker.io/library/busybox:latest"))
	if got, err := p.store().Resolve("busybox"); err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Errorf("Resolve(busybox) = %v, %v", got, err)
	}
	// Only a dead mirror: the pull falls back to the (local, also dead) origin and says so once.
	cfg, _ = json.Marshal(registry.Config{Mirrors: []string{down}})
	os.WriteFile(p.config, cfg, 0o644)
	p.fails("is unreachable", "pull", "--config", p.config, "busybox:other")
}

func TestRegistryErrors(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	e := newRegEnv(t)
	img := e.addImage("err:1", map[string]string{"e": strings.Repeat("corrupt me ", 100)})
	e.ok("push", "err:1", reg.Host+"/err/app:1")
	layer := img.Manifest.Layers[0]
	if err := os.WriteFile(reg.BlobPath(layer.Digest.String()), bytes.Repeat([]byte{'x'}, int(layer.Size)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newRegEnv(t)
	p.fails("is unreachable", "pull", fmt.Sprintf("127.0.0.1:%d/app:1", registrytest.FreePort(t)))
	p.fails("manifest for "+reg.Host+"/nope:1 not found: manifest unknown", "pull", reg.Host+"/nope:1")
	p.fails("not found", "pull", reg.Host+"/err/app@sha256:"+strings.Repeat("0", 64))
	p.fails("layer "+layer.Digest.String()+": content does not match digest", "pull", reg.Host+"/err/app:1")
	p.fails("invalid reference format", "pull", "UPPER/case")
	p.fails("does not exist locally", "push", "missing:1", reg.Host+"/x:1")
	if imgs, err := p.store().Images(); err != nil || len(imgs) != 0 {
		t.Errorf("failed pulls left images: %v, %v", imgs, err)
	}
}

func TestRegistryInterruptedPull(t *testing.T) {
	img, err := random.Image(1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	stall := registrytest.StartStalling(t, "slow/app", "1", img)
	e := newRegEnv(t)
	cmd := exec.Command(regBinary(t), "--root", e.root, "pull", stall.Host+"/slow/app:1")
	cmd.Env = append(os.Environ(), "HOME="+e.home, registry.HubOriginEnv+"="+e.hub)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	select {
	case <-stall.Started:
	case <-time.After(20 * time.Second):
		t.Fatal("the pull never started a layer download")
	}
	tmp := filepath.Join(e.root, "store", ".layerfs", "tmp")
	// A blob downloads into an unnamed temp file (O_TMPFILE) in tmp: the
	// pull holds an fd of it, named "tmp/#N (deleted)"; or, where O_TMPFILE
	// is refused, a named one.
	writing := func() bool {
		if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
			return true
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", cmd.Process.Pid, fd.Name())); err == nil && strings.HasPrefix(l, tmp+"/") {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for !writing() {
		if time.Now().After(deadline) {
			t.Fatalf("no temp file in %s while a blob downloads", tmp)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed = true

	// Nothing visible: no image, no layer blob; the next command works.
	st := e.store()
	if imgs, err := st.Images(); err != nil || len(imgs) != 0 {
		t.Errorf("after kill -9: images = %v, %v; want none", imgs, err)
	}
	m, _ := img.Manifest()
	for _, l := range m.Layers {
		if st.Has(digest.Digest(l.Digest.String())) {
			t.Errorf("after kill -9: layer %s visible", l.Digest)
		}
	}
	// The next command works, and gc reclaims the partial download.
	if out := e.ok("images", "-q"); out != "" {
		t.Errorf("images -q after kill -9 = %q, want nothing", out)
	}
	e.ok("gc")
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("temp files left after gc: %d", len(ents))
	}
	// The same image from a registry that completes: the pull works.
	reg := registrytest.Start(t, registrytest.Options{})
	ref, _ := name.ParseReference(reg.Host + "/slow/app:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	e.ok("pull", "-q", reg.Host+"/slow/app:1")
}

// TestBuildPullsBase: build pulls a base image the store lacks (and with --pull
// one it has), as docker build does; its docker flags (--progress, --label,
// --iidfile) work, and the ones it cannot honour fail naming the flag.
func TestBuildPullsBase(t *testing.T) {
	reg, dest := pushedApp(t)

	b := newRegEnv(t)
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+dest+"\nCOPY f /f\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "f"), []byte("x\n"), 0o644)
	iid := filepath.Join(t.TempDir(), "iid")
	out := b.ok("build", "--progress=plain", "--label", "k=v", "--iidfile", iid, "--rm", "--platform", "linux/"+runtime.GOARCH, "-t", "out:1", ctx)
	if !strings.Contains(out, "1: Pulling from team/app") || !strings.Contains(out, "Successfully tagged out:1") {
		t.Errorf("build output:\n%s", out)
	}
	img, err := b.store().Resolve("out:1")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(iid); string(got) != img.ID.String() {
		t.Errorf("--iidfile wrote %q, want %s", got, img.ID)
	}
	if img.Config.Config.Labels["k"] != "v" {
		t.Errorf("labels = %v", img.Config.Config.Labels)
	}
	if _, err := b.store().Resolve(dest); err != nil {
		t.Errorf("the base was not pulled into the store: %v", err)
	}
	if out := b.ok("build", "--pull", "-t", "out:1", ctx); !strings.Contains(out, "1: Pulling from team/app") {
		t.Errorf("build --pull did not pull:\n%s", out)
	}
	b.fails("--platform linux/s390x: only linux/", "build", "--platform", "linux/s390x", ctx)
	b.fails(`invalid argument "nohost" for "--add-host"`, "build", "--add-host", "nohost", ctx)
	b.fails(`invalid argument "fancy" for "--progress"`, "build", "--progress", "fancy", ctx)
	b.fails(`invalid argument "=x" for "--label" flag: no key`, "build", "--label", "=x", ctx)
	b.fails("--build-context x: only a local dir or docker-image://REF", "build", "--build-context", "x=https://example.com/r.git", ctx)
	b.fails("--build-context x: /nonexistent is not a directory", "build", "--build-context", "x=/nonexistent", ctx)
	// A named context that is an image is pulled like a base.
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM base\nCOPY --from=other /etc/a /a\n"), 0o644)
	b.ok("build", "--build-context", "base=docker-image://"+dest, "--build-context", "other=docker-image://"+dest, "-t", "named:1", ctx)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+reg.Host+"/team/nosuch:1\n"), 0o644)
	b.fails("pull "+reg.Host+"/team/nosuch:1", "build", "--iidfile", iid, ctx)
	if _, err := os.Stat(iid); err == nil {
		t.Error("a failed build left the last build's --iidfile")
	}
}

// TestRunPullsMissing: run pulls an image the store lacks, as docker run does,
// its progress on stderr; --pull never does not.
func TestRunPullsMissing(t *testing.T) {
	_, dest := pushedApp(t)

	b := newRegEnv(t)
	_, errs, code := b.run("", "run", "--rm", "--pull", "never", dest, "/nosuch")
	if code != 125 || !strings.Contains(errs, "No such image") {
		t.Errorf("run --pull never: exit %d, stderr %q", code, errs)
	}
	// The image has no command to run: 127, but only after it was pulled.
	_, errs, code = b.run("", "run", "--rm", dest, "/nosuch")
	if code != 127 || !strings.Contains(errs, "Unable to find image '"+dest+"' locally\n") || !strings.Contains(errs, "1: Pulling from team/app") {
		t.Errorf("run of a missing image: exit %d, stderr %q", code, errs)
	}
	if _, err := b.store().Resolve(dest); err != nil {
		t.Errorf("run did not pull %s: %v", dest, err)
	}
	if _, errs, _ = b.run("", "run", "--rm", dest, "/nosuch"); strings.Contains(errs, "Pulling") {
		t.Errorf("run pulled an image the store has: %q", errs)
	}

	// mount pulls too, as buildah from does.
	c := newRegEnv(t)
	dir := t.TempDir()
	_, errs, code = c.run("", "mount", dest, dir)
	if code != 0 || !strings.Contains(errs, "Unable to find image '"+dest+"' locally\n") {
		t.Fatalf("mount of a missing image: exit %d, stderr %q", code, errs)
	}
	t.Cleanup(func() { c.run("", "umount", dir) })
	if b, err := os.ReadFile(filepath.Join(dir, "etc/a")); err != nil || string(b) != "one" {
		t.Errorf("the pulled image's file through the mount: %q, %v", b, err)
	}
	c.ok("umount", dir)
}

// pushedApp starts a registry holding team/app:1 (one layer: etc/a "one"),
// pushed from a store of its own, and returns it and that reference.
func pushedApp(t *testing.T) (*registrytest.Server, string) {
	t.Helper()
	reg := registrytest.Start(t, registrytest.Options{})
	a := newRegEnv(t)
	a.addImage("app:1", map[string]string{"etc/a": "one"})
	dest := reg.Host + "/team/app:1"
	a.ok("push", "app:1", dest)
	return reg, dest
}

// TestBuildOutputs: buildx's -o (the image's files in a dir or a tar, on
// stdout too), --push of each tag, --ulimit and --shm-size for RUN, and the CI
// flags that mean nothing here accepted with a warning.
func TestBuildOutputs(t *testing.T) {
	reg, dest := pushedApp(t)
	b := newRegEnv(t)
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+dest+"\nCOPY f /out/f\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "f"), []byte("x\n"), 0o644)
	dir := filepath.Join(t.TempDir(), "out")
	tarFile := filepath.Join(t.TempDir(), "out.tar")
	pushed := reg.Host + "/team/built:2"
	meta := filepath.Join(t.TempDir(), "meta.json")
	out, errOut, code := b.run("", "build", "-o", dir, "-o", "type=tar,dest="+tarFile, "--push", "-t", pushed,
		"--cache-from", "type=registry,ref=x", "--provenance=false", "--metadata-file", meta, ctx)
	if code != 0 {
		t.Fatalf("build: exit %d: %s %s", code, out, errOut)
	}
	var md map[string]any
	if raw, err := os.ReadFile(meta); err != nil || json.Unmarshal(raw, &md) != nil {
		t.Errorf("--metadata-file: %v", err)
	} else if img, err := b.store().Resolve(pushed); err != nil || md["containerimage.digest"] != img.ManifestDigest.String() || md["image.name"] != pushed {
		t.Errorf("--metadata-file holds %v (image %v)", md, err)
	}
	if !strings.Contains(errOut, "WARNING: --cache-from is ignored") || !strings.Contains(errOut, "WARNING: --provenance is ignored") {
		t.Errorf("no warnings for the ignored flags: %q", errOut)
	}
	for _, f := range []struct{ path, want string }{{"out/f", "x\n"}, {"etc/a", "one"}} {
		if b, err := os.ReadFile(filepath.Join(dir, f.path)); err != nil || string(b) != f.want {
			t.Errorf("-o dir: %s = %q, %v", f.path, b, err)
		}
	}
	names := map[string]bool{}
	for _, e := range readTarFile(t, tarFile) {
		names[strings.TrimSuffix(e.hdr.Name, "/")] = true
	}
	if !names["out/f"] || !names["etc/a"] {
		t.Errorf("-o type=tar: entries %v", names)
	}
	if !strings.Contains(out, "The push refers to repository ["+reg.Host+"/team/built]") || !strings.Contains(out, "\n2: digest: sha256:") {
		t.Errorf("--push output: %q", out)
	}
	c := newRegEnv(t)
	c.ok("pull", pushed)

	// -o -: the tar is stdout, the build's lines go to stderr.
	out, errOut, code = b.run("", "build", "-o", "-", ctx)
	if code != 0 || !strings.Contains(errOut, "Step 2/2") {
		t.Fatalf("build -o -: exit %d, stderr %q", code, errOut)
	}
	tr := tar.NewReader(strings.NewReader(out))
	found := false
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		found = found || h.Name == "out/f"
	}
	if !found {
		t.Errorf("build -o - wrote no tar with out/f to stdout (%d bytes)", len(out))
	}
	// --push with -q prints the ID alone; with -o - its lines go to stderr,
	// not after the archive (both went to stdout).
	out, errOut, code = b.run("", "build", "-q", "--push", "-t", reg.Host+"/team/built:3", ctx)
	if code != 0 || !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(out) {
		t.Errorf("build -q --push: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = b.run("", "build", "-o", "-", "--push", "-t", reg.Host+"/team/built:4", ctx)
	if code != 0 || strings.Contains(out, "The push refers") || !strings.Contains(errOut, "The push refers to repository ["+reg.Host+"/team/built]") {
		t.Errorf("build -o - --push: exit %d, push lines on stdout %v, stderr %q", code, strings.Contains(out, "The push refers"), errOut)
	}

	b.ok("import", "-q", runnerTar(t), "runner:1")
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM runner:1\nRUN ulimit -n > /n; df -k /dev/shm | tail -1 > /shm\n"), 0o644)
	limited := filepath.Join(t.TempDir(), "limited")
	b.ok("build", "--ulimit", "nofile=123:456", "--shm-size", "2m", "-o", limited, ctx)
	if n, _ := os.ReadFile(filepath.Join(limited, "n")); string(n) != "123\n" {
		t.Errorf("RUN under --ulimit nofile=123: ulimit -n = %q", n)
	}
	if shm, _ := os.ReadFile(filepath.Join(limited, "shm")); !strings.Contains(string(shm), " 2048 ") {
		t.Errorf("RUN under --shm-size 2m: df /dev/shm = %q", shm)
	}
	b.fails("--push: the build has no tag", "build", "--push", ctx)
	b.fails(`invalid --output "type=weird"`, "build", "-o", "type=weird", ctx)
	b.fails(`invalid --ulimit "bogus=1"`, "build", "--ulimit", "bogus=1", ctx)
}

// TestBuildOutputImageArchivesAndNames: -o type=docker,dest= writes a
// docker-archive of the image (it exited 0 and wrote nothing), type=oci,dest=
// an OCI archive, name= of the image outputs tags the image as -t does (it was
// dropped), and type=registry,name= pushes to that name (it wanted a -t).
func TestBuildOutputImageArchivesAndNames(t *testing.T) {
	reg, dest := pushedApp(t)
	b := newRegEnv(t)
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+dest+"\nCOPY f /out/f\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "f"), []byte("x\n"), 0o644)
	dk := filepath.Join(t.TempDir(), "dk.tar")
	oci := filepath.Join(t.TempDir(), "oci.tar")
	b.ok("build", "-q", "-t", "t:1", "-o", `type=docker,"name=n1:1,n2:2",dest=`+dk, "-o", "type=oci,dest="+oci, ctx)
	var manifest []struct{ RepoTags []string }
	for _, e := range readTarFile(t, dk) {
		if e.hdr.Name == "manifest.json" {
			if err := json.Unmarshal(e.body, &manifest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(manifest) != 1 || strings.Join(manifest[0].RepoTags, " ") != "n1:1 n2:2 t:1" {
		t.Errorf("type=docker,dest=: manifest.json = %+v, want one image tagged n1:1 n2:2 t:1", manifest)
	}
	hasIndex := false
	for _, e := range readTarFile(t, oci) {
		hasIndex = hasIndex || e.hdr.Name == "index.json"
	}
	if !hasIndex {
		t.Errorf("type=oci,dest=: no index.json in %s", oci)
	}
	built, err := b.store().Resolve("t:1")
	if err != nil {
		t.Fatal(err)
	}
	c := newRegEnv(t)
	c.ok("load", "-i", dk)
	if img, err := c.store().Resolve("n2:2"); err != nil || img.ID != built.ID {
		t.Errorf("load of the type=docker archive: n2:2 = %v, %v, want image %s", img, err, built.ID)
	}

	b.ok("build", "-q", "-o", "type=image,name=named:1", ctx)
	if _, err := b.store().Resolve("named:1"); err != nil {
		t.Errorf("type=image,name=named:1 did not tag: %v", err)
	}
	pushed := reg.Host + "/team/byname:3"
	out := b.ok("build", "-o", "type=registry,name="+pushed, ctx)
	if !strings.Contains(out, "The push refers to repository ["+reg.Host+"/team/byname]") {
		t.Errorf("type=registry,name= push output: %q", out)
	}
	newRegEnv(t).ok("pull", pushed)
	b.fails("name= is for type=image", "build", "-o", "type=tar,dest=x.tar,name=a:1", ctx)
	b.fails(`name "Bad:x"`, "build", "-o", "type=image,name=Bad:x", ctx)
}

// TestRegistryAllTags: push -a sends every tag the store has of a name, pull -a
// fetches every tag the repository has.
func TestRegistryAllTags(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	a := newRegEnv(t)
	a.addImage("app:1", map[string]string{"etc/a": "one"})
	a.addImage("app:2", map[string]string{"etc/a": "two"})
	repo := reg.Host + "/team/app"
	a.ok("tag", "app:1", repo+":1")
	a.ok("tag", "app:2", repo+":2")
	out := a.ok("push", "-a", repo)
	if strings.Count(out, ": digest: sha256:") != 2 {
		t.Errorf("push -a output:\n%s", out)
	}
	a.fails("tag can't be used with --all-tags", "push", "-a", repo+":1")
	a.fails("An image does not exist locally with the tag: "+reg.Host+"/team/none", "push", "-a", reg.Host+"/team/none")

	b := newRegEnv(t)
	b.ok("pull", "-a", repo)
	for _, tag := range []string{"1", "2"} {
		if _, err := b.store().Resolve(repo + ":" + tag); err != nil {
			t.Errorf("pull -a: %s:%s not in the store: %v", repo, tag, err)
		}
	}
	b.fails("tag can't be used with --all-tags", "pull", "-a", repo+":1")
}
