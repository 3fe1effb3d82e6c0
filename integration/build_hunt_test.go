package integration

// Build behaviours found to differ from docker's in a bug hunt (each test is the
// reproduction of one bug).

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// writeFiles writes name -> content under dir (parents made).
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBuildContextSymlinksStayInContext: a symlink in the build context is
// resolved inside the context, as docker does (the context is all a build may
// read), never to the host's file it names.
func TestBuildContextSymlinksStayInContext(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	host := t.TempDir()
	writeFiles(t, host, map[string]string{"secret.txt": "host secret\n"})
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"real.txt": "in context\n", "secret.txt": "context copy\n", "ignored/x": "ignored\n", ".dockerignore": "ignored\n", "sub/s": "s\n"})
	os.Symlink(filepath.Join(host, "secret.txt"), filepath.Join(ctx, "abslink"))    // -> <ctx>/<host>/secret.txt: missing
	os.Symlink(host, filepath.Join(ctx, "dirlink"))                                 // the same through a dir
	os.Symlink("../../../../../../.."+host+"/secret.txt", filepath.Join(ctx, "up")) // .. stops at the context root
	os.Symlink("/secret.txt", filepath.Join(ctx, "rooted"))                         // the context's own secret.txt
	os.Symlink("real.txt", filepath.Join(ctx, "rel"))
	os.Symlink("ignored/x", filepath.Join(ctx, "toignored"))
	os.Symlink("/sub", filepath.Join(ctx, "sublink"))

	for _, src := range []string{"abslink", "dirlink", "dirlink/secret.txt", "up", "toignored"} {
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nCOPY " + src + " /got\nRUN cat /got\n"})
		r := run(t, "build", "-t", "leak", ctx)
		if r.Code == 0 || strings.Contains(r.Stdout, "host secret") || strings.Contains(r.Stdout, "ignored\n") {
			t.Errorf("COPY %s: exit %d, want a failure (not found in the context)\n%s%s", src, r.Code, r.Stdout, r.Stderr)
		}
	}
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nCOPY rooted /a\nCOPY rel /b\nCOPY sublink /c/\n"})
	mustRun(t, "build", "-t", "ok", ctx)
	if got := mustRun(t, "run", "--rm", "ok", "sh", "-c", "cat /a /b; ls -A /c"); got != "context copy\nin context\ns\n" {
		t.Errorf("symlinks inside the context: got %q", got)
	}
}

// TestBuildDockerignoreExceptions: a `!` exception re-includes a file under an
// excluded dir, for COPY . and for COPY of the dir itself, as docker does.
func TestBuildDockerignoreExceptions(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"docs/README.md": "readme\n", "docs/x.md": "x\n", "docs/sub/y.md": "y\n",
		"a/b/z.log": "log\n", "a/keep": "keep\n", "top.log": "log\n",
		".dockerignore": "docs\n!docs/README.md\n**/*.log\n",
		"Dockerfile":    "FROM busybox\nCOPY . /ctx/\nCOPY docs /docs/\n",
	})
	mustRun(t, "build", "-t", "ign", ctx)
	got := mustRun(t, "run", "--rm", "ign", "sh", "-c", "cd /ctx && find . -type f | sort; echo --; cd /docs && find . | sort")
	want := "./.dockerignore\n./Dockerfile\n./a/keep\n./docs/README.md\n--\n.\n./README.md\n"
	if got != want {
		t.Errorf("files copied = %q, want %q", got, want)
	}
	// -f app.Dockerfile reads app.Dockerfile.dockerignore beside it first (buildkit).
	df := filepath.Join(t.TempDir(), "app.Dockerfile")
	writeFiles(t, filepath.Dir(df), map[string]string{"app.Dockerfile": "FROM busybox\nCOPY . /ctx/\n", "app.Dockerfile.dockerignore": "a\ndocs/x.md\n*.log\n"})
	mustRun(t, "build", "-f", df, "-t", "ign2", ctx)
	got = mustRun(t, "run", "--rm", "ign2", "sh", "-c", "cd /ctx && find . -type f | sort")
	want = "./.dockerignore\n./Dockerfile\n./docs/README.md\n./docs/sub/y.md\n"
	if got != want {
		t.Errorf("with app.Dockerfile.dockerignore: files copied = %q, want %q", got, want)
	}
}

