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
// not exist, and returns the dir the source means (dir itself, or its subdir).
func CloneGit(ctx context.Context, s, dir string) (string, error) {
	g, err := parseGitURL(s)
	if err != nil {
		return "", err
	}
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false", "LC_ALL=C")
		if out, err := cmd.CombinedOutput(); err != nil {
			msg := strings.TrimSpace(string(out))
			if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
				msg = msg[i+1:]
			}
			if errors.Is(err, exec.ErrNotFound) {
				return errors.New("git is not installed: a git source needs it")
			}
			return fmt.Errorf("git %s: %s", args[0], msg)
		}
		return nil
	}
	switch {
	case g.ref == "":
		err = git("clone", "--depth=1", "--recurse-submodules", "--shallow-submodules", "--", g.remote, dir)
	case commitRef.MatchString(g.ref):
		// A commit: fetched by hash where the server allows it, else the
		// whole history to check it out.
		if err = git("init", "-q", dir); err == nil {
			err = git("-C", dir, "fetch", "-q", "--depth=1", "--", g.remote, g.ref)
			if err != nil {
				err = git("-C", dir, "fetch", "-q", "--", g.remote)
			}
			if err == nil {
				err = git("-C", dir, "checkout", "-q", g.ref)
			}
			if err == nil {
				err = git("-C", dir, "submodule", "update", "-q", "--init", "--recursive")
			}
		}
	default:
		err = git("clone", "--depth=1", "--recurse-submodules", "--shallow-submodules", "--branch", g.ref, "--", g.remote, dir)
	}
	if err != nil {
		return "", fmt.Errorf("git source %s: %w", s, err)
	}
	if err := os.RemoveAll(filepath.Join(dir, ".git")); err != nil {
		return "", err
	}
	if g.subdir == "" {
		return dir, nil
	}
	// The subdir must be a dir inside the clone, not a symlink out of it.
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
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
