package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/internal/testenv"
)

// buildWith is buildIn with secrets.
func buildWith(t *testing.T, root string, s *blobstore.Store, ctxDir, dockerfile string, secrets map[string][]byte) (*Result, string, error) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Build(context.Background(), Options{
		Store: s, LayersDir: filepath.Join(root, "layers"), StateDir: root,
		Context: ctxDir, Tags: []string{"out:latest"}, Out: &out, Secrets: secrets,
	})
	t.Cleanup(func() {
		if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), root) {
			t.Errorf("build left a mount under %s", root)
		}
	})
	return res, out.String(), err
}

// layerHolds reports whether any layer of the image has needle in its
// (uncompressed) tar.
func layerHolds(t *testing.T, s *blobstore.Store, img *blobstore.Image, needle string) bool {
	t.Helper()
	for _, d := range img.Manifest.Layers {
		rc, err := s.OpenLayer(d)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc) // OpenLayer gives the tar, uncompressed
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(needle)); i >= 0 {
			t.Logf("%s found in layer %s: ...%q...", needle, d.Digest, b[max(0, i-200):min(len(b), i+100)])
			return true
		}
	}
	return false
}

// TestBuildRunMountCache: a cache mount keeps its content across builds, is
// made with the mode and owner asked for, and neither it nor its mountpoint is
// in the image.
func TestBuildRunMountCache(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	for i, want := range []string{"1", "2"} {
		df := `FROM base
RUN --mount=type=cache,target=/var/cache/thing,uid=1000,mode=0750 \
    echo run` + want + ` >> /var/cache/thing/log && wc -l < /var/cache/thing/log > /count && \
    test "$(stat -c '%u %a' /var/cache/thing)" = "1000 750"
RUN test "$(cat /count)" = ` + want + ` && test ! -e /var/cache
RUN --mount=type=cache,id=other,target=cache test ! -e cache/log && touch cache/mine
RUN --mount=type=cache,target=/seeded,from=base,source=/etc \
    test -f /seeded/passwd && echo run` + want + ` >> /seeded/log && test "$(wc -l < /seeded/log)" = ` + want + `
`
		res, out, err := buildWith(t, root, s, ctxDir, df, nil)
		if err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, out)
		}
		if layerHolds(t, s, res.Image, "var/cache") || layerHolds(t, s, res.Image, "cache/mine") {
			t.Errorf("build %d: a cache mount or its mountpoint is in a layer", i)
		}
	}
}

// TestBuildRunMountBind: bind mounts of the context (read-only by default, rw
// writes to a throwaway copy, .dockerignore'd files unseen) and of a stage; the
// source's content is in the step's cache key.
func TestBuildRunMountBind(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	os.MkdirAll(filepath.Join(ctxDir, "src"), 0o755)
	os.WriteFile(filepath.Join(ctxDir, "src/a.txt"), []byte("one\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "src/hidden.txt"), []byte("zq-ignored\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "top.txt"), []byte("top\n"), 0o644)
	df := `FROM base AS s1
RUN echo from-stage > /hello
FROM base
RUN --mount=type=bind,source=src,target=/mnt/src \
    cat /mnt/src/a.txt > /got-a && ! touch /mnt/src/new 2>/dev/null
RUN --mount=type=bind,source=src,target=/mnt/src,rw \
    touch /mnt/src/new && test ! -e /mnt/src/hidden.txt && test ! -e /mnt/src/lock
RUN --mount=type=bind,source=top.txt,target=/etc/top.txt cp /etc/top.txt /got-top
RUN --mount=type=bind,from=s1,source=/hello,target=/h cat /h > /got-h
RUN --mount=target=/ctx ls -aR /ctx > /got-ls && ! grep hidden /got-ls && ! grep -qx lock /got-ls && grep -q a.txt /got-ls && \
    cat /ctx/src/* > /got-all
RUN test ! -e /mnt && test ! -e /h && test ! -e /etc/top.txt && test ! -e /ctx && \
    test "$(cat /got-a /got-top /got-h)" = "$(printf 'one\ntop\nfrom-stage')"
`
	os.WriteFile(filepath.Join(ctxDir, ".dockerignore"), []byte("src/hidden.txt\n"), 0o644)
	res, out, err := buildWith(t, root, s, ctxDir, df, nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(ctxDir, "src/new")); err == nil {
		t.Error("a rw bind mount's write reached the context")
	}
	if layerHolds(t, s, res.Image, "zq-ignored") {
		t.Error("a .dockerignore'd file was seen through a bind mount")
	}
	// The same build is all cached; a changed source reruns its steps.
	res2, out, err := buildWith(t, root, s, ctxDir, df, nil)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if res2.Image.ID != res.Image.ID {
		t.Errorf("unchanged rebuild gave %s, want %s", res2.Image.ID, res.Image.ID)
	}
	os.WriteFile(filepath.Join(ctxDir, "src/a.txt"), []byte("two\n"), 0o644)
	df2 := strings.Replace(df, "printf 'one", "printf 'two", 1)
	res3, out, err := buildWith(t, root, s, ctxDir, df2, nil)
	if err != nil {
		t.Fatalf("build after a source change: %v\n%s", err, out)
	}
	if res3.Image.ID == res.Image.ID {
		t.Error("a changed bind source did not change the image")
	}
}