// TestBuildNewDirsOwnedByChownAndUser: dirs that COPY --chown creates for its
// destination belong to the --chown owner, and a WORKDIR made after USER belongs
// to that user (docker/buildkit), so the user can write in them.
func TestBuildNewDirsOwnedByChownAndUser(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"f": "f\n",
		"Dockerfile": `FROM busybox
COPY --chown=nobody:nogroup f /srv/a/b/f
COPY --chown=65534 f /srv/num/
USER nobody
WORKDIR /work/here
RUN touch /srv/a/new /work/here/new
`,
	})
	mustRun(t, "build", "-t", "owned", ctx)
	got := mustRun(t, "run", "--rm", "-u", "root", "owned", "stat", "-c", "%n %u:%g", "/srv", "/srv/a", "/srv/a/b", "/srv/a/b/f", "/srv/num", "/work", "/work/here")
	want := "/srv 65534:65534\n/srv/a 65534:65534\n/srv/a/b 65534:65534\n/srv/a/b/f 65534:65534\n/srv/num 65534:65534\n/work 65534:65534\n/work/here 65534:65534\n"
	if got != want {
		t.Errorf("owners = %q, want %q", got, want)
	}
}

// TestBuildInterruptedRun: ^C (SIGINT) during a RUN stops the build at once, even
// when the command (pid 1 of its container) ignores the signal, and the step is
// neither committed nor cached.
func TestBuildInterruptedRun(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nRUN sleep 6\n"})
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "build", "-t", "intr", ctx)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "Running in") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	code := exitCodeOf(t, cmd)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("build took %v to stop after SIGINT", took)
	}
	if code == 0 || strings.Contains(out.String(), "Successfully") || strings.Contains(out.String(), "Removing intermediate container") {
		t.Errorf("interrupted build: exit %d\n%s", code, out.String())
	}
	if got := mustRun(t, "images", "-q", "intr"); strings.TrimSpace(got) != "" {
		t.Errorf("an interrupted build tagged an image")
	}
	if ms := buildMounts(t, rootFor(t)); len(ms) > 0 {
		t.Errorf("an interrupted build left its mount: %v", ms)
	}
	if out := mustRun(t, "build", "-t", "intr", ctx); strings.Contains(out, "Using cache") {
		t.Errorf("the interrupted step was cached:\n%s", out)
	}
}

