package build

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// COPY --link copies onto an empty layer that is then put on the image, so
// it cannot see, nor follow, a symlink of the image on the destination path:
// in the image the path is made of dirs (the Dockerfile reference's
// "Incompatibilities with --link=false"). layerfs copies into the image's
// mount as for a plain COPY, but resolves every path as that layer would: a
// symlink, or any other non-dir, where a dir is needed is replaced by a dir.

// linkParent is parentDir for COPY --link: target's parent dirs are made
// dirs (missing ones created, non-dirs replaced, both 0755 and owned as
// parentDir's) and the parent is returned open for *at calls with target's
// last name.
func (cp *copier) linkParent(target string) (*os.File, string, error) {
	dir, base := path.Split(path.Clean("/" + target))
	if base == "" {
		return nil, "", fmt.Errorf("copy to /: not a file")
	}
	cur := "/"
	for _, name := range strings.Split(dir, "/") {
		if name == "" {
			continue
		}
		parent, err := openNoSymlinks(cp.rfd, cur, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return nil, "", err
		}
		err = cp.linkDir(int(parent.Fd()), name)
		parent.Close()
		if err != nil {
			return nil, "", &os.PathError{Op: "mkdir", Path: path.Join(cur, name), Err: err}
		}
		cur = path.Join(cur, name)
	}
	f, err := openNoSymlinks(cp.rfd, cur, unix.O_RDONLY|unix.O_DIRECTORY)
	return f, base, err
}

// linkDir makes name in the dir pfd a dir: kept if it is one, else made,
// in place of what is there.
func (cp *copier) linkDir(pfd int, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return nil
	case err == nil:
		if err := unix.Unlinkat(pfd, name, 0); err != nil {
			return err
		}
	case !errors.Is(err, unix.ENOENT):
		return err
	}
	if err := unix.Mkdirat(pfd, name, 0o755); err != nil {
		return err
	}
	if cp.uid < 0 && cp.gid < 0 {
		return nil // the caller's, as mkdirAllInRootOwned leaves it
	}
	return unix.Fchownat(pfd, name, cp.uid, cp.gid, unix.AT_SYMLINK_NOFOLLOW)
}

// openNoSymlinks opens name in the root dir rfd with no symlink followed on
// the way (RESOLVE_NO_SYMLINKS): a path --link made of dirs.
func openNoSymlinks(rfd *os.File, name string, flags int) (*os.File, error) {
	return openat2Resolve(rfd, name, flags, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_SYMLINKS|unix.RESOLVE_NO_MAGICLINKS)
}