// TestBuildRunMountTmpfsSecretNetwork: tmpfs mounts, secrets (file and
// variable, never in a layer), --network=none, and clear refusals.
func TestBuildRunMountTmpfsSecretNetwork(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	secrets := map[string][]byte{"tok": []byte("s3cr3t-value")}
	df := `FROM base
RUN --mount=type=tmpfs,target=/scratch/t,size=1m \
    grep -q ' /scratch/t tmpfs ' /proc/mounts && echo x > /scratch/t/f
RUN --mount=type=secret,id=tok \
    test "$(cat /run/secrets/tok)" = s3cr3t-value && test "$(stat -c '%a %u' /run/secrets/tok)" = "400 0" && \
    ! sh -c 'echo x > /run/secrets/tok' 2>/dev/null
RUN --mount=type=secret,id=tok,env=TOK,target=/s,mode=0444,uid=1000 \
    test "$TOK" = s3cr3t-value && test "$(stat -c '%a %u' /s)" = "444 1000"
RUN --mount=type=secret,id=absent true
RUN --network=none test "$(grep -c : /proc/net/dev)" = 1 && grep -q lo: /proc/net/dev && \
    test "$(cat /sys/class/net/lo/flags)" = 0x9
RUN test ! -e /scratch && test ! -e /run/secrets && test ! -e /s && test ! -e /run
`
	res, out, err := buildWith(t, root, s, ctxDir, df, secrets)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if layerHolds(t, s, res.Image, "s3cr3t-value") {
		t.Error("a secret is in a layer")
	}
	for _, tc := range []struct{ df, want string }{
		{"FROM base\nRUN --mount=type=secret,id=absent,required true\n", "secret absent: not provided"},
		{"FROM base\nRUN --mount=type=ssh true\n", "type=ssh is not supported"},
		{"FROM base\nRUN --device=/dev/kvm true\n", "RUN --device is not supported"},
		{"FROM base\nRUN --mount=type=bind,source=nope,target=/x true\n", "bind mount nope"},
		{"FROM base\nRUN --mount=type=cache,target=/x --mount=type=tmpfs,target=/x true\n", "/x is used twice"},
		{"FROM base\nRUN --mount=type=cache,target=/x,from=base,source=/bin/sh true\n", "source /bin/sh is not a directory in base"},
		{"FROM base\nRUN --mount=type=cache,target=/x,source=/etc true\n", "source= needs from="},
	} {
		_, out, err := buildWith(t, root, s, ctxDir, tc.df, secrets)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q\n%s", tc.df, err, tc.want, out)
		}
	}
}

