package build

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/layerfs/layerfs/internal/testenv"
)

// buildArgs builds dockerfile in ctxDir with --build-arg values, tagged out:latest.
func buildArgs(t *testing.T, root string, o Options, ctxDir, dockerfile string) (*Result, string, error) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o.LayersDir, o.StateDir, o.Context, o.Tags, o.Out = filepath.Join(root, "layers"), root, ctxDir, []string{"out:latest"}, &out
	res, err := Build(context.Background(), o)
	return res, out.String(), err
}

// TestBuildEmptyEnvOverridesArg: ENV X="" is set, and wins over ARG X in RUN's
// environment as any ENV does (docker, buildah); it was taken for unset.
func TestBuildEmptyEnvOverridesArg(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	df := "FROM base\nARG X=argx\nENV X=\"\"\nRUN echo \"X=[$X]\"; env | grep -c '^X=' | sed 's/^/count=/'\n"
	_, out, err := buildArgs(t, root, Options{Store: s}, t.TempDir(), df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "X=[]\ncount=1\n") {
		t.Errorf("RUN saw the ARG's value, want X empty and set once:\n%s", out)
	}
}

// TestBuildProxyArgs: the predefined proxy args given with --build-arg reach
// RUN without an ARG line (both cases, as buildkit sets them), are not
// reported unused, and stay out of the image's config and history; an ARG
// that declares one puts it in RUN's history line, as in docker.
func TestBuildProxyArgs(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	o := Options{Store: s, BuildArgs: map[string]string{"HTTP_PROXY": "http://proxy:3128", "no_proxy": "localhost", "OTHER": "x"}}
	df := "FROM base\nRUN echo \"proxy=[$HTTP_PROXY][$http_proxy][$no_proxy][$NO_PROXY][$OTHER]\"\nARG no_proxy\nRUN true\n"
	res, out, err := buildArgs(t, root, o, t.TempDir(), df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "proxy=[http://proxy:3128][http://proxy:3128][localhost][localhost][]\n") {
		t.Errorf("RUN's proxy environment is wrong:\n%s", out)
	}
	if !strings.Contains(out, "build-args [OTHER] were not consumed") {
		t.Errorf("want OTHER alone reported unused:\n%s", out)
	}
	if env := strings.Join(res.Image.Config.Config.Env, " "); strings.Contains(strings.ToLower(env), "proxy") {
		t.Errorf("image Env = %s, want no proxy", env)
	}
	h := res.Image.Config.History
	if got := h[len(h)-3].CreatedBy; strings.HasPrefix(got, "|") {
		t.Errorf("first RUN created_by = %q, want no args in it", got)
	}
	if got, want := h[len(h)-1].CreatedBy, "|1 no_proxy=localhost /bin/sh -c true"; got != want {
		t.Errorf("RUN after ARG no_proxy: created_by = %q, want %q", got, want)
	}
}

// TestBuildCopyFlagsExpand: --chmod (COPY and ADD) and ADD --checksum take
// $VARs, as --chown does and buildkit expands them; they were taken as written.
func TestBuildCopyFlagsExpand(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	const body = "remote\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer srv.Close()
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "a.txt"), []byte("a\n"), 0o644)
	df := "FROM base\nARG CH=755\nARG SUM=" + digest.FromString(body).String() + "\n" +
		"COPY --chmod=${CH} a.txt /a\nADD --chmod=$CH a.txt /b\nADD --checksum=${SUM} " + srv.URL + "/r.txt /r\n" +
		"RUN stat -c '%n %a' /a /b && cat /r\n"
	_, out, err := buildArgs(t, root, Options{Store: s}, ctxDir, df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "/a 755\n/b 755\nremote\n") {
		t.Errorf("modes or download wrong:\n%s", out)
	}
}

