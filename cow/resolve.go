package cow

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Path resolution inside a root directory. Every path cow touches below a layer,
// upper or target dir is resolved relative to a directory fd without following
// symlinks, so nothing in a layer can make cow read or write outside it.

// noOpenat2 is set once openat2 is found missing (kernels before 5.6).
var noOpenat2 atomic.Bool

// openDirIn opens the directory rel (a clean relative path, "." for root itself)
// below the directory open as root, refusing symlinks anywhere on the way. flags is
// added to O_DIRECTORY|O_CLOEXEC (O_PATH to only walk, O_RDONLY to read or change
// metadata).
func openDirIn(root int, rel string, flags int) (int, error) {
	if rel == "" || rel == "." {
		return unix.Openat(root, ".", flags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if !noOpenat2.Load() {
		fd, err := unix.Openat2(root, rel, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW),
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil || !errors.Is(err, unix.ENOSYS) {
			// A concurrent rename raced the lookup (EAGAIN), or the path is longer
			// than PATH_MAX, as a layer's may be (ENAMETOOLONG): walk instead.
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENAMETOOLONG) {
				return walkDirIn(root, rel, flags)
			}
			return fd, err
		}
		noOpenat2.Store(true)
	}
	return walkDirIn(root, rel, flags)
}

// walkDirIn is openDirIn without openat2: one O_NOFOLLOW open per component.
func walkDirIn(root int, rel string, flags int) (int, error) {
	fd, err := unix.Openat(root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		if c == ".." || c == "" || c == "." {
			unix.Close(fd)
			return -1, unix.EXDEV
		}
		fl := unix.O_PATH
		if i == len(comps)-1 {
			fl = flags
		}
		next, err := unix.Openat(fd, c, fl|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ELOOP) {
				err = unix.ENOTDIR
			}
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// splitPath splits a clean relative path into its parent ("." at the top) and name.
func splitPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

// joinPath joins a clean relative dir ("." for the top) and a name.
func joinPath(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// removeAllAt removes name (any type, directories recursively) from the directory
// open as dirfd, never following symlinks. A missing name is not an error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		// Unprivileged and the dir is not readable: give ourselves access first.
		if unix.Fchmodat(dirfd, name, 0o700, 0) == nil {
			fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		unix.Fchmod(fd, 0o700) // so we can unlink children; best effort
	}
	f := os.NewFile(uintptr(fd), name)
	for {
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				f.Close()
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	f.Close()
	err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// RemoveAll removes path and everything below it, also unprivileged directories
// that were made read-only (mode 0555 dirs in unpacked layers).
func RemoveAll(path string) error {
	dir, name := splitPath(strings.TrimRight(path, "/"))
	if strings.HasPrefix(path, "/") && dir == "" {
		dir = "/"
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	defer unix.Close(dfd)
	if err := removeAllAt(dfd, name); err != nil {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	return nil
}
