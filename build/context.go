package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"
)

// buildContext is the context dir with its .dockerignore.
type buildContext struct {
	dir string
	pm  *patternmatcher.PatternMatcher // nil: nothing excluded
	// inRoot: dir is an image's root (COPY --from): sources resolve inside it,
	// symlinks included, never to the host.
	inRoot bool
}

func openContext(dir string) (*buildContext, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s: not a directory", dir)
	}
	c := &buildContext{dir: abs}
	f, err := os.Open(filepath.Join(abs, ".dockerignore"))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	if len(patterns) > 0 {
		if c.pm, err = patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	}
	return c, nil
}

// excluded reports whether rel (slash-separated, relative to the context) is
// excluded by .dockerignore.
func (c *buildContext) excluded(rel string) bool {
	if c.pm == nil || rel == "." || rel == "" {
		return false
	}
	ok, err := c.pm.MatchesOrParentMatches(rel)
	return err == nil && ok
}

// source is one matched COPY/ADD source in the context.
type source struct {
	rel string // slash path relative to the context
	abs string
	fi  fs.FileInfo // Lstat of the source (a symlink named directly is followed, as docker does)
}

// resolve expands a COPY/ADD source (globs allowed) to the context entries it
// names. A pattern that cleans to outside the context is held inside it.
func (c *buildContext) resolve(pattern string) ([]source, error) {
	clean := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(pattern)), "/")
	if clean == "" {
		clean = "."
	}
	var rels []string
	if strings.ContainsAny(clean, "*?[") {
		matches, err := filepath.Glob(filepath.Join(c.dir, filepath.FromSlash(clean)))
		if err != nil {
			return nil, fmt.Errorf("bad source pattern %q: %w", pattern, err)
		}
		for _, m := range matches {
			r, err := filepath.Rel(c.dir, m)
			if err != nil || strings.HasPrefix(r, "..") {
				continue
			}
			rels = append(rels, filepath.ToSlash(r))
		}
	} else {
		rels = []string{clean}
	}
	var out []source
	for _, r := range rels {
		if c.excluded(r) {
			continue
		}
		abs := filepath.Join(c.dir, filepath.FromSlash(r))
		if c.inRoot {
			real, err := c.realPathInRoot(r)
			if err != nil {
				continue
			}
			abs = real
		}
		fi, err := os.Stat(abs)
		if err != nil {
			continue
		}
		out = append(out, source{rel: r, abs: abs, fi: fi})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("file not found in build context or excluded by .dockerignore: stat %s: file does not exist", pattern)
	}
	return out, nil
}

// realPathInRoot resolves rel inside the root dir and returns the host path of
// what it names (a path under c.dir with no symlink in it).
func (c *buildContext) realPathInRoot(rel string) (string, error) {
	f, err := OpenInRoot(c.dir, rel, unix.O_PATH)
	if err != nil {
		return "", err
	}
	defer f.Close()
	real, err := os.Readlink(fdPath(f))
	if err != nil {
		return "", err
	}
	if real != c.dir && !strings.HasPrefix(real, c.dir+"/") {
		return "", fmt.Errorf("%s resolves outside the source root", rel)
	}
	return real, nil
}

// walk calls fn for src and, for a dir, every entry below it that .dockerignore
// keeps, in lexical order; rel is relative to src ("." for src itself).
func (c *buildContext) walk(src source, fn func(rel, abs string, fi fs.FileInfo) error) error {
	if !src.fi.IsDir() {
		return fn(".", src.abs, src.fi)
	}
	return filepath.WalkDir(src.abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(src.abs, p)
		r = filepath.ToSlash(r)
		ctxRel, _ := filepath.Rel(c.dir, p)
		if r != "." && c.excluded(filepath.ToSlash(ctxRel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if r == "." {
			fi = src.fi
		}
		return fn(r, p, fi)
	})
}

// hashSources hashes what a COPY/ADD reads: names, types, modes, link targets
// and contents (not times: docker's cache ignores them too).
func (c *buildContext) hashSources(srcs []source) (string, error) {
	h := sha256.New()
	for _, s := range srcs {
		fmt.Fprintf(h, "source %q\n", s.rel)
		err := c.walk(s, func(rel, abs string, fi fs.FileInfo) error {
			fmt.Fprintf(h, "%q %o", rel, fi.Mode())
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				t, err := os.Readlink(abs)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, " -> %q", t)
			case fi.Mode().IsRegular():
				f, err := os.Open(abs)
				if err != nil {
					return err
				}
				fh := sha256.New()
				_, err = io.Copy(fh, f)
				f.Close()
				if err != nil {
					return err
				}
				fmt.Fprintf(h, " %x", fh.Sum(nil))
			}
			fmt.Fprintln(h)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
