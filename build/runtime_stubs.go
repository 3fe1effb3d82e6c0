package build

// The runtime's mountpoint stubs while a container runs: what Undo will take out
// of the upper dir at the end of the run is, until then, left out of the
// container's commit and diff (docker keeps them in the container's init layer).
// Stubs is that test, without removing anything; Undo removes what it gives, so
// the two cannot drift. A RuntimePaths is saved as JSON for the commands that run
// beside the container (its upper dir is not part of it: commit --rebase moves
// the container onto a new one).

import (
	"encoding/json"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Stubs returns the entries of the upper dir upper that are still the
// runtime's mountpoints, as Undo would remove them now: a path the rootfs
// lacked that is an empty regular file or a dir holding only such stubs, and a
// dir that was only copied up to hold them (owner and mode as before the run).
// Paths are relative and slash-separated ("etc/hosts"), children before their
// parents. It changes nothing; the upper dir should not change meanwhile (a
// paused or unmounted container). Nil if upper cannot be opened.
func (r *RuntimePaths) Stubs(upper string) []string {
	// Through fds, no symlink followed: the container may have made any path
	// of the upper dir a symlink to a host path.
	ufd, err := openRootDir(upper)
	if err != nil {
		return nil
	}
	defer ufd.Close()
	stub := map[string]bool{}
	var out []string
	for _, p := range r.childrenFirst() {
		missing := slices.Contains(r.missing, p)
		if !missing && !slices.Contains(r.noUpper, p) {
			continue
		}
		d, st, err := lstatBeneath(ufd, p)
		if err != nil {
			continue
		}
		ok := false
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			ok = missing && st.Size == 0
		case unix.S_IFDIR:
			// A dir the runtime made (0755, root's: mkdirAllInRoot), or one
			// copied up only to hold our files, counts if the container did
			// not change its owner or mode (a chmod of a made /etc was lost).
			b, had := r.before[p]
			made := missing && st.Mode&0o7777 == 0o755 && st.Uid == 0 && st.Gid == 0
			ok = (made || had && b.Mode == st.Mode && b.Uid == st.Uid && b.Gid == st.Gid) &&
				holdsOnly(d, p, stub)
		}
		d.Close()
		if ok {
			stub[p] = true
			out = append(out, p)
		}
	}
	return out
}

// holdsOnly reports whether the dir p, whose parent dir is open as d, has no
// entries but those in stub.
func holdsOnly(d *os.File, p string, stub map[string]bool) bool {
	fd, err := unix.Openat(int(d.Fd()), path.Base(p), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return false
	}
	for _, n := range names {
		if !stub[p+"/"+n] {
			return false
		}
	}
	return true
}

// childrenFirst is r.paths, deepest first (among equals, the later first).
func (r *RuntimePaths) childrenFirst() []string {
	ps := slices.Clone(r.paths)
	slices.Reverse(ps)
	sort.SliceStable(ps, func(i, j int) bool { return strings.Count(ps[i], "/") > strings.Count(ps[j], "/") })
	return ps
}

// UndoIn is Undo on the upper dir upper (not mounted any more): the one the
// container ends on, which after a commit --rebase is not the one it started
// with. Best effort: what it cannot remove stays.
func (r *RuntimePaths) UndoIn(upper string) {
	stubs := r.Stubs(upper)
	if len(stubs) == 0 {
		return
	}
	ufd, err := openRootDir(upper)
	if err != nil {
		return
	}
	defer ufd.Close()
	for _, p := range stubs { // children first
		d, st, err := lstatBeneath(ufd, p)
		if err != nil {
			continue
		}
		flags := 0
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			flags = unix.AT_REMOVEDIR // only if empty
		}
		unix.Unlinkat(int(d.Fd()), path.Base(p), flags)
		d.Close()
	}
}

// Keep takes over the paths an earlier run noted, prev, for a run that starts
// on the upper dir that run left (it was killed before its Undo): its stubs are
// still in the upper dir, so this run sees them in the rootfs, but they are
// still not the container's changes.
func (r *RuntimePaths) Keep(prev *RuntimePaths) {
	if prev == nil {
		return
	}
	for _, p := range prev.paths {
		if !slices.Contains(r.paths, p) {
			r.paths = append(r.paths, p)
		}
		if slices.Contains(prev.missing, p) {
			r.missing = appendNew(r.missing, p)
			r.noUpper = slices.DeleteFunc(r.noUpper, func(q string) bool { return q == p })
			delete(r.before, p)
			continue
		}
		if b, ok := prev.before[p]; ok && slices.Contains(prev.noUpper, p) {
			r.noUpper = appendNew(r.noUpper, p)
			r.before[p] = b
		}
	}
}

// Rebased records that a commit --rebase made the dirs in dirs part of the
// container's layers (a change in them was committed: a file added, a chmod)
// and carried them into the new upper dir only to hold the stubs in them,
// with the mode and owner given: from then on they count as stubs while they
// keep those (as a dir copied up to hold the stubs does), and Undo takes them
// out with the stubs. Without this a chmod'ed /etc the runtime made showed as
// changed after every rebase (found by a review).
func (r *RuntimePaths) Rebased(dirs map[string]unix.Stat_t) {
	for p, st := range dirs {
		if !slices.Contains(r.paths, p) {
			continue
		}
		r.missing = slices.DeleteFunc(r.missing, func(q string) bool { return q == p })
		r.noUpper = appendNew(r.noUpper, p)
		r.before[p] = st
	}
}

func appendNew(list []string, p string) []string {
	if slices.Contains(list, p) {
		return list
	}
	return append(list, p)
}

// runtimePathsJSON is the saved form of a RuntimePaths.
type runtimePathsJSON struct {
	Paths   []string             `json:"paths"`
	Missing []string             `json:"missing,omitempty"`
	NoUpper []string             `json:"noUpper,omitempty"`
	Before  map[string]ownerMode `json:"before,omitempty"`
}

// ownerMode is what Stubs compares of a copied-up dir.
type ownerMode struct {
	Mode uint32 `json:"mode"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
}

// MarshalJSON saves the noted paths, without the upper dir.
func (r *RuntimePaths) MarshalJSON() ([]byte, error) {
	j := runtimePathsJSON{Paths: r.paths, Missing: r.missing, NoUpper: r.noUpper}
	if len(r.before) > 0 {
		j.Before = make(map[string]ownerMode, len(r.before))
		for p, st := range r.before {
			j.Before[p] = ownerMode{Mode: uint32(st.Mode), UID: st.Uid, GID: st.Gid}
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON saved; the result has no upper dir (use
// Stubs and UndoIn with the container's). Paths that are not clean and relative
// are dropped.
func (r *RuntimePaths) UnmarshalJSON(b []byte) error {
	var j runtimePathsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	clean := func(ps []string) []string {
		return slices.DeleteFunc(slices.Clone(ps), func(p string) bool {
			return p == "" || p == "." || path.Clean(p) != p || strings.HasPrefix(p, "/") || p == ".." || strings.HasPrefix(p, "../")
		})
	}
	*r = RuntimePaths{paths: clean(j.Paths), missing: clean(j.Missing), noUpper: clean(j.NoUpper), before: map[string]unix.Stat_t{}}
	for p, om := range j.Before {
		var st unix.Stat_t
		st.Mode, st.Uid, st.Gid = om.Mode, om.UID, om.GID
		r.before[p] = st
	}
	return nil
}
