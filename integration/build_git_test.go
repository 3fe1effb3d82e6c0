package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
)

// gitServer serves a bare repository made from files (two commits: the files,
// then sub/f changed to "v2"; the first tagged v1) over git:// on loopback,
// and returns its URL and the second commit's hash.
func gitServer(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	git := testenv.RequireTool(t, "git")
	base := t.TempDir()
	work := filepath.Join(base, "work")
	run := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(git, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	os.MkdirAll(work, 0o755)
	run(work, "init", "-q", "-b", "main")
	for name, data := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(work, name)), 0o755)
		os.WriteFile(filepath.Join(work, name), []byte(data), 0o644)
	}
	run(work, "add", ".")
	run(work, "commit", "-qm", "one")
	run(work, "tag", "v1")
	os.WriteFile(filepath.Join(work, "sub", "f"), []byte("v2\n"), 0o644)
	run(work, "commit", "-qam", "two")
	commit := run(work, "rev-parse", "HEAD")
	run(base, "clone", "-q", "--bare", work, filepath.Join(base, "repo.git"))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	d := exec.Command(git, "daemon", "--export-all", "--base-path="+base, "--reuseaddr", "--listen=127.0.0.1", "--port="+strconv.Itoa(port), base)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("git daemon did not listen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "git://" + addr + "/repo.git", commit
}

// TestBuildGitSources: docker build of a git URL (URL#REF:SUBDIR: a branch,
// a tag or a commit, and a subdir as the context) and ADD of a git repository,
// as buildkit takes them; the .git dir is left out; bad refs and subdirs fail
// naming the source.
func TestBuildGitSources(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	url, commit := gitServer(t, map[string]string{
		"Dockerfile":     "FROM busybox\nCOPY sub/f /top\n",
		"sub/Dockerfile": "FROM busybox\nCOPY f /f\n",
		"sub/f":          "v1\n",
	})
	for _, tc := range []struct{ src, file, want string }{
		{url, "/top", "v2\n"},
		{url + "#v1:sub", "/f", "v1\n"},
		{url + "#main:sub", "/f", "v2\n"},
		{url + "#" + commit[:12] + ":sub", "/f", "v2\n"},
	} {
		mustRun(t, "build", "-q", "-t", "g:1", tc.src)
		if got := mustRun(t, "run", "--rm", "g:1", "cat", tc.file); got != tc.want {
			t.Errorf("build %s: %s = %q, want %q", tc.src, tc.file, got, tc.want)
		}
	}
	if r := run(t, "build", url+"#nosuch"); r.Code == 0 || !strings.Contains(r.Stderr, "git source "+url+"#nosuch") {
		t.Errorf("build of a missing ref: exit %d, %q", r.Code, r.Stderr)
	}
	if r := run(t, "build", url+"#main:nodir"); r.Code == 0 || !strings.Contains(r.Stderr, "subdir nodir") {
		t.Errorf("build of a missing subdir: exit %d, %q", r.Code, r.Stderr)
	}

	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nADD "+url+"#v1 /src\nADD "+url+"#main:sub /sub/\n"), 0o644)
	mustRun(t, "build", "-q", "-t", "gadd:1", ctx)
	if got := mustRun(t, "run", "--rm", "gadd:1", "sh", "-c", "cat /src/sub/f /sub/f; ls -a /src"); got != "v1\nv2\n.\n..\nDockerfile\nsub\n" {
		t.Errorf("ADD of git sources: %q", got)
	}
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nADD "+url+" Dockerfile /x/\n"), 0o644)
	if r := run(t, "build", ctx); r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "only source") {
		t.Errorf("ADD of a git repository among other sources: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
}