// TestBuildContextFromStdin: `build -` reads a Dockerfile (no context) or a tar
// of the context from stdin, and `-f -` the Dockerfile, as docker build does.
func TestBuildContextFromStdin(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	r := runWith(t, cmdOpts{stdin: strings.NewReader("FROM busybox\nRUN echo built > /out\n")}, "build", "-t", "df", "-")
	if r.Code != 0 {
		t.Fatalf("build - < Dockerfile: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "run", "--rm", "df", "cat", "/out"); got != "built\n" {
		t.Errorf("build from a stdin Dockerfile: %q", got)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range map[string]string{"Dockerfile": "FROM busybox\nCOPY sub/f /f\n", "sub/f": "from tar\n"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write([]byte(data))
	}
	tw.Close()
	r = runWith(t, cmdOpts{stdin: &buf}, "build", "-t", "tarctx", "-")
	if r.Code != 0 {
		t.Fatalf("build - < context.tar: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "run", "--rm", "tarctx", "cat", "/f"); got != "from tar\n" {
		t.Errorf("build from a stdin tar: %q", got)
	}

	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"g": "from dir\n"})
	r = runWith(t, cmdOpts{stdin: strings.NewReader("FROM busybox\nCOPY g /g\n")}, "build", "-t", "dashf", "-f", "-", ctx)
	if r.Code != 0 {
		t.Fatalf("build -f - DIR: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := mustRun(t, "run", "--rm", "dashf", "cat", "/g"); got != "from dir\n" {
		t.Errorf("build -f -: %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(rootFor(t), "tmp")); len(entries) != 0 {
		t.Errorf("stdin builds left temp files: %v", entries)
	}
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBuildGlobalArgs: a global ARG's default may use the ARGs before it, and a
// stage that declares TARGETARCH (or another platform ARG) gets buildkit's
// automatic value, as docker build gives them.
func TestBuildGlobalArgs(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "tag", "busybox", "busybox:1.0")
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `ARG VER=1.0
ARG IMG=busybox:${VER}
FROM ${IMG}
ARG IMG
ARG TARGETARCH
ARG TARGETOS
ARG TARGETPLATFORM
RUN echo "$IMG $TARGETOS $TARGETARCH $TARGETPLATFORM" > /out
`})
	mustRun(t, "build", "-t", "args", ctx)
	want := "busybox:1.0 linux " + runtime.GOARCH + " linux/" + runtime.GOARCH + "\n"
	if runtime.GOARCH == "arm" {
		want = "busybox:1.0 linux arm linux/arm/v7\n"
	}
	if got := mustRun(t, "run", "--rm", "args", "cat", "/out"); got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
	mustRun(t, "build", "--build-arg", "VER=latest", "-t", "args2", ctx)
	if got := mustRun(t, "run", "--rm", "args2", "cat", "/out"); !strings.HasPrefix(got, "busybox:latest ") {
		t.Errorf("with --build-arg VER=latest: %q", got)
	}
}

// TestBuildTarget: --target builds the named stage and the stages it needs, and
// it is the image (docker build --target); an unknown target is an error.
func TestBuildTarget(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox AS base
RUN echo base > /stage
FROM base AS Dev
RUN echo dev > /stage
FROM base AS prod
RUN echo prod > /stage
RUN exit 1
`})
	out := mustRun(t, "build", "--target", "dev", "-t", "dev", ctx)
	if strings.Contains(out, "prod") {
		t.Errorf("--target dev built a later stage:\n%s", out)
	}
	if got := mustRun(t, "run", "--rm", "dev", "cat", "/stage"); got != "dev\n" {
		t.Errorf("--target dev image has /stage %q", got)
	}
	if r := run(t, "build", "--target", "nosuch", ctx); r.Code == 0 || !strings.Contains(r.Stderr, "nosuch") {
		t.Errorf("--target nosuch: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestBuildHeredocs: RUN <<EOF (shell content, a #! script, heredocs of a
// command) and COPY <<EOF (content expanded unless the delimiter is quoted), as
// docker's Dockerfile syntax has them; they were refused.
func TestBuildHeredocs(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox
ARG WHO=world
ENV GREET=hello
RUN <<EOF
echo "plain $GREET" > /h.txt
echo two >> /h.txt
EOF
RUN <<-EOT
	#!/bin/sh
	echo "script $0 $GREET" > /s.txt
	EOT
RUN cat <<A > /a.txt && cat <<B > /b.txt
from a $WHO
A
from b
B
COPY <<EOF /copied.txt
content $GREET ${WHO} "quoted" \$NOT
EOF
COPY <<one <<two /multi/
1
one
2
two
COPY --chmod=0755 <<"EOF" /noexpand.sh
#!/bin/sh $GREET
EOF
`})
	mustRun(t, "build", "-t", "heredoc", ctx)
	got := mustRun(t, "run", "--rm", "heredoc", "sh", "-c", "cat /h.txt /s.txt /a.txt /b.txt /copied.txt /multi/one /multi/two /noexpand.sh; stat -c %a /noexpand.sh; ls /dev/pipes 2>&1; true")
	want := "plain hello\ntwo\nscript /dev/pipes/EOT hello\nfrom a world\nfrom b\ncontent hello world \"quoted\" $NOT\n1\n2\n#!/bin/sh $GREET\n755\nls: /dev/pipes: No such file or directory\n"
	if got != want {
		t.Errorf("heredoc results = %q, want %q", got, want)
	}
	if out := mustRun(t, "build", "-t", "heredoc", ctx); strings.Count(out, "Using cache") != 8 {
		t.Errorf("heredoc rebuild not fully cached:\n%s", out)
	}
}

