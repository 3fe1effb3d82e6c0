package build

// COPY --parents (Dockerfile 1.20): each source keeps its path, from the context
// root or from a "/./" pivot in it, under the destination; a pattern may use **
// (any number of dirs). As buildkit: the part after the pivot is an include
// pattern over the pivot dir, a dir it matches is copied whole, and the dirs on
// the way are made with their own mode, owner and times.

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"
)

// parentSource is one entry a --parents pattern matched.
type parentSource struct {
	bc      *buildContext // the source tree, its --exclude relative to the pivot
	src     source        // rel is relative to the context
	destRel string        // its path under the destination (relative to the pivot)
	parents []parentDir   // the dirs between the pivot and it, outermost first
}

// parentDir is a dir --parents recreates on the way to a source.
type parentDir struct {
	destRel string
	fi      fs.FileInfo
}

// resolveParents matches a --parents source pattern ("a/./b/**/*.go").
func (c *buildContext) resolveParents(pattern string) ([]parentSource, error) {
	p := filepath.ToSlash(pattern)
	pivot, pat, ok := strings.Cut(p, "/./")
	if !ok {
		pivot, pat = ".", p
	}
	if strings.ContainsAny(pivot, "*?[") {
		return nil, fmt.Errorf("--parents: wildcards before the /./ of %q are not supported", pattern)
	}
	pat = strings.TrimPrefix(path.Clean("/"+pat), "/")
	if pat == "" {
		pat = "**"
	}
	roots, err := c.resolve(pivot)
	if err != nil {
		return nil, err
	}
	if len(roots) != 1 || !roots[0].fi.IsDir() {
		return nil, fmt.Errorf("--parents: %s is not a directory", pivot)
	}
	root := roots[0]
	if ps, ok := c.plainParent(root, pat); ok {
		return ps, nil
	}
	pm, err := patternmatcher.New([]string{pat})
	if err != nil {
		return nil, fmt.Errorf("bad source pattern %q: %w", pattern, err)
	}
	dirs := map[string]fs.FileInfo{}
	var out []parentSource
	err = c.walk(root, func(rel, abs string, fi fs.FileInfo) error {
		if rel == "." {
			return nil
		}
		if fi.IsDir() {
			dirs[rel] = fi
		}
		m, err := pm.MatchesOrParentMatches(rel)
		if err != nil || !m {
			return nil
		}
		at := *c
		at.copyExclAt = rel
		ps := parentSource{bc: &at, src: source{rel: path.Join(root.rel, rel), abs: abs, fi: fi}, destRel: rel}
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			ps.parents = append([]parentDir{{destRel: d, fi: dirs[d]}}, ps.parents...)
		}
		out = append(out, ps)
		if fi.IsDir() {
			return filepath.SkipDir // copied whole
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 && !strings.ContainsAny(pat, "*?[") {
		return nil, c.errNotFound(pattern)
	}
	return out, nil
}

// plainParent is resolveParents' walk done by lookups, for a path without
// wildcards in a context with nothing excluded (COPY --parents a/go.mod): it
// reports false when the walk has to decide (a symlink or a non-dir on the way,
// or nothing there), which then does.
func (c *buildContext) plainParent(root source, pat string) ([]parentSource, bool) {
	if strings.ContainsAny(pat, "*?[\\") || c.pm != nil || c.copyExcl != nil {
		return nil, false
	}
	ps := parentSource{destRel: pat}
	parts := strings.Split(pat, "/")
	for i := range parts {
		rel := strings.Join(parts[:i+1], "/")
		fi, err := c.lstat(filepath.Join(root.abs, filepath.FromSlash(rel)))
		if err != nil {
			return nil, false
		}
		if i < len(parts)-1 {
			if !fi.IsDir() {
				return nil, false
			}
			ps.parents = append(ps.parents, parentDir{destRel: rel, fi: fi})
			continue
		}
		at := *c
		at.copyExclAt = rel
		ps.bc = &at
		ps.src = source{rel: path.Join(root.rel, rel), abs: filepath.Join(root.abs, filepath.FromSlash(rel)), fi: fi}
	}
	return []parentSource{ps}, true
}

// hashParents is hashSources for --parents sources: where each goes, too.
func (c *buildContext) hashParents(srcs []parentSource) (string, error) {
	var b strings.Builder
	for _, ps := range srcs {
		h, err := ps.bc.hashSources([]source{ps.src})
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%q %s", ps.destRel, h)
		for _, d := range ps.parents {
			if d.fi != nil {
				fmt.Fprintf(&b, " %q %o", d.destRel, d.fi.Mode())
			}
		}
		b.WriteString("\n")
	}
	return digest.FromString(b.String()).Encoded(), nil
}

// copyParents copies --parents sources under dest (a dir).
func (cp *copier) copyParents(srcs []parentSource, dest string) error {
	dest = path.Clean("/" + dest)
	for _, ps := range srcs {
		for _, d := range ps.parents {
			if d.fi == nil {
				return errors.New("--parents: a parent dir was not walked")
			}
			uid, gid := cp.srcOwner(d.fi)
			mode := d.fi.Mode().Perm() | d.fi.Mode()&(fs.ModeSetgid|fs.ModeSticky)
			if err := cp.mkdir(path.Join(dest, d.destRel), mode, d.fi.ModTime(), uid, gid, nil); err != nil {
				return err
			}
		}
		target := path.Join(dest, ps.destRel)
		switch fi := ps.src.fi; {
		case fi.IsDir():
			if err := cp.copyTree(ps.bc, ps.src, target); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := ps.bc.readlink(ps.src.abs)
			if err != nil {
				return err
			}
			uid, gid := cp.srcOwner(fi)
			xs, err := ps.bc.xattrs(ps.src.abs, fi)
			if err != nil {
				return err
			}
			if err := cp.symlink(t, target, fi.ModTime(), uid, gid, xs); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := cp.copySource(ps.bc, ps.src, target, dest, false); err != nil {
				return err
			}
		}
	}
	return cp.finish()
}