// TestBuildPullHostsLabels: a missing base (and COPY --from image) is pulled
// through Options.Pull, --pull pulls present ones too (once each), --label sets
// labels, --add-host reaches RUN's /etc/hosts and --network=none every RUN.
func TestBuildPullHostsLabels(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	var pulls []string
	pull := func(ctx context.Context, ref string) error {
		pulls = append(pulls, ref)
		img, err := s.Resolve("base")
		if err != nil {
			return err
		}
		return s.Tag(ctx, img, ref) // "pulled": the base under the name asked for
	}
	df := `FROM remote/app:1
COPY --from=remote/other:2 /etc/passwd /p
RUN grep -q '1.2.3.4	gw.example' /etc/hosts && test "$(grep -c : /proc/net/dev)" = 1
`
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644)
	opts := Options{
		Store: s, LayersDir: filepath.Join(root, "layers"), StateDir: root, Context: ctxDir,
		Pull: pull, Labels: map[string]string{"org.example": "yes"}, AddHosts: []string{"gw.example:1.2.3.4"}, NoNetwork: true,
	}
	res, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pulls, " ") != "remote/app:1 remote/other:2" {
		t.Errorf("pulled %v, want the two missing images once each", pulls)
	}
	if res.Image.Config.Config.Labels["org.example"] != "yes" {
		t.Errorf("labels = %v", res.Image.Config.Config.Labels)
	}
	pulls = nil
	opts.PullAlways = true
	if _, err := Build(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if strings.Join(pulls, " ") != "remote/app:1 remote/other:2" {
		t.Errorf("with --pull pulled %v, want both, once each", pulls)
	}
	// The same build without --add-host and --network=none is no cache hit:
	// its RUN (which checks them) runs again, and fails.
	plain := opts
	plain.AddHosts, plain.NoNetwork, plain.PullAlways = nil, false, false
	if _, err := Build(context.Background(), plain); err == nil || !strings.Contains(err.Error(), "returned a non-zero code") {
		t.Errorf("build without --add-host/--network=none reused their RUN: %v", err)
	}
	opts.Pull = func(context.Context, string) error { return errors.New("registry down") }
	opts.PullAlways = false
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM remote/missing:3\n"), 0o644)
	if _, err := Build(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "FROM remote/missing:3: pull remote/missing:3: registry down") {
		t.Errorf("build from an image that cannot be pulled: %v", err)
	}
	// A stored image that lacks a blob is broken, not missing: no pull, and
	// the error says what is wrong.
	base, _ := s.Resolve("base")
	if err := os.Remove(filepath.Join(root, "store", "blobs", "sha256", base.Manifest.Config.Digest.Encoded())); err != nil {
		t.Fatal(err)
	}
	pulls = nil
	opts.Pull = pull
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM base\n"), 0o644)
	if _, err := Build(context.Background(), opts); err == nil || len(pulls) != 0 || !strings.Contains(err.Error(), "not found") {
		t.Errorf("build from a base missing its config blob: %v (pulled %v)", err, pulls)
	}
}