// TestBuildCopyFlags: COPY/ADD flags that were parsed and silently ignored:
// --exclude copied the excluded files, ADD --checksum never checked, --unpack
// was not honoured and --parents flattened the paths. They now work as in
// docker, or (--parents) fail clearly.
func TestBuildCopyFlags(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "inside.txt", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("in\n"))
	tw.Close()
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(tgz.Bytes())
	}))
	defer srv.Close()
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256(tgz.Bytes()))

	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"dir1/a.txt": "a\n", "dir1/b.png": "b\n", "dir1/sub/c.png": "c\n", "dir2/d.txt": "d\n", "top.png": "t\n", "top.txt": "t\n",
		"arch.tgz": string(tgz.Bytes()),
		"Dockerfile": `FROM busybox
COPY --exclude=*.png --exclude=sub dir* /e/
COPY --exclude=*.png *.png *.txt /f/
ADD --unpack=false arch.tgz /packed/
ADD --checksum=` + sum + ` ` + srv.URL + `/arch.tgz /dl/
ADD --unpack=true ` + srv.URL + `/arch.tgz /unpacked/
`,
	})
	mustRun(t, "build", "-t", "flags", ctx)
	got := mustRun(t, "run", "--rm", "flags", "sh", "-c", "cd / && find e f packed dl unpacked -type f | sort")
	want := "dl/arch.tgz\ne/a.txt\ne/d.txt\nf/top.txt\npacked/arch.tgz\nunpacked/inside.txt\n"
	if got != want {
		t.Errorf("files = %q, want %q", got, want)
	}
	for _, tt := range []struct{ line, want string }{
		{"ADD --checksum=sha256:" + strings.Repeat("0", 64) + " " + srv.URL + "/arch.tgz /dl/", "checksum mismatch"},
		{"ADD --checksum=" + sum + " arch.tgz /x/", "checksum requires HTTP(S)"},
		{"COPY --parents ./*/./a.txt /p/", "--parents: wildcards before the /./"},
	} {
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\n" + tt.line + "\n"})
		if r := run(t, "build", "-t", "bad", ctx); r.Code == 0 || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q, want an error with %q", tt.line, r.Code, r.Stderr, tt.want)
		}
	}
}

// TestBuildEmptyWildcard: a wildcard source that matches nothing is no error
// (COPY package.json yarn.lock* ./, an optional file), as in docker; a plain
// missing path still is.
func TestBuildEmptyWildcard(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"package.json": "{}\n", "Dockerfile": "FROM busybox\nCOPY package.json yarn.lock* /app/\n"})
	mustRun(t, "build", "-t", "wild", ctx)
	if got := mustRun(t, "run", "--rm", "wild", "ls", "/app"); got != "package.json\n" {
		t.Errorf("/app = %q", got)
	}
	// Nothing matched, nothing copied: the dest dir is not made either (buildkit).
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nCOPY nomatch* /x/\nRUN test ! -e /x\n"})
	mustRun(t, "build", "-t", "wild2", ctx)
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nCOPY package.json yarn.lock /app/\n"})
	if r := run(t, "build", ctx); r.Code == 0 || !strings.Contains(r.Stderr, "yarn.lock") {
		t.Errorf("a missing plain path: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestBuildLowercaseDockerfile: a context whose Dockerfile is named
// "dockerfile" builds, as docker reads that name too.
func TestBuildLowercaseDockerfile(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"dockerfile": "FROM busybox\nRUN echo lower > /x\n"})
	mustRun(t, "build", "-t", "lower", ctx)
	if got := mustRun(t, "run", "--rm", "lower", "cat", "/x"); got != "lower\n" {
		t.Errorf("/x = %q", got)
	}
}

