package build

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
	"github.com/layerfs/layerfs/internal/testenv"
)

func TestLookupUser(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n# comment\nnohome:x:7:7::\n"
	group := "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\naudio:x:29:other\n"
	tests := []struct {
		spec    string
		want    ExecUser
		wantErr bool
	}{
		{"", ExecUser{UID: 0, GID: 0, Groups: []uint32{0}, Home: "/root"}, false},
		{"root", ExecUser{UID: 0, GID: 0, Groups: []uint32{0}, Home: "/root"}, false},
		{"app", ExecUser{UID: 1000, GID: 1001, Groups: []uint32{1001, 10}, Home: "/home/app"}, false},
		{"1000", ExecUser{UID: 1000, GID: 1001, Groups: []uint32{1001, 10}, Home: "/home/app"}, false},
		{"app:audio", ExecUser{UID: 1000, GID: 29, Groups: []uint32{29}, Home: "/home/app"}, false},
		{"app:55", ExecUser{UID: 1000, GID: 55, Groups: []uint32{55}, Home: "/home/app"}, false},
		{"4242", ExecUser{UID: 4242, GID: 0, Groups: []uint32{0}, Home: "/"}, false},
		{"4242:4343", ExecUser{UID: 4242, GID: 4343, Groups: []uint32{4343}, Home: "/"}, false},
		{"nohome", ExecUser{UID: 7, GID: 7, Groups: []uint32{7}, Home: "/"}, false},
		{"ghost", ExecUser{}, true},
		{"app:ghosts", ExecUser{}, true},
	}
	for _, tt := range tests {
		got, err := LookupUser(tt.spec, strings.NewReader(passwd), strings.NewReader(group))
		if (err != nil) != tt.wantErr {
			t.Errorf("LookupUser(%q) error = %v, want error %v", tt.spec, err, tt.wantErr)
			continue
		}
		if tt.wantErr {
			if !errors.Is(err, ErrNoSuchUser) {
				t.Errorf("LookupUser(%q) = %v, want ErrNoSuchUser", tt.spec, err)
			}
			continue
		}
		if got.UID != tt.want.UID || got.GID != tt.want.GID || got.Home != tt.want.Home || !equalIDs(got.Groups, tt.want.Groups) {
			t.Errorf("LookupUser(%q) = %+v, want %+v", tt.spec, got, tt.want)
		}
	}
	if u, err := LookupUser("0", nil, nil); err != nil || u.UID != 0 || u.Home != "/" {
		t.Errorf("LookupUser without files = %+v, %v", u, err)
	}
}

func equalIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// testStore makes a store under root holding the busybox rootfs (plus extra,
// applied to the rootfs first) as image "base".
func testStore(t *testing.T, extra func(rootfs string)) (string, *blobstore.Store) {
	t.Helper()
	rootfs := busyboxRoot(t)
	if extra != nil {
		extra(rootfs)
	}
	root := t.TempDir()
	s, err := blobstore.Open(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rc := cow.Diff(ctx, rootfs, cow.DiffOptions{})
	desc, diffID, err := s.AppendLayer(ctx, rc, blobstore.Gzip)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Cmd: []string{"sh"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	img, err := s.WriteImage(ctx, cfg, []ocispec.Descriptor{desc})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(ctx, img, "base"); err != nil {
		t.Fatal(err)
	}
	return root, s
}

func buildIn(t *testing.T, root string, s *blobstore.Store, ctxDir, dockerfile string) (*Result, string, error) {
	t.Helper()
	return buildWith(t, root, s, ctxDir, dockerfile, nil)
}

// TestBuildCopySemantics checks COPY's and ADD's docker rules through RUN steps
// that look at the result inside the container.
func TestBuildCopySemantics(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	host := t.TempDir() // an image symlink points here: nothing may be written to it
	root, s := testStore(t, func(rootfs string) {
		os.Symlink(host, filepath.Join(rootfs, "escape"))
		os.Symlink("/etc", filepath.Join(rootfs, "etclink"))
	})
	ctxDir := t.TempDir()
	for name, data := range map[string]string{
		"a.txt": "a\n", "b.txt": "b\n", "dir/one": "1\n", "dir/sub/two": "2\n", "skip.log": "x\n",
	} {
		p := filepath.Join(ctxDir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(data), 0o640)
	}
	os.Symlink("one", filepath.Join(ctxDir, "dir/link"))
	os.WriteFile(filepath.Join(ctxDir, ".dockerignore"), []byte("*.log\n"), 0o644)

	df := `FROM base
COPY a.txt /x/renamed
COPY *.txt /globbed/
COPY dir /copied
COPY dir/ /copied2/
COPY a.txt /escape/a.txt
COPY b.txt /etclink/b.txt
COPY --chmod=600 --chown=app:extra a.txt /owned
WORKDIR /w
COPY a.txt rel
COPY . /all/
RUN set -e; test "$(cat /x/renamed)" = a; ls /globbed | tr '\n' ' ' | grep -qx 'a.txt b.txt '; \
    test -f /copied/one -a -f /copied/sub/two -a -L /copied/link -a ! -e /copied/dir; test -f /copied2/sub/two; \
    test -f ` + host + `/a.txt; test -f /etc/b.txt; \
    test "$(stat -c '%U:%G %a' /owned)" = "app:extra 600"; test "$(stat -c %a /x/renamed)" = 640; \
    test -f /w/rel; test ! -e /all/skip.log -a -f /all/dir/sub/two; echo checks-passed
`
	res, out, err := buildIn(t, root, s, ctxDir, df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "checks-passed") {
		t.Errorf("checks did not pass:\n%s", out)
	}
	if ents, _ := os.ReadDir(host); len(ents) != 0 {
		t.Errorf("COPY through an image symlink wrote on the host: %v", ents)
	}
	if res.Steps != 12 {
		t.Errorf("Steps = %d, want 12", res.Steps)
	}

	// Unchanged: all cached, same image. A changed source: its step and later ones run.
	res2, out2, err := buildIn(t, root, s, ctxDir, df)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Image.ID != res.Image.ID || res2.Cached != 11 {
		t.Errorf("rebuild = %s (%d cached), want %s (11 cached)\n%s", res2.Image.ID, res2.Cached, res.Image.ID, out2)
	}
	os.WriteFile(filepath.Join(ctxDir, "dir/sub/two"), []byte("2!\n"), 0o640)
	res3, out3, err := buildIn(t, root, s, ctxDir, df)
	if err != nil {
		t.Fatal(err)
	}
	if res3.Cached != 2 {
		t.Errorf("after a change, %d steps cached, want 2 (the COPYs before COPY dir)\n%s", res3.Cached, out3)
	}
	// The ignored file does not count.
	os.WriteFile(filepath.Join(ctxDir, "skip.log"), []byte("changed\n"), 0o640)
	if res4, _, err := buildIn(t, root, s, ctxDir, df); err != nil || res4.Image.ID != res3.Image.ID {
		t.Errorf("a change to an ignored file rebuilt: %v", err)
	}
}

func TestBuildRunConfigAndArgs(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, func(rootfs string) { os.Chown(filepath.Join(rootfs, "home/app"), 1000, 1000) })
	df := `ARG BASE=base
FROM $BASE
ARG WHO=nobody
ENV GREETING=hi
SHELL ["/bin/sh", "-e", "-c"]
USER app
WORKDIR /home/app
RUN echo "$GREETING $WHO $(id -un) $PWD" > out.txt
USER root
RUN test "$(cat /home/app/out.txt)" = "hi nobody app /home/app" && test "$(stat -c %U /home/app/out.txt)" = app
ENTRYPOINT ["/bin/echo"]
CMD ["x"]
STOPSIGNAL SIGTERM
LABEL a=b
`
	res, out, err := buildIn(t, root, s, t.TempDir(), df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	c := res.Image.Config.Config
	if strings.Join(c.Entrypoint, " ") != "/bin/echo" || strings.Join(c.Cmd, " ") != "x" || c.User != "root" || c.StopSignal != "SIGTERM" || c.Labels["a"] != "b" {
		t.Errorf("config = %+v", c)
	}
	var runs int
	for _, h := range res.Image.Config.History {
		if !h.EmptyLayer {
			runs++
		}
	}
	if runs != 1 || len(res.Image.Manifest.Layers) != 2 {
		t.Errorf("%d non-empty history entries, %d layers; want 1 and 2 (base + the first RUN; the second changes nothing)", runs, len(res.Image.Manifest.Layers))
	}
}

func TestBuildAddURLAndOnbuild(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
		fmt.Fprintf(w, "served %s\n", r.URL.Path)
	}))
	defer srv.Close()
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	if _, out, err := buildIn(t, root, s, ctxDir, "FROM base\nONBUILD RUN echo triggered > /trigger\n"); err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if err := s.Tag(context.Background(), mustResolve(t, s, "out:latest"), "parent:1"); err != nil {
		t.Fatal(err)
	}
	df := "FROM parent:1\nADD " + srv.URL + "/files/page.html /srv/\nADD " + srv.URL + "/x /named.txt\n" +
		"RUN test \"$(cat /srv/page.html)\" = 'served /files/page.html' && test \"$(stat -c %a /named.txt)\" = 600 && " +
		"test \"$(date -r /named.txt -u +%Y)\" = 2015 && test \"$(cat /trigger)\" = triggered && echo url-ok\n"
	res, out, err := buildIn(t, root, s, ctxDir, df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "# Executing 1 build trigger\n") || !strings.Contains(out, "url-ok") {
		t.Errorf("build output:\n%s", out)
	}
	if strings.Contains(string(res.Image.RawConfig), "OnBuild\":[") {
		t.Errorf("the child inherited ONBUILD triggers: %s", res.Image.RawConfig)
	}
}

