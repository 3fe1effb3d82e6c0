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
	"syscall"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"
)

// buildContext is the context dir with its .dockerignore, or the root of an
// image for COPY --from. Sources resolve inside dir, symlinks included (as
// docker resolves them), never to the host.
type buildContext struct {
	dir string                         // absolute, symlink-free
	pm  *patternmatcher.PatternMatcher // nil: nothing excluded
	// copyExcl is COPY/ADD --exclude: patterns relative to each source dir
	// (a file source is matched by its name).
	copyExcl *patternmatcher.PatternMatcher
	// copyExclAt is where a COPY --parents source sits under its pivot: its
	// --exclude patterns are relative to the pivot, not to the source.
	copyExclAt string
	// from names a source that is not the build context, for errors: "stage
	// builder", "image busybox"; "" is the build context.
	from string
	// hideDir: dir is the build's own (an image's mount for COPY --from, a
	// git clone), so errors name a path as the Dockerfile does (/a/t/fifo),
	// not by where it sits in the store (shown).
	hideDir bool
}

// shown is the path of abs (under c.dir) for an error: the host path in a
// context dir, the path in the image (or repository) with hideDir.
func (c *buildContext) shown(abs string) string {
	if !c.hideDir {
		return abs
	}
	if abs == c.dir {
		return "/"
	}
	if rel, ok := strings.CutPrefix(abs, c.dir+"/"); ok {
		return "/" + rel
	}
	return abs
}

// errNotFound is the error for a source path that is not in c (or that c's
// .dockerignore hides).
func (c *buildContext) errNotFound(pattern string) error {
	where := "build context or excluded by .dockerignore"
	if c.from != "" {
		where = c.from
	}
	return fmt.Errorf("file not found in %s: stat %s: file does not exist", where, pattern)
}

// withExcludes is c for one COPY/ADD with --exclude patterns.
func (c *buildContext) withExcludes(patterns []string) (*buildContext, error) {
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("--exclude: %w", err)
	}
	cc := *c
	cc.copyExcl = pm
	return &cc, nil
}

// copyExcluded reports whether rel (relative to a COPY source) is excluded by
// the copy's --exclude patterns.
func (c *buildContext) copyExcluded(rel string) bool {
	if c.copyExcl == nil || rel == "." || rel == "" {
		return false
	}
	if c.copyExclAt != "" {
		rel = path.Join(c.copyExclAt, rel)
	}
	ok, err := c.copyExcl.MatchesOrParentMatches(rel)
	return err == nil && ok
}

// openContext opens the context dir and its ignore file: dockerfile's own
// <Dockerfile>.dockerignore if there is one (as buildkit reads it), else the
// context's .dockerignore.
func openContext(dir, dockerfile string, inRoot bool) (*buildContext, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s: not a directory", dir)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real // the prefix realPathInRoot checks against
	}
	c := &buildContext{dir: abs}
	var f *os.File
	if dockerfile != "" {
		f, err = openContextFile(dir, dockerfile+".dockerignore", inRoot)
	}
	if f == nil {
		f, err = openContextFile(dir, filepath.Join(dir, ".dockerignore"), inRoot)
	}
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

// openContextFile opens the file p for reading; with inRoot, p under the
// context dir is resolved inside it (openat2 RESOLVE_IN_ROOT).
func openContextFile(dir, p string, inRoot bool) (*os.File, error) {
	if inRoot {
		if rel, err := filepath.Rel(dir, p); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return OpenInRoot(dir, rel, unix.O_RDONLY)
		}
	}
	return os.Open(p)
}

// readContextFile is os.ReadFile with openContextFile's resolution.
func readContextFile(dir, p string, inRoot bool) ([]byte, error) {
	f, err := openContextFile(dir, p, inRoot)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
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

// mayReinclude reports whether an exception ("!pattern") of .dockerignore may
// keep something below the excluded dir rel, so that the dir must be walked, as
// docker walks it.
func (c *buildContext) mayReinclude(rel string) bool {
	if c.pm == nil || !c.pm.Exclusions() {
		return false
	}
	dirs := strings.Split(rel, "/")
next:
	for _, p := range c.pm.Patterns() {
		if !p.Exclusion() {
			continue
		}
		pat := strings.Split(filepath.ToSlash(p.String()), "/")
		for i, d := range dirs {
			if i >= len(pat) {
				continue next
			}
			if strings.Contains(pat[i], "**") {
				return true
			}
			if ok, _ := path.Match(pat[i], d); !ok {
				continue next
			}
		}
		return true
	}
	return false
}

// source is one matched COPY/ADD source in the context.
type source struct {
	rel string // slash path relative to the context
	abs string
	fi  fs.FileInfo // Lstat of the source (a symlink named directly is followed, as docker does)
}

// resolve expands a COPY/ADD source (globs allowed) to the context entries it
// names: none is an error for a plain path, not for a wildcard. A pattern that
// cleans to outside the context is held inside it.
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
		if c.excluded(r) && !c.mayReinclude(r) {
			continue
		}
		// Symlinks resolve inside the context (or the image root of COPY
		// --from), as in docker: the context is all a build may read.
		abs, err := c.realPathInRoot(r)
		if err != nil {
			continue
		}
		realRel := "."
		if abs != c.dir {
			realRel = filepath.ToSlash(strings.TrimPrefix(abs, c.dir+"/"))
		}
		fi, err := c.lstat(abs) // abs has no symlink: a stat, done race-free
		if err != nil {
			continue
		}
		if !fi.IsDir() && c.copyExcluded(path.Base(r)) {
			continue
		}
		if c.excluded(realRel) || c.excluded(r) {
			// Excluded, but a dir whose walk may keep entries that an
			// exception re-includes: a source if it keeps any.
			if !fi.IsDir() || !c.mayReinclude(realRel) || !c.keepsAny(source{rel: r, abs: abs, fi: fi}) {
				continue
			}
		}
		out = append(out, source{rel: r, abs: abs, fi: fi})
	}
	if len(out) == 0 && !strings.ContainsAny(clean, "*?[") {
		return nil, c.errNotFound(pattern)
	}
	// A wildcard may match nothing (COPY package.json yarn.lock* ./), as docker
	// (buildkit) allows.
	return out, nil
}

