package integration

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// seedDockerfile is shaped like the seeds' nginx, tomcat and mariadb Dockerfiles,
// on busybox: a user made by appending to /etc/passwd (busybox-static has no
// adduser), COPY of files and of a dir, ADD of a tarball that is unpacked, ENV,
// WORKDIR, EXPOSE, VOLUME, USER and CMD.
const seedDockerfile = `# a web page on busybox
FROM busybox
MAINTAINER Docker Newbee <newbee@docker.com>
ARG VERSION=1.0
RUN echo 'www:x:1000:1000:www:/home/www:/bin/sh' >> /etc/passwd && \
    echo 'www:x:1000:' >> /etc/group && mkdir -p /home/www && chown www:www /home/www
COPY html/ /data/html/
COPY --chown=www:www entrypoint.sh /usr/local/bin/
RUN chmod a+x /usr/local/bin/entrypoint.sh
ADD app-${VERSION}.tar.gz /usr/local/
COPY . /ctx/
ENV APP_HOME=/usr/local/app-${VERSION} GREETING="hello world"
WORKDIR $APP_HOME
EXPOSE 80/tcp 8080
VOLUME /data
USER www
CMD ["/usr/local/bin/entrypoint.sh"]
`

const seedEntrypoint = `#!/bin/sh
echo "$GREETING from $(id -un) in $PWD"
cat VERSION /data/html/index.html
ls /ctx
`

// writeBuildContext makes the seed build's context dir.
func writeBuildContext(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"Dockerfile":      seedDockerfile,
		"entrypoint.sh":   seedEntrypoint,
		"html/index.html": "<h1>Busybox test page</h1>\n",
		"html/about.html": "about\n",
		"secret/key":      "do not ship\n",
		"notes.tmp":       "scratch\n",
		".dockerignore":   "secret\n*.tmp\n",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "app-1.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		name, data string
		dir        bool
	}{{"app-1.0/", "", true}, {"app-1.0/VERSION", "v1.0\n", false}, {"app-1.0/bin/", "", true}, {"app-1.0/bin/run", "#!/bin/sh\n", false}} {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg, Uid: 0, Gid: 0}
		if e.dir {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	f.Close()
	return dir
}

var builtID = regexp.MustCompile(`(?m)^Successfully built ([0-9a-f]{12})$`)

func TestBuildSeedDockerfile(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := writeBuildContext(t)

	out := mustRun(t, "build", "-t", "me/web:v1", ctx)
	for _, want := range []string{
		"Step 1/15 : FROM busybox\n",
		"Step 4/15 : RUN echo 'www:x:1000:1000:www:/home/www:/bin/sh' >> /etc/passwd",
		" ---> Running in ",
		"Step 15/15 : CMD [\"/usr/local/bin/entrypoint.sh\"]\n",
		"Successfully tagged me/web:v1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
	m := builtID.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no 'Successfully built' line:\n%s", out)
	}
	id := m[1]

	got := mustRun(t, "run", "--rm", "me/web:v1")
	want := "hello world from www in /usr/local/app-1.0\nv1.0\n<h1>Busybox test page</h1>\nDockerfile\nentrypoint.sh\nhtml\napp-1.0.tar.gz\n"
	if !sameLines(got, want) {
		t.Errorf("run me/web:v1 = %q, want the lines of %q", got, want)
	}
	if got := mustRun(t, "run", "--rm", "me/web:v1", "sh", "-c", "stat -c '%U:%G %a' /usr/local/bin/entrypoint.sh /home/www; ls /data/html; ls /usr/local/app-1.0/bin"); got != "www:www 755\nwww:www 755\nabout.html\nindex.html\nrun\n" {
		t.Errorf("files in the image = %q", got)
	}

	// VOLUME /data: the container gets an anonymous volume filled from the image;
	// what it writes there is not its change (diff, commit), as in docker.
	if got := mustRun(t, "run", "--name", "vol", "-u", "root", "me/web:v1", "sh", "-c", "echo x > /data/html/new.html; cat /data/html/index.html; echo y > /tmp/t"); got != "<h1>Busybox test page</h1>\n" {
		t.Errorf("run with a volume = %q", got)
	}
	if got := mustRun(t, "diff", "vol"); got != "C /tmp\nA /tmp/t\n" {
		t.Errorf("diff of a container that wrote in its volume = %q, want only /tmp", got)
	}
	mustRun(t, "rm", "vol")

	var cfg struct {
		User         string
		WorkingDir   string
		Env          []string
		Cmd          []string
		ExposedPorts map[string]any
		Volumes      map[string]any
	}
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "--format", "{{json .Config}}", "me/web:v1")), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.User != "www" || cfg.WorkingDir != "/usr/local/app-1.0" || strings.Join(cfg.Cmd, " ") != "/usr/local/bin/entrypoint.sh" {
		t.Errorf("config User %q WorkingDir %q Cmd %q", cfg.User, cfg.WorkingDir, cfg.Cmd)
	}
	if _, ok := cfg.ExposedPorts["80/tcp"]; !ok || len(cfg.ExposedPorts) != 2 {
		t.Errorf("ExposedPorts = %v", cfg.ExposedPorts)
	}
	if _, ok := cfg.Volumes["/data"]; !ok {
		t.Errorf("Volumes = %v", cfg.Volumes)
	}
	if env := strings.Join(cfg.Env, "\n"); !strings.Contains(env, "APP_HOME=/usr/local/app-1.0") || !strings.Contains(env, "GREETING=hello world") || !strings.Contains(env, "PATH=") {
		t.Errorf("Env = %q", cfg.Env)
	}
	if author := strings.TrimSpace(mustRun(t, "inspect", "--format", "{{.Author}}", "me/web:v1")); author != "Docker Newbee <newbee@docker.com>" {
		t.Errorf("Author = %q", author)
	}
	// One layer per step that changed files: the base, 2 RUNs, 3 COPYs, ADD (WORKDIR names a dir ADD made).
	var layers []string
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "--format", "{{json .RootFS.Layers}}", "me/web:v1")), &layers); err != nil {
		t.Fatal(err)
	}
	if len(layers) != 7 {
		t.Errorf("%d layers, want 7 (base + RUN, COPY, COPY, RUN, ADD, COPY; WORKDIR made no dir)", len(layers))
	}

	// An unchanged rebuild comes from the cache, step by step, with the same ID.
	out2 := mustRun(t, "build", "-t", "me/web:v1", ctx)
	if n := strings.Count(out2, " ---> Using cache\n"); n != 14 {
		t.Errorf("rebuild used the cache %d times, want 14:\n%s", n, out2)
	}
	if strings.Contains(out2, "Running in") {
		t.Errorf("rebuild ran a step:\n%s", out2)
	}
	if m := builtID.FindStringSubmatch(out2); m == nil || m[1] != id {
		t.Errorf("rebuild built %v, want %s", m, id)
	}

	// A changed file invalidates its COPY and everything after, nothing before.
	os.WriteFile(filepath.Join(ctx, "html/index.html"), []byte("<h1>v2</h1>\n"), 0o644)
	out3 := mustRun(t, "build", "-t", "me/web:v2", ctx)
	if n := strings.Count(out3, " ---> Using cache\n"); n != 3 {
		t.Errorf("build after a change used the cache %d times, want 3 (MAINTAINER, ARG, RUN):\n%s", n, out3)
	}
	if got := mustRun(t, "run", "--rm", "me/web:v2", "cat", "/data/html/index.html"); got != "<h1>v2</h1>\n" {
		t.Errorf("rebuilt image serves %q", got)
	}
	// --no-cache runs every step.
	if out := mustRun(t, "build", "--no-cache", "-t", "me/web:v3", ctx); strings.Contains(out, "Using cache") {
		t.Errorf("--no-cache used the cache:\n%s", out)
	}
}

