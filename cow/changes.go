package cow

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ChangeKind is the letter `docker diff` prints.
type ChangeKind byte

const (
	ChangeAdd    ChangeKind = 'A' // the path is new
	ChangeModify ChangeKind = 'C' // the path was in the lowers and changed (or a dir with changes below)
	ChangeDelete ChangeKind = 'D' // the path was in the lowers and is gone
)

func (k ChangeKind) String() string { return string(rune(k)) }

// Change is one line of `docker diff`. Path is absolute ("/etc/passwd").
type Change struct {
	Kind ChangeKind
	Path string
}

func (c Change) String() string { return string(rune(c.Kind)) + " " + c.Path }

// Changes lists what the upper dir changes relative to opts.Lowers, as `docker
// diff` does, sorted by path: every entry of the upper dir is A (not in the merged
// lowers) or C (in them; so is every dir with changes below it); every whiteout that
// hides a lower path is D, and the children of a deleted dir are not listed. An
// opaque dir also gives D for each lower child it hides and does not have itself,
// and so does every dir below it that the lowers have too (an opaque dir hides the
// lowers' whole subtree, so a lower "a/b/c" is gone when "a" is opaque and "b" new).
// Without lowers every entry is A.
func Changes(upper string, opts DiffOptions) ([]Change, error) {
	root, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("changes %s: %w", upper, err)
	}
	defer unix.Close(root)
	lw := &lowerView{}
	defer lw.close()
	for _, l := range opts.Lowers {
		fd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("changes: open lower %s: %w", l, err)
		}
		lw.fds = append(lw.fds, fd)
	}
	c := &changer{format: opts.Format, lw: lw, opts: &opts}
	if err := c.walk(root, ".", len(lw.fds) > 0, false); err != nil {
		return nil, err
	}
	sort.Slice(c.out, func(i, j int) bool { return c.out[i].Path < c.out[j].Path })
	// A whiteout inside a hiding dir names a path the dir's listing gives too.
	out := c.out[:0]
	for i, ch := range c.out {
		if i == 0 || ch != c.out[i-1] {
			out = append(out, ch)
		}
	}
	return out, nil
}

type changer struct {
	format Format
	lw     *lowerView
	opts   *DiffOptions
	out    []Change
}

func (c *changer) add(k ChangeKind, p string) { c.out = append(c.out, Change{k, "/" + p}) }

// walk lists the changes below rel. lowerHas says whether the lowers have rel as a
// dir; when they do not, everything below is new and no lookup is needed. hidden
// says that an ancestor of rel is opaque (or replaced a whiteout), so the lowers'
// entries below rel are hidden too.
func (c *changer) walk(dirfd int, rel string, lowerHas, hidden bool) error {
	names, err := readDirNames(dirfd)
	if err != nil {
		return &EntryError{"changes", rel, fmt.Errorf("readdir: %w", err)}
	}
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	for _, name := range names {
		p := joinPath(rel, name)
		if IsReservedName(name) {
			if t, ok := WhiteoutTarget(name); ok && !present[t] && lowerHas {
				if err := c.deleted(joinPath(rel, t)); err != nil {
					return err
				}
			}
			continue
		}
		if c.opts.excluded(p) {
			continue
		}
		var st unix.Stat_t
		if err := lstatAt(dirfd, name, &st); err != nil {
			return &EntryError{"changes", p, fmt.Errorf("lstat: %w", err)}
		}
		if IsWhiteoutDevice(c.format, name, &st) {
			if lowerHas {
				if err := c.deleted(p); err != nil {
					return err
				}
			}
			continue
		}
		inLower, lowerDir := false, false
		if lowerHas {
			if inLower, lowerDir, err = c.lw.lookup(p); err != nil {
				return &EntryError{"changes", p, err}
			}
		}
		if inLower {
			c.add(ChangeModify, p)
		} else {
			c.add(ChangeAdd, p)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		fd, err := openAsOwner(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return &EntryError{"changes", p, err}
		}
		hides := hidden || present[WhiteoutName(name)]
		if !hides && lowerDir {
			hides, err = IsOpaqueDir(fd)
		}
		if err == nil {
			err = c.walk(fd, p, lowerDir, hides)
		}
		if err == nil && lowerDir && hides {
			err = c.hidden(fd, p)
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// deleted records D for p if the lowers have it.
func (c *changer) deleted(p string) error {
	ok, _, err := c.lw.lookup(p)
	if err != nil {
		return &EntryError{"changes", p, err}
	}
	if ok {
		c.add(ChangeDelete, p)
	}
	return nil
}

// hidden records D for every lower child of dir p that the upper dir (open as fd)
// hides and does not have itself: p is opaque, replaced a whiteout, or lies below
// such a dir.
func (c *changer) hidden(fd int, p string) error {
	names, err := c.lw.names(p)
	if err != nil {
		return &EntryError{"changes", p, err}
	}
	for _, n := range names {
		var st unix.Stat_t
		err := lstatAt(fd, n, &st)
		if err == nil && !IsWhiteoutDevice(c.format, n, &st) && !c.opts.excluded(joinPath(p, n)) {
			continue // still there (A/C listed by the walk)
		}
		if err := c.deleted(joinPath(p, n)); err != nil {
			return err
		}
	}
	return nil
}

// lowerView answers lookups in the merged view of lower dirs (top first, both
// whiteout encodings), resolving inside each without following symlinks.
type lowerView struct{ fds []int }

func (lw *lowerView) close() {
	for _, fd := range lw.fds {
		unix.Close(fd)
	}
}

// lookup reports whether p is visible in the merged lowers, and whether it is a dir.
func (lw *lowerView) lookup(p string) (found, isDir bool, err error) {
	comps := strings.Split(p, "/")
	for _, root := range lw.fds {
		found, isDir, stop, err := lookupIn(root, comps)
		if err != nil || found || stop {
			return found, isDir, err
		}
	}
	return false, false, nil
}

// lookupIn looks p (as comps) up in one layer. stop says that the layer hides p from
// the layers below (a whiteout, a non-dir ancestor, an opaque ancestor).
func lookupIn(root int, comps []string) (found, isDir, stop bool, err error) {
	cur, err := unix.Openat(root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, false, false, err
	}
	defer func() { unix.Close(cur) }()
	opaque := false
	for i, c := range comps {
		var st unix.Stat_t
		err := lstatAt(cur, c, &st)
		if err == nil && IsOverlayWhiteout(&st) {
			return false, false, true, nil
		}
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				return false, false, false, err
			}
			var wst unix.Stat_t
			if unix.Fstatat(cur, WhiteoutName(c), &wst, unix.AT_SYMLINK_NOFOLLOW) == nil {
				return false, false, true, nil
			}
			return false, false, opaque, nil
		}
		dir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if i == len(comps)-1 {
			return true, dir, true, nil
		}
		if !dir {
			return false, false, true, nil
		}
		next, err := openAsOwner(cur, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return false, false, false, err
		}
		unix.Close(cur)
		cur = next
		if opq, err := IsOpaqueDir(cur); err != nil {
			return false, false, false, err
		} else if opq {
			opaque = true
		}
	}
	return false, false, false, nil
}

// names lists the candidate child names of dir p across the lowers (a superset of
// the visible ones; callers check each with lookup).
func (lw *lowerView) names(p string) ([]string, error) {
	set := map[string]bool{}
	for _, root := range lw.fds {
		fd, err := openDirIn(root, p, unix.O_RDONLY)
		if err != nil {
			continue
		}
		ns, err := readDirNames(fd)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			if !IsReservedName(n) {
				set[n] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