// TestBuildNamedContexts: --build-context NAME=DIR serves COPY --from and mount
// from= (with its own .dockerignore), NAME=docker-image://REF serves FROM too,
// and a named context wins over a stage of the same name, as in buildx.
func TestBuildNamedContexts(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir, extra := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(extra, "data.txt"), []byte("extra-data\n"), 0o644)
	os.WriteFile(filepath.Join(extra, "ignored.txt"), []byte("no\n"), 0o644)
	os.WriteFile(filepath.Join(extra, ".dockerignore"), []byte("ignored.txt\n"), 0o644)
	df := `FROM base AS s1
RUN echo stage > /stage
FROM img
COPY --from=extra data.txt /data.txt
RUN --mount=type=bind,from=extra,target=/x cat /x/data.txt > /via-mount && test ! -e /x/ignored.txt
RUN --mount=type=bind,from=s1,target=/s test ! -e /s/stage && test -f /s/etc/passwd
RUN test "$(cat /data.txt /via-mount)" = "$(printf 'extra-data\nextra-data')"
COPY --from=docker.io/library/img:latest /etc/passwd /p2
RUN --mount=type=cache,id=seeded,target=/c,from=extra cat /c/data.txt > /seed
`
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644)
	opts := Options{
		Store: s, LayersDir: filepath.Join(root, "layers"), StateDir: root, Context: ctxDir,
		NamedContexts: map[string]string{"extra": extra, "img": "docker-image://base", "s1": "docker-image://base"},
	}
	res, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// A changed dir context seeds a new cache (and reruns what read it).
	os.WriteFile(filepath.Join(extra, "data.txt"), []byte("changed\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(strings.ReplaceAll(df, "extra-data", "changed")+"RUN test \"$(cat /seed)\" = changed\n"), 0o644)
	if res2, err := Build(context.Background(), opts); err != nil || res2.Image.ID == res.Image.ID {
		t.Fatalf("build after the dir context changed: %v", err)
	}
	// A dir context as the base, as buildkit allows: its files (not the
	// ignored one) in one layer, root's.
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM extra\nCOPY --from=img /bin/ /bin/\n"+
		"RUN test \"$(cat /data.txt)\" = changed && test ! -e /ignored.txt && test \"$(stat -c %u /data.txt)\" = 0\n"), 0o644)
	res3, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatalf("FROM a dir context: %v", err)
	}
	if n := len(res3.Image.Manifest.Layers); n != 2 {
		t.Errorf("FROM a dir context + COPY: %d layers, want 2", n)
	}
}

// TestBuildRunMountEdges: mountpoints reached through the image's symlinks are
// not left in the layer; a read-only bind is read-only all the way down (a
// mount inside the context too); a RUN naming one locked cache twice does not
// wait on itself; a build waiting on another's locked cache stops when
// cancelled; target=/ is refused; a secret's default path is its id's base.
func TestBuildRunMountEdges(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, func(rootfs string) {
		os.Symlink("/real", filepath.Join(rootfs, "dangling"))
		os.Symlink("tmp", filepath.Join(rootfs, "tmplink"))
	})
	ctxDir := t.TempDir()
	sub := filepath.Join(ctxDir, "sub")
	os.Mkdir(sub, 0o755)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(sub, "g"), []byte("orig\n"), 0o644)
	df := `FROM base
RUN --mount=type=cache,target=/dangling/c --mount=type=tmpfs,target=/tmplink/t true
RUN test ! -e /real && test ! -e /tmp/t
RUN --mount=type=bind,target=/ctx sh -c '! echo pwned > /ctx/sub/g' 2>/dev/null
RUN --mount=type=cache,id=twice,target=/a,sharing=locked --mount=type=cache,id=twice,target=/b,sharing=locked \
    sh -c 'echo 1 > /a/f && test "$(cat /b/f)" = 1'
RUN --mount=type=secret,id=dir/tok test "$(cat /run/secrets/tok)" = v
`
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := Options{Store: s, LayersDir: filepath.Join(root, "layers"), StateDir: root, Context: ctxDir,
		Secrets: map[string][]byte{"dir/tok": []byte("v")}}
	if _, err := Build(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(sub, "g")); string(b) != "orig\n" {
		t.Errorf("a RUN wrote %q through a read-only bind into a mount inside the context", b)
	}

	// Another build holds cache "held" locked: a build waiting for it stops
	// when its context ends.
	sum := sha256.Sum256([]byte("held"))
	lock, err := lockCacheMount(context.Background(), filepath.Join(CacheMountsDir(root), hex.EncodeToString(sum[:16])), unix.LOCK_EX)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM base\nRUN --mount=type=cache,id=held,target=/h,sharing=locked true\n"), 0o644)
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	start := time.Now()
	if _, err := Build(short, opts); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("build waiting on a held cache: %v, want it to stop at its deadline", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the cancelled build took %v", d)
	}

	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM base\nRUN --mount=type=tmpfs,target=/ true\n"), 0o644)
	if _, err := Build(context.Background(), opts); err == nil || !strings.Contains(err.Error(), `invalid mount target "/"`) {
		t.Errorf("target=/: %v", err)
	}
}
