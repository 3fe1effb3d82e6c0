package build

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths inside a container's root are resolved with openat2(RESOLVE_IN_ROOT): an
// image's symlinks (absolute ones included) and ".." can never lead outside it.

func openRootDir(root string) (*os.File, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	return os.NewFile(uintptr(fd), root), nil
}

// openat2InRoot opens name relative to the root dir rfd, resolving it in that root.
func openat2InRoot(rfd *os.File, name string, flags int) (*os.File, error) {
	return openat2Resolve(rfd, name, flags, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_MAGICLINKS)
}

// openat2Resolve opens name below rfd with openat2's resolve flags.
func openat2Resolve(rfd *os.File, name string, flags int, resolve uint64) (*os.File, error) {
	rel := strings.TrimLeft(path.Clean("/"+name), "/")
	if rel == "" {
		rel = "."
	}
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolve}
	fd, err := unix.Openat2(int(rfd.Fd()), rel, how)
	for i := 0; i < 100 && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)); i++ {
		// A rename anywhere on the system during a ".." lookup makes the
		// kernel ask for a retry (openat2(2)).
		fd, err = unix.Openat2(int(rfd.Fd()), rel, how)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// mkdirAllInRoot creates name and its missing parents (mode 0755, owned by the
// caller) inside root and returns an O_PATH fd of the dir. Symlinks on the way are
// followed inside root, and a dangling one gets its target created, as docker's
// copy does (an image's /var/run -> /run makes /run).
func mkdirAllInRoot(rfd *os.File, name string) (*os.File, error) {
	return mkdirAllInRootOwned(rfd, name, -1, -1)
}

// mkdirAllInRootOwned is mkdirAllInRoot with the dirs it creates owned by uid:gid
// (-1: the caller), as docker gives COPY --chown's and WORKDIR's new dirs.
func mkdirAllInRootOwned(rfd *os.File, name string, uid, gid int) (*os.File, error) {
	todo := strings.Split(path.Clean("/"+name), "/")
	cur := "/" // symlink-free, inside root
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		parent, err := openat2InRoot(rfd, cur, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return nil, err
		}
		pfd := int(parent.Fd())
		var st unix.Stat_t
		err = unix.Fstatat(pfd, c, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT):
			err = unix.Mkdirat(pfd, c, 0o755)
			if err != nil && !errors.Is(err, unix.EEXIST) {
				parent.Close()
				return nil, &os.PathError{Op: "mkdir", Path: path.Join(cur, c), Err: err}
			}
			if err == nil && (uid >= 0 || gid >= 0) {
				if err := unix.Fchownat(pfd, c, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					parent.Close()
					return nil, &os.PathError{Op: "chown", Path: path.Join(cur, c), Err: err}
				}
			}
			cur = path.Join(cur, c)
		case err != nil:
			parent.Close()
			return nil, &os.PathError{Op: "stat", Path: path.Join(cur, c), Err: err}
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			if links++; links > 40 {
				parent.Close()
				return nil, &os.PathError{Op: "mkdir", Path: name, Err: unix.ELOOP}
			}
			buf := make([]byte, unix.PathMax)
			n, err := unix.Readlinkat(pfd, c, buf)
			if err != nil {
				parent.Close()
				return nil, &os.PathError{Op: "readlink", Path: path.Join(cur, c), Err: err}
			}
			target := string(buf[:n])
			if path.IsAbs(target) {
				cur = "/"
			}
			todo = append(strings.Split(target, "/"), todo...)
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			cur = path.Join(cur, c)
		default:
			parent.Close()
			return nil, &os.PathError{Op: "mkdir", Path: path.Join(cur, c), Err: unix.ENOTDIR}
		}
		parent.Close()
	}
	return openat2InRoot(rfd, cur, unix.O_PATH|unix.O_DIRECTORY)
}

// mkfileInRoot makes sure name exists inside root (an empty regular file is
// created if missing, parents too) and returns an O_PATH fd of it.
func mkfileInRoot(rfd *os.File, name string) (*os.File, error) {
	clean := path.Clean("/" + name)
	if f, err := openat2InRoot(rfd, clean, unix.O_PATH); err == nil {
		return f, nil
	}
	dir, err := mkdirAllInRoot(rfd, path.Dir(clean))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	// O_PATH dir fds cannot create: reopen it for real.
	d, err := openat2InRoot(rfd, path.Dir(clean), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat(int(d.Fd()), path.Base(clean), unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	d.Close()
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, &os.PathError{Op: "create", Path: clean, Err: err}
	}
	if err == nil {
		unix.Close(fd)
	}
	return openat2InRoot(rfd, clean, unix.O_PATH)
}

// fdPath is the /proc path of an open fd, for syscalls that take a path (mount(2)
// follows it to exactly the file the fd names).
func fdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

// OpenInRoot opens name inside the root dir root with every symlink and ".."
// resolved inside it (openat2 RESOLVE_IN_ROOT); flags as for open(2) (O_PATH works).
// The caller closes the file.
func OpenInRoot(root, name string, flags int) (*os.File, error) {
	rfd, err := openRootDir(root)
	if err != nil {
		return nil, err
	}
	defer rfd.Close()
	return openat2InRoot(rfd, name, flags)
}
