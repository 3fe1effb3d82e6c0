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
	url, commit, _ := gitServerWith(t, files, nil)
	return url, commit
}

// gitServerWith is gitServer with more done in the work repo (git runs git
// there) before the bare copy is made; it also returns the served base dir.
func gitServerWith(t *testing.T, files map[string]string, more func(git func(args ...string) string, base string)) (string, string, string) {
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
	if more != nil {
		more(func(args ...string) string { return run(work, args...) }, base)
	}
	run(base, "clone", "-q", "--bare", work, filepath.Join(base, "repo.git"))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// git-daemon itself, not `git daemon` (which runs it as a child that a
	// kill of git leaves running): killed and reaped here.
	execPath, err := exec.Command(git, "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	d := exec.Command(filepath.Join(strings.TrimSpace(string(execPath)), "git-daemon"), "--export-all", "--base-path="+base,
		"--reuseaddr", "--listen=127.0.0.1", "--port="+strconv.Itoa(port), base)
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
	return "git://" + addr + "/repo.git", commit, base
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

// TestBuildGitRefsAndSubmodules: docker's other ref forms (pull/N/head,
// refs/..., a short hash on a branch other than the default), submodules with
// relative URLs (resolved against the repository's URL, never the host's
// paths; their .git files left out), ADD --keep-git-dir refused.
func TestBuildGitRefsAndSubmodules(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	var side string
	url, _, base := gitServerWith(t, map[string]string{
		"Dockerfile": "FROM busybox\nCOPY . /src\n",
		"sub/f":      "v1\n",
	}, func(git func(args ...string) string, base string) {
		// A submodule from a repository next to this one, by a relative URL.
		mod := filepath.Join(base, "mod")
		os.MkdirAll(mod, 0o755)
		g := exec.Command("git", "init", "-q", "-b", "main", mod)
		g.Run()
		os.WriteFile(filepath.Join(mod, "m"), []byte("module\n"), 0o644)
		for _, args := range [][]string{{"add", "."}, {"commit", "-qm", "m"}} {
			c := exec.Command("git", append([]string{"-C", mod}, args...)...)
			c.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v: %s", args, err, out)
			}
		}
		if out, err := exec.Command("git", "clone", "-q", "--bare", mod, filepath.Join(base, "mod.git")).CombinedOutput(); err != nil {
			t.Fatalf("clone: %v: %s", err, out)
		}
		git("-c", "protocol.file.allow=always", "submodule", "add", "-q", "../mod.git", "m")
		git("commit", "-qm", "submodule")
		git("checkout", "-q", "-b", "side")
		os.WriteFile(filepath.Join(base, "work", "side"), []byte("side\n"), 0o644)
		git("add", "side")
		git("commit", "-qm", "side")
		side = git("rev-parse", "HEAD")
		git("checkout", "-q", "main")
	})
	// A ref outside heads and tags, as a forge keeps pull requests.
	if out, err := exec.Command("git", "--git-dir", filepath.Join(base, "repo.git"), "update-ref", "refs/pull/42/head", "main").CombinedOutput(); err != nil {
		t.Fatalf("update-ref: %v: %s", err, out)
	}
	for _, tc := range []struct{ ref, check string }{
		{"pull/42/head", "cat /src/m/m"},
		{"refs/heads/main", "cat /src/m/m"},
		{side[:7], "cat /src/side"},
	} {
		mustRun(t, "build", "-q", "-t", "r:1", url+"#"+tc.ref)
		out := mustRun(t, "run", "--rm", "r:1", "sh", "-c", tc.check+"; ls -a /src /src/m")
		if strings.Contains(out, "\n.git\n") || (!strings.Contains(out, "module") && !strings.Contains(out, "side")) {
			t.Errorf("build %s#%s: %q", url, tc.ref, out)
		}
	}
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nADD --keep-git-dir=true "+url+" /g\n"), 0o644)
	if r := run(t, "build", ctx); r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "--keep-git-dir=true is not supported") {
		t.Errorf("ADD --keep-git-dir=true: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// A store root reached through a symlink: ADD of a whole repository.
	link := filepath.Join(t.TempDir(), "rootlink")
	if err := os.Symlink(rootFor(t), link); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nADD "+url+" /g\n"), 0o644)
	if r := runWith(t, cmdOpts{root: link}, "build", "-q", ctx); r.Code != 0 {
		t.Errorf("ADD of a git repository with a symlinked root: exit %d, %q", r.Code, r.Stderr)
	}
}