// TestBuildAddChmodArchive: ADD --chmod of a local tar that is unpacked keeps
// the archive's modes, and the dest dir it makes is 0755, as buildkit unpacks;
// every entry got the --chmod mode (dirs 0600 nobody could enter). A file
// that is not an archive still gets it.
func TestBuildAddChmodArchive(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	src := filepath.Join(t.TempDir(), "p")
	os.MkdirAll(filepath.Join(src, "in"), 0o755)
	os.Chmod(filepath.Join(src, "in"), 0o750)
	os.WriteFile(filepath.Join(src, "in", "t"), []byte("t\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "f"), []byte("f\n"), 0o644)
	if out, err := exec.Command("tar", "-cf", filepath.Join(ctxDir, "p.tar"), "-C", src, "in").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	df := "FROM base\nADD --chmod=600 p.tar /x/\nADD --chmod=600 f /f\nRUN stat -c '%n %a' /x /x/in /x/in/t /f\n"
	_, out, err := buildArgs(t, root, Options{Store: s}, ctxDir, df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if want := "/x 755\n/x/in 750\n/x/in/t 644\n/f 600\n"; !strings.Contains(out, want) {
		t.Errorf("modes wrong, want %q:\n%s", want, out)
	}
}

// TestBuildHistoryCreatedBy: config steps' history lines are the classic
// builder's: expanded values, exec forms with %q, the shell form as the
// command run, VOLUME and SHELL with %v, the SHELL in effect as the prefix.
// They were the Dockerfile's text.
func TestBuildHistoryCreatedBy(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	df := `FROM base
ARG V2=d2
ARG V3=$V2/x
ENV A=hello
ENV I=$A J=${A}x
LABEL l1="$V2" l2=$A
CMD ["a", "b"]
CMD echo shell form
ENTRYPOINT ["/bin/sh","-c"]
VOLUME ["/a","/b"]
VOLUME /$A
EXPOSE 80/tcp $A_PORT 8080
USER ${A:+app}
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=1m --retries=3 CMD ["true"]
ONBUILD RUN echo $A
MAINTAINER Me <me@example.com>
SHELL ["/bin/sh","-ec"]
CMD echo under ec
WORKDIR /w
`
	res, out, err := buildArgs(t, root, Options{Store: s, BuildArgs: map[string]string{"V2": "given"}}, t.TempDir(), df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	want := []string{
		`/bin/sh -c #(nop)  ARG V2=d2`,
		`/bin/sh -c #(nop)  ARG V3=given/x`,
		`/bin/sh -c #(nop)  ENV A=hello`,
		`/bin/sh -c #(nop)  ENV I=hello J=hellox`,
		`/bin/sh -c #(nop)  LABEL l1=given l2=hello`,
		`/bin/sh -c #(nop)  CMD ["a" "b"]`,
		`/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo shell form"]`,
		`/bin/sh -c #(nop)  ENTRYPOINT ["/bin/sh" "-c"]`,
		`/bin/sh -c #(nop)  VOLUME [/a /b]`,
		`/bin/sh -c #(nop)  VOLUME [/hello]`,
		`/bin/sh -c #(nop)  EXPOSE 80/tcp 8080`,
		`/bin/sh -c #(nop)  USER app`,
		`/bin/sh -c #(nop)  STOPSIGNAL SIGTERM`,
		`/bin/sh -c #(nop)  HEALTHCHECK &{["CMD" "true"] "1m0s" "0s" "0s" "0s" '\x03'}`,
		`/bin/sh -c #(nop)  ONBUILD RUN echo $A`,
		`/bin/sh -c #(nop)  MAINTAINER Me <me@example.com>`,
		`/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]`,
		`/bin/sh -ec #(nop)  CMD ["/bin/sh" "-ec" "echo under ec"]`,
		`/bin/sh -ec #(nop) WORKDIR /w`,
	}
	h := res.Image.Config.History
	if len(h) < len(want) {
		t.Fatalf("%d history entries, want at least %d", len(h), len(want))
	}
	for i, e := range h[len(h)-len(want):] {
		if e.CreatedBy != want[i] {
			t.Errorf("history %d created_by = %q, want %q", i, e.CreatedBy, want[i])
		}
	}
}

// TestBuildArgOverriddenByEnvCached: a --build-arg an ENV overrides changes
// nothing a step makes, so a rebuild with another value is all cached, and RUN
// records no args (the classic builder's FilterAllowed); the args RUN records
// are sorted. The ARG, ENV and RUN steps all ran again.
func TestBuildArgOverriddenByEnvCached(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	ctxDir := t.TempDir()
	df := "FROM base\nARG P=a\nENV P=fixed\nRUN echo \"P=$P\"\nARG Z=z\nARG B=b\nRUN true\n"
	res1, out, err := buildArgs(t, root, Options{Store: s}, ctxDir, df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	res2, out, err := buildArgs(t, root, Options{Store: s, BuildArgs: map[string]string{"P": "other"}}, ctxDir, df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if res2.Cached != 6 || res2.Image.ID != res1.Image.ID {
		t.Errorf("rebuild with --build-arg P=other: %d steps cached, want 6 and the same image\n%s", res2.Cached, out)
	}
	h := res2.Image.Config.History
	if got, want := h[len(h)-4].CreatedBy, `/bin/sh -c echo "P=$P"`; got != want {
		t.Errorf("RUN created_by = %q, want %q", got, want)
	}
	if got, want := h[len(h)-1].CreatedBy, "|2 B=b Z=z /bin/sh -c true"; got != want {
		t.Errorf("RUN created_by = %q, want %q", got, want)
	}
}

// TestBuildErrorWording: a parse error says "dockerfile parse error" once (it
// was doubled), and a COPY --from source that is missing names the stage or
// image, not the build context.
func TestBuildErrorWording(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	tests := []struct{ df, want, not string }{
		{"FROM base\nFOO bar\n", "build failed: dockerfile parse error on line 2: unknown instruction: FOO", "parse error: dockerfile parse error"},
		{"FROM base\nCOPY --from=base /nonexist /x\n", "COPY failed: file not found in image base: stat /nonexist", "build context"},
		{"FROM base AS src\nFROM base\nCOPY --from=src /nonexist /x\n", "COPY failed: file not found in stage src: stat /nonexist", "build context"},
		{"FROM base\nCOPY nonexist /x\n", "COPY failed: file not found in build context or excluded by .dockerignore: stat nonexist", "stage"},
	}
	for _, tt := range tests {
		_, out, err := buildArgs(t, root, Options{Store: s}, t.TempDir(), tt.df)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), tt.not) {
			t.Errorf("Build(%q) = %v, want an error with %q, without %q\n%s", tt.df, err, tt.want, tt.not, out)
		}
	}
}