// TestBuildCopyFromKeepsOwners: COPY --from keeps the owners the files have in
// the source stage (a new destination dir is root's), as buildkit copies them;
// --chown still overrides. They all became root's.
func TestBuildCopyFromKeepsOwners(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox AS source
RUN touch /file && chown 100:200 /file && mkdir -p /dir/subdir && touch /dir/subdir/nested && \
    chown 100:200 /dir && chown 101:201 /dir/subdir && chown 102:202 /dir/subdir/nested && ln -s nested /dir/subdir/l && chown -h 103:203 /dir/subdir/l
FROM busybox
COPY --from=source /file /
COPY --from=source /dir /dir
COPY --from=source --chown=300:400 /dir /chowned
`})
	mustRun(t, "build", "-t", "owners", ctx)
	got := mustRun(t, "run", "--rm", "owners", "stat", "-c", "%n %u:%g", "/file", "/dir", "/dir/subdir", "/dir/subdir/nested", "/dir/subdir/l", "/chowned", "/chowned/subdir/nested")
	want := "/file 100:200\n/dir 0:0\n/dir/subdir 101:201\n/dir/subdir/nested 102:202\n/dir/subdir/l 103:203\n/chowned 300:400\n/chowned/subdir/nested 300:400\n"
	if got != want {
		t.Errorf("owners = %q, want %q", got, want)
	}
}

// TestBuildArgWithoutValueUnset: an ARG declared without a value (global or in
// the stage) and given no --build-arg is unset, as in buildkit: RUN's
// environment has no X=, and ${X:-d} expands to d. ARG X= is set and empty; an
// ARG declared again without a value keeps the value it had.
func TestBuildArgWithoutValueUnset(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `ARG G
FROM busybox
ARG G
ARG S
ARG E=
ARG K=kept
ARG K
ENV FROM_S=${S:-d}
RUN env | grep -E '^(G|S|E|K)=' | sort > /env; echo "${G:-d} ${S-unset} [${E-unset}] $FROM_S" > /exp
`})
	mustRun(t, "build", "-t", "args", ctx)
	if got := mustRun(t, "run", "--rm", "args", "cat", "/env", "/exp"); got != "E=\nK=kept\nd unset [] d\n" {
		t.Errorf("without build args: %q, want G and S unset", got)
	}
	mustRun(t, "build", "--build-arg", "G=g", "--build-arg", "S=s", "-t", "args2", ctx)
	if got := mustRun(t, "run", "--rm", "args2", "cat", "/env", "/exp"); got != "E=\nG=g\nK=kept\nS=s\ng s [] s\n" {
		t.Errorf("with build args: %q", got)
	}
}

// TestBuildCopySeveralSourcesToFile: COPY of several sources, files among
// them, to a destination that is not a dir and has no trailing slash fails with
// docker's message (the Dockerfile reference's rule; buildkit silently keeps
// the last file). An existing dir, a trailing slash, or dirs only are fine.
func TestBuildCopySeveralSourcesToFile(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"a": "a\n", "b": "b\n", "x.txt": "x\n", "y.txt": "y\n", "d1/f1": "1\n", "d2/f2": "2\n"})
	for _, tt := range []struct{ line, want string }{
		{"COPY a b /notdir", "When using COPY with more than one source file, the destination must be a directory and end with a /"},
		{"COPY *.txt /notdir", "When using COPY with more than one source file"},
		{"COPY d1 a /notdir", "When using COPY with more than one source file"},
		{"ADD a b /notdir", "When using ADD with more than one source file"},
	} {
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\n" + tt.line + "\n"})
		if r := run(t, "build", "-t", "bad", ctx); r.Code == 0 || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q, want an error with %q", tt.line, r.Code, r.Stderr, tt.want)
		}
	}
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox
COPY a b /etc
COPY a b /new/
COPY d1 d2 /merged
COPY a nomatch* /single
WORKDIR /w
COPY *.txt .
`})
	mustRun(t, "build", "-t", "ok", ctx)
	got := mustRun(t, "run", "--rm", "ok", "sh", "-c", "cat /etc/a /etc/b /single; cd / && find new merged w -type f | sort")
	if want := "a\nb\na\nmerged/f1\nmerged/f2\nnew/a\nnew/b\nw/x.txt\nw/y.txt\n"; got != want {
		t.Errorf("files = %q, want %q", got, want)
	}
}

// TestBuildCopyChmodSymbolic: --chmod takes a symbolic mode (u+x, go-w, a=rX)
// applied to each copied entry's own mode, as buildkit does (Dockerfile 1.14+,
// docker 28); octal modes keep their set-id bits; a bad mode is refused.
func TestBuildCopyChmodSymbolic(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"f": "f\n", "d/g": "g\n", "d/sub/h": "h\n"})
	os.Chmod(filepath.Join(ctx, "f"), 0o640)
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox
COPY --chmod=u+x f /ux
COPY --chmod=go-rwx,u=rw f /private
COPY --chmod=a=rX d /d/
ADD --chmod=+x f /addx
COPY --chmod=4755 f /suid
`})
	mustRun(t, "build", "-t", "modes", ctx)
	got := mustRun(t, "run", "--rm", "modes", "stat", "-c", "%n %a", "/ux", "/private", "/d/g", "/d/sub", "/d/sub/h", "/addx", "/suid")
	if want := "/ux 740\n/private 600\n/d/g 444\n/d/sub 555\n/d/sub/h 444\n/addx 751\n/suid 4755\n"; got != want {
		t.Errorf("modes = %q, want %q", got, want)
	}
	for _, bad := range []string{"u+q", "0999", "77777"} {
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nCOPY --chmod=" + bad + " f /x\n"})
		if r := run(t, "build", ctx); r.Code == 0 || !strings.Contains(r.Stderr, "chmod") {
			t.Errorf("--chmod=%s: exit %d, stderr %q, want a refusal", bad, r.Code, r.Stderr)
		}
	}
}