// keepsAny reports whether walking the dir src keeps any entry below it.
func (c *buildContext) keepsAny(src source) bool {
	errFound := errors.New("found")
	err := c.walk(src, func(rel, _ string, _ fs.FileInfo) error {
		if rel != "." {
			return errFound
		}
		return nil
	})
	return errors.Is(err, errFound)
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

// openBeneath opens abs, a path under c.dir that resolve or walk found
// symlink-free, relative to c.dir with openat2 RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS: a component swapped for a symlink (or a ".." into the
// host) after it was checked fails the open instead of leaving the root. A
// final symlink is opened itself with O_PATH|O_NOFOLLOW.
func (c *buildContext) openBeneath(abs string, flags int) (*os.File, error) {
	rel := "."
	if abs != c.dir {
		if !strings.HasPrefix(abs, c.dir+"/") {
			return nil, fmt.Errorf("%s: outside the source root", abs)
		}
		rel = strings.TrimPrefix(abs, c.dir+"/")
	}
	rfd, err := openRootDir(c.dir)
	if err != nil {
		return nil, err
	}
	defer rfd.Close()
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(rfd.Fd()), rel, how)
	for i := 0; i < 100 && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)); i++ {
		fd, err = unix.Openat2(int(rfd.Fd()), rel, how) // a rename raced the lookup: retry
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: c.shown(abs), Err: err}
	}
	return os.NewFile(uintptr(fd), c.shown(abs)), nil
}

// lstat is os.Lstat of abs, looked up as openBeneath does.
func (c *buildContext) lstat(abs string) (fs.FileInfo, error) {
	f, err := c.openBeneath(abs, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// readlink is os.Readlink of abs, looked up as openBeneath does.
func (c *buildContext) readlink(abs string) (string, error) {
	f, err := c.openBeneath(filepath.Dir(abs), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(int(f.Fd()), filepath.Base(abs), buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: c.shown(abs), Err: err}
	}
	return string(buf[:n]), nil
}

// openFile opens the regular file abs for reading, looked up as openBeneath
// does; anything else (a device, a FIFO, a symlink swapped in) is an error, so
// a source is never a host device's content nor a hang.
func (c *buildContext) openFile(abs string) (*os.File, error) {
	f, err := c.openBeneath(abs, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &os.PathError{Op: "open", Path: c.shown(abs), Err: errors.New("not a regular file")}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// isArchive is isArchive of the source file abs, opened as openFile does.
func (c *buildContext) isArchive(abs string) bool {
	f, err := c.openFile(abs)
	if err != nil {
		return false
	}
	defer f.Close()
	return isArchiveFile(f)
}

// walk calls fn for src and, for a dir, every entry below it that .dockerignore
// keeps, in lexical order; rel is relative to src ("." for src itself). An
// excluded dir is walked when an exception may re-include entries below it, and
// is passed to fn (before them) only if it does, as docker sends it.
func (c *buildContext) walk(src source, fn func(rel, abs string, fi fs.FileInfo) error) error {
	if !src.fi.IsDir() {
		return fn(".", src.abs, src.fi)
	}
	type heldDir struct {
		rel, abs string
		fi       fs.FileInfo
		sent     bool
	}
	var held []*heldDir // excluded ancestors of the current entry, outermost first
	return filepath.WalkDir(src.abs, func(p string, d fs.DirEntry, err error) error {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			return &fs.PathError{Op: pe.Op, Path: c.shown(pe.Path), Err: pe.Err}
		}
		if err != nil {
			return err
		}
		for len(held) > 0 && !strings.HasPrefix(p, held[len(held)-1].abs+"/") {
			held = held[:len(held)-1]
		}
		r, _ := filepath.Rel(src.abs, p)
		r = filepath.ToSlash(r)
		ctxRel, _ := filepath.Rel(c.dir, p)
		ctxRel = filepath.ToSlash(ctxRel)
		fi, err := c.lstat(p)
		if err != nil {
			return err
		}
		if r == "." {
			fi = src.fi
		} else if c.copyExcluded(r) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		} else if c.excluded(ctxRel) {
			if !d.IsDir() {
				return nil
			}
			if !c.mayReinclude(ctxRel) {
				return filepath.SkipDir
			}
			held = append(held, &heldDir{rel: r, abs: p, fi: fi})
			return nil
		}
		for _, h := range held {
			if !h.sent {
				h.sent = true
				if err := fn(h.rel, h.abs, h.fi); err != nil {
					return err
				}
			}
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
				t, err := c.readlink(abs)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, " -> %q", t)
			case fi.Mode()&fs.ModeDevice != 0:
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					fmt.Fprintf(h, " %d", st.Rdev)
				}
			case fi.Mode().IsRegular():
				f, err := c.openFile(abs)
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