func sameLines(a, b string) bool {
	la, lb := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	if len(la) != len(lb) {
		return false
	}
	count := map[string]int{}
	for _, l := range la {
		count[l]++
	}
	for _, l := range lb {
		count[l]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestBuildErrors(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	dir := t.TempDir()
	writeDF := func(df string) {
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, dockerfile, want string
		code                   int
	}{
		{"failing RUN", "FROM busybox\nRUN exit 3\n", "The command '/bin/sh -c exit 3' returned a non-zero code: 3", 3},
		{"missing source", "FROM busybox\nCOPY nosuch /x\n", "COPY failed: file not found in build context", 1},
		{"missing base", "FROM nosuch/image\n", "nosuch/image", 1},
		{"bad instruction", "FROM busybox\nFOO bar\n", "unknown instruction", 1},
	}
	root := rootFor(t)
	for _, tt := range tests {
		writeDF(tt.dockerfile)
		r := runWith(t, cmdOpts{root: root}, "build", "-t", "bad:1", dir)
		if r.Code != tt.code || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("%s: build exit %d, output %q %q; want an error with %q", tt.name, r.Code, r.Stdout, r.Stderr, tt.want)
		}
	}
	// -q keeps the output and shows it on stderr when the build fails, as
	// docker's client: the failing step's own output is what a CI log needs.
	writeDF("FROM busybox\nRUN x=compiler; echo the $x said no; exit 4\n")
	if r := runWith(t, cmdOpts{root: root}, "build", "-q", "-t", "bad:1", dir); r.Code != 4 || r.Stdout != "" ||
		!strings.Contains(r.Stderr, "the compiler said no") || !strings.Contains(r.Stderr, "returned a non-zero code: 4") {
		t.Errorf("a failing build -q: exit %d, stdout %q, stderr %q; want the step's output and the error on stderr", r.Code, r.Stdout, r.Stderr)
	}
	if out := mustRun(t, "images", "-q", "bad"); strings.TrimSpace(out) != "" {
		t.Errorf("a failed build tagged an image: %q", out)
	}
	if ms := buildMounts(t, root); len(ms) > 0 {
		t.Errorf("a failed build left its mount: %v", ms)
	}
	// A build from scratch with -f and build args.
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hi\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Other.dockerfile"), []byte("FROM scratch\nARG NAME=x\nCOPY hello.txt /$NAME.txt\nCMD [\"/bin/none\"]\n"), 0o644)
	if out := mustRun(t, "build", "-f", filepath.Join(dir, "Other.dockerfile"), "--build-arg", "NAME=greeting", "-t", "scratchy", dir); !strings.Contains(out, "Successfully tagged scratchy:latest\n") {
		t.Errorf("build -t scratchy said %q, want docker's Successfully tagged scratchy:latest", out)
	}
	if out := mustRun(t, "export", "scratchy"); !strings.Contains(out, "greeting.txt") {
		t.Errorf("export of the scratch build lacks greeting.txt")
	}
}
