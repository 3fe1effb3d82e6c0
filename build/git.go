package build

// Git sources, as buildkit takes them: a build context (docker build
// https://host/repo.git#ref:dir) and ADD's source (ADD git@host:repo.git /dst).
// The repository is cloned with the git command (shallow where the ref allows);
// its .git dir is left out, as buildkit leaves it out by default.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// gitURL is one git source: the repository, a ref (branch, tag or commit; ""
// is the default branch) and a subdir of it ("" is the top).
type gitURL struct {
	remote, ref, subdir string
}

var (
	gitSchemes = []string{"git://", "git@", "ssh://", "git+ssh://", "git+https://", "git+http://"}
	// A commit named by its hash (7 to 40 hex digits, or a 64 for sha256 repos).
	commitRef = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
)

// IsGitURL reports whether s names a git repository as docker build takes
// one: git://, git@, ssh:// (and git+ schemes), github.com/..., or an http(s)
// URL whose path ends in .git (before a #fragment).
func IsGitURL(s string) bool {
	for _, p := range gitSchemes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	if strings.HasPrefix(s, "github.com/") {
		return true
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		u, _, _ := strings.Cut(s, "#")
		return strings.HasSuffix(u, ".git")
	}
	return false
}

// parseGitURL splits s into repository, ref and subdir (docker's
// URL#REF:SUBDIR fragment).
func parseGitURL(s string) (gitURL, error) {
	remote, frag, _ := strings.Cut(s, "#")
	if strings.HasPrefix(remote, "github.com/") {
		remote = "https://" + remote
	}
	for _, p := range []string{"git+https://", "git+http://", "git+ssh://"} {
		if strings.HasPrefix(remote, p) {
			remote = strings.TrimPrefix(remote, "git+")
		}
	}
	g := gitURL{remote: remote}
	g.ref, g.subdir, _ = strings.Cut(frag, ":")
	if strings.HasPrefix(g.ref, "-") || strings.ContainsAny(g.ref, " \t\n") {
		return g, fmt.Errorf("git source %s: bad ref %q", s, g.ref)
	}
	g.subdir = strings.TrimPrefix(path.Clean("/"+g.subdir), "/") // ".." cannot climb out
	if strings.HasPrefix(g.remote, "-") {
		return g, fmt.Errorf("git source %s: bad repository", s)
	}
	return g, nil
}

// CloneGit clones the repository s names (URL#REF:SUBDIR) into dir, which must
// not exist, and returns the dir the source means (dir itself, or its subdir),
// symlink-free. REF is anything the server's refs match (a branch, a tag,
// pull/42/head, refs/...) or a commit hash; "" is the remote's HEAD.
func CloneGit(ctx context.Context, s, dir string) (string, error) {
	g, err := parseGitURL(s)
	if err != nil {
		return "", err
	}
	// The user's and the system's git config and GIT_* variables stay out, and
	// no submodule comes from a local path (a repository's relative submodule
	// URL must not reach the host's repositories).
	env := []string{"GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false", "LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GIT_") && !strings.HasPrefix(e, "LC_ALL=") {
			env = append(env, e)
		}
	}
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "protocol.file.allow=never", "-C", dir}, args...)...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				return errors.New("git is not installed: a git source needs it")
			}
			msg := strings.TrimSpace(string(out))
			if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
				msg = msg[i+1:]
			}
			return fmt.Errorf("git %s: %s", args[0], msg)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ref := g.ref
	if ref == "" {
		ref = "HEAD"
	}
	err = git("init", "-q")
	if err == nil {
		err = git("remote", "add", "origin", "--", g.remote)
	}
	if err == nil {
		if err = git("fetch", "-q", "--depth=1", "--no-tags", "origin", ref); err == nil {
			err = git("checkout", "-q", "FETCH_HEAD")
		} else if commitRef.MatchString(ref) {
			// A commit a server will not serve by (abbreviated) hash: its
			// branches and tags, then the commit among them.
			err = git("fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
			if err == nil {
				err = git("checkout", "-q", ref)
			}
		}
	}
	if err == nil {
		err = git("submodule", "update", "-q", "--init", "--recursive")
	}
	if err != nil {
		return "", fmt.Errorf("git source %s: %w", s, err)
	}
	if err := removeGitDirs(dir); err != nil {
		return "", err
	}
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if g.subdir == "" {
		return base, nil
	}
	// The subdir must be a dir inside the clone, not a symlink out of it.
	real, err := filepath.EvalSymlinks(filepath.Join(base, g.subdir))
	if err != nil {
		return "", fmt.Errorf("git source %s: subdir %s: %w", s, g.subdir, err)
	}
	if real != base && !strings.HasPrefix(real, base+"/") {
		return "", fmt.Errorf("git source %s: subdir %s leaves the repository", s, g.subdir)
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("git source %s: subdir %s is not a directory", s, g.subdir)
	}
	return real, nil
}

// removeGitDirs removes the clone's .git dir and its submodules' .git files,
// as buildkit leaves them out (a repository cannot track a .git of its own).
func removeGitDirs(dir string) error {
	var gits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			gits = append(gits, p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range gits {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}
