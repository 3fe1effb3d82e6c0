package build

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// ADD unpacks a local archive confined to its destination, as BuildKit's
// chrootarchive.Untar does by chrooting into it: every entry, and every hard
// link's target, is resolved beneath the destination, and a symlink on the
// way (one the archive made, or one already in the image) is followed only
// while it stays inside it. An entry that would land outside fails the ADD,
// naming it (buildah refuses such entries too). A symlink entry itself may
// point anywhere: it is written, never followed while unpacking.

// confinement is the destination an archive is unpacked into.
type confinement struct {
	dest string   // as the copier's targets spell it: clean, absolute
	real string   // in the root, symlink-free
	fd   *os.File // O_PATH, the dir itself
}

// escapeError is an entry (or a hard link's target) that resolves outside the
// destination: by its name ("../x"), or through the symlink link -> target.
type escapeError struct{ link, target string }

func (e *escapeError) Error() string {
	if e.link == "" {
		return "its name leads out of it"
	}
	return fmt.Sprintf("%s is a symlink to %s", e.link, e.target)
}

// confineTo makes the copier's writes under dest, a dir in the root, resolve
// beneath it; the returned func lifts that.
func (cp *copier) confineTo(dest string) (func(), error) {
	dest = path.Clean("/" + dest)
	f, err := openat2InRoot(cp.rfd, dest, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	real, err := cp.inRootPath(int(f.Fd()))
	if err != nil {
		f.Close()
		return nil, err
	}
	prev := cp.confine
	cp.confine = &confinement{dest: dest, real: real, fd: f}
	return func() {
		cp.confine = prev
		f.Close()
	}, nil
}

// inRootPath is the path in the root of the open file fd (symlink-free).
func (cp *copier) inRootPath(fd int) (string, error) {
	if cp.rootReal == "" {
		r, err := os.Readlink(fdPath(cp.rfd))
		if err != nil {
			return "", err
		}
		cp.rootReal = r
	}
	root := cp.rootReal
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", err
	}
	switch {
	case p == root:
		return "/", nil
	case root == "/":
		return p, nil
	case strings.HasPrefix(p, root+"/"):
		return strings.TrimPrefix(p, root), nil
	}
	return "", fmt.Errorf("%s is outside the root %s", p, root)
}

// confined reports the path of target relative to the confining destination,
// if target is below it.
func (cp *copier) confined(target string) (string, bool) {
	if cp.confine == nil {
		return "", false
	}
	target = path.Clean("/" + target)
	if cp.confine.dest == "/" {
		return strings.TrimPrefix(target, "/"), target != "/"
	}
	rel, ok := strings.CutPrefix(target, cp.confine.dest+"/")
	return rel, ok
}

// within reports whether the clean absolute path p is dir or below it.
func within(dir, p string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// confinedParent is parentDir for rel, a clean path below the confining
// destination: its parent dirs are resolved (missing ones created, as
// parentDir does) beneath the destination, and the parent is returned open
// for *at calls with rel's last name.
func (cp *copier) confinedParent(rel string) (*os.File, string, error) {
	c := cp.confine
	dir, base := path.Split(rel)
	if base == "" || base == "." || base == ".." {
		return nil, "", fmt.Errorf("%s: not a name", rel)
	}
	todo := strings.Split(dir, "/")
	var cur []string // symlink-free, beneath the destination
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return nil, "", &escapeError{}
			}
			cur = cur[:len(cur)-1]
			continue
		}
		parent, err := c.open(cur, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return nil, "", err
		}
		pfd := int(parent.Fd())
		var st unix.Stat_t
		err = unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT):
			err = unix.Mkdirat(pfd, name, 0o755)
			if err == nil && (cp.uid >= 0 || cp.gid >= 0) {
				err = unix.Fchownat(pfd, name, cp.uid, cp.gid, unix.AT_SYMLINK_NOFOLLOW)
			}
			if errors.Is(err, unix.EEXIST) {
				// made meanwhile: looked at again
				todo = append([]string{name}, todo...)
				parent.Close()
				continue
			}
			if err != nil {
				parent.Close()
				return nil, "", &os.PathError{Op: "mkdir", Path: path.Join(append(cur, name)...), Err: err}
			}
			cur = append(cur, name)
		case err != nil:
			parent.Close()
			return nil, "", &os.PathError{Op: "stat", Path: path.Join(append(cur, name)...), Err: err}
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			if links++; links > 40 {
				parent.Close()
				return nil, "", &os.PathError{Op: "open", Path: rel, Err: unix.ELOOP}
			}
			t, err := readlinkAt(pfd, name)
			if err != nil {
				parent.Close()
				return nil, "", err
			}
			p := t
			if !path.IsAbs(t) {
				p = path.Join(c.real, path.Join(cur...), t)
			}
			p = path.Clean(p)
			if !within(c.real, p) {
				parent.Close()
				return nil, "", &escapeError{link: path.Join(append(cur, name)...), target: t}
			}
			cur = nil
			todo = append(strings.Split(strings.TrimPrefix(p, c.real), "/"), todo...)
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			cur = append(cur, name)
		default:
			parent.Close()
			return nil, "", &os.PathError{Op: "mkdir", Path: path.Join(append(cur, name)...), Err: unix.ENOTDIR}
		}
		parent.Close()
	}
	f, err := c.open(cur, unix.O_RDONLY|unix.O_DIRECTORY)
	return f, base, err
}

// open opens the symlink-free path cur below the destination with no symlink
// followed and nothing outside it reachable (RESOLVE_BENEATH).
func (c *confinement) open(cur []string, flags int) (*os.File, error) {
	rel := path.Join(cur...)
	if rel == "" {
		rel = "."
	}
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(c.fd.Fd()), rel, how)
	for i := 0; i < 100 && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)); i++ {
		fd, err = unix.Openat2(int(c.fd.Fd()), rel, how)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path.Join(c.dest, rel), Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(c.dest, rel)), nil
}

func readlinkAt(dfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dfd, name, buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: name, Err: err}
	}
	return string(buf[:n]), nil
}