func mustResolve(t *testing.T, s *blobstore.Store, ref string) *blobstore.Image {
	t.Helper()
	img, err := s.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestBuildAddArchives(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	src := filepath.Join(t.TempDir(), "pkg")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "f"), []byte("content\n"), 0o640)
	var adds, dirs []string
	for _, f := range []struct{ flag, name, dir string }{{"", "a.tar", "plain"}, {"z", "a.tar.gz", "gz"}, {"j", "a.tar.bz2", "bz2"}, {"J", "a.tar.xz", "xz"}} {
		if out, err := exec.Command("tar", "-c"+f.flag+"f", filepath.Join(ctxDir, f.name), "-C", src, ".").CombinedOutput(); err != nil {
			t.Logf("no %s test: tar -%s: %v: %s", f.name, f.flag, err, out)
			continue
		}
		adds = append(adds, "ADD "+f.name+" /"+f.dir+"/\n")
		dirs = append(dirs, f.dir)
	}
	os.WriteFile(filepath.Join(ctxDir, "plain.gz.txt"), []byte("not an archive\n"), 0o644)
	df := "FROM base\n" + strings.Join(adds, "") + "ADD plain.gz.txt /\n" +
		"RUN for d in " + strings.Join(dirs, " ") + "; do test \"$(cat /$d/sub/f)\" = content; test \"$(stat -c %a /$d/sub/f)\" = 640; done && test -f /plain.gz.txt && echo archives-ok\n"
	if _, out, err := buildIn(t, root, s, ctxDir, df); err != nil || !strings.Contains(out, "archives-ok") {
		t.Errorf("Build: %v\n%s", err, out)
	}
}

func TestBuildMultiStage(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "src.txt"), []byte("source\n"), 0o644)
	df := `ARG BASE=base
FROM $BASE AS builder
COPY src.txt /work/
RUN mkdir -p /out/sub && tr a-z A-Z < /work/src.txt > /out/sub/built.txt && ln -s /etc /out/etclink && ln -s sub/built.txt /out/rel

FROM builder AS second
RUN echo second > /second.txt

FROM scratch
COPY --from=builder /out/ /app/
COPY --from=1 /second.txt /
COPY --from=base /bin/busybox /bin/
COPY --from=builder /out/rel /followed.txt
CMD ["/bin/busybox", "cat", "/app/sub/built.txt"]
`
	res, out, err := buildIn(t, root, s, ctxDir, df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Step 12/12 : CMD") {
		t.Errorf("step numbering:\n%s", out)
	}
	// The final stage has exactly what was copied into it.
	b := &builder{o: Options{Store: s}, layers: &cow.LayerCache{Dir: filepath.Join(root, "layers")}}
	lowers, err := b.layerDirs(context.Background(), res.Image.Config.RootFS.DiffIDs, res.Image.Manifest.Layers)
	if err != nil {
		t.Fatal(err)
	}
	if len(lowers) != 4 {
		t.Fatalf("%d layers, want 4 (one per COPY)", len(lowers))
	}
	var names []string
	filepathWalkRel(t, lowers, func(rel string) { names = append(names, rel) })
	want := "app app/etclink app/rel app/sub app/sub/built.txt bin bin/busybox followed.txt second.txt"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("final image = %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(lowers[0], "followed.txt")); string(b) != "SOURCE\n" {
		t.Errorf("followed.txt = %q", b)
	}
	code, out2, errs := runIn(t, ProcessSpec{Rootfs: mergeForTest(t, lowers), Args: []string{"/bin/busybox", "cat", "/app/sub/built.txt"}})
	if code != 0 || out2 != "SOURCE\n" {
		t.Errorf("run the final image: %d %q %q", code, out2, errs)
	}
}

// filepathWalkRel calls fn with every path (relative, sorted, deduplicated) in the dirs.
func filepathWalkRel(t *testing.T, dirs []string, fn func(rel string)) {
	t.Helper()
	seen := map[string]bool{}
	for _, d := range dirs {
		filepath.Walk(d, func(p string, _ os.FileInfo, err error) error {
			if rel, _ := filepath.Rel(d, p); err == nil && rel != "." {
				seen[rel] = true
			}
			return nil
		})
	}
	var all []string
	for k := range seen {
		all = append(all, k)
	}
	sort.Strings(all)
	for _, k := range all {
		fn(k)
	}
}

// mergeForTest mounts the layers with a scratch upper dir (a rootfs to run in).
func mergeForTest(t *testing.T, lowers []string) string {
	t.Helper()
	mnt, upper, work := t.TempDir(), t.TempDir(), t.TempDir()
	m, err := fs.Mount(mnt, fs.Options{Lowers: lowers, Upper: upper, Work: work})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unmount() })
	return mnt
}

// TestWorkdirOwner: the owner of the dirs WORKDIR makes after USER is
// buildkit's readUser's: a numeric uid alone gives gid = uid (it gave the
// passwd gid, or 0), a name its passwd entry, an unknown name root.
func TestWorkdirOwner(t *testing.T) {
	rootfs := t.TempDir()
	os.Mkdir(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:\nstaff:x:50:\n"), 0o644)
	tests := []struct {
		spec     string
		uid, gid int
	}{
		{"1000", 1000, 1000},
		{"1001", 1001, 1001},
		{"app", 1001, 1002},
		{"app:staff", 1001, 50},
		{"app:77", 1001, 77},
		{"1000:staff", 1000, 50},
		{"1000:nosuch", 1000, 1000},
		{"nosuch", 0, 0},
		{"nosuch:7", 0, 7},
		{"root", 0, 0},
		{"app:root", 1001, 0},
	}
	for _, tt := range tests {
		uid, gid, err := workdirOwner(tt.spec, rootfs)
		if err != nil || uid != tt.uid || gid != tt.gid {
			t.Errorf("workdirOwner(%q) = %d, %d, %v, want %d, %d", tt.spec, uid, gid, err, tt.uid, tt.gid)
		}
	}
}

// TestParseErrorLine: every Dockerfile parse error names the line, the
// parser's own too (finding 6 of rev17-build), as the instruction-level ones
// did.
func TestParseErrorLine(t *testing.T) {
	for _, tc := range []struct{ df, want string }{
		{"FROM bb:1\nLABEL x\n", "dockerfile parse error on line 2: LABEL must have two arguments"},
		{"FROM bb:1\n\nRUN <<EOF\necho unterminated\n", "dockerfile parse error on line 3: "},
		{"FROM bb:1\nENV A=1 OLD style value\n", "dockerfile parse error on line 2: "},
		{"FROM bb:1\nFROBNICATE x\n", "dockerfile parse error on line 2: unknown instruction: FROBNICATE"},
	} {
		_, _, _, err := parseDockerfile([]byte(tc.df))
		if err == nil || !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), tc.want) || strings.Count(err.Error(), "parse error") != 1 {
			t.Errorf("parse %q = %v, want an ErrBuild with %q", tc.df, err, tc.want)
		}
	}
}
