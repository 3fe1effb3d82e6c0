package build

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/cow"
)

// COPY and ADD keep file capabilities (security.capability) and user.*
// xattrs, as buildah's copier does: BuildKit copies every xattr, but only
// security.capability reaches a docker layer (containerd's tar writer), so
// ACLs (system.posix_acl_*: a host uid given rwx in every container),
// SELinux labels and trusted.* of the build host never go into an image.
// layerfs's own and overlay's xattrs (cow.IsPrivateXattr) never go over.

// copiedXattr reports whether COPY and ADD carry the xattr name.
func copiedXattr(name string) bool {
	return name == "security.capability" || strings.HasPrefix(name, "user.") && !cow.IsPrivateXattr(name)
}

// xattrs reads the xattrs of the source entry abs (a symlink's own), looked
// up as openBeneath does, but private ones.
func (c *buildContext) xattrs(abs string, fi fs.FileInfo) (map[string][]byte, error) {
	xs := map[string][]byte{}
	add := func(k string, v []byte) error {
		xs[k] = v
		return nil
	}
	var err error
	if fi.Mode()&fs.ModeSymlink != 0 {
		d, oerr := c.openBeneath(filepath.Dir(abs), unix.O_PATH|unix.O_DIRECTORY)
		if oerr != nil {
			return nil, oerr
		}
		err = cow.EachLinkXattr(int(d.Fd()), filepath.Base(abs), add)
		d.Close()
	} else {
		f, oerr := c.openBeneath(abs, unix.O_PATH|unix.O_NOFOLLOW)
		if oerr != nil {
			return nil, oerr
		}
		err = cow.EachXattr(int(f.Fd()), add)
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("read xattrs of %s: %w", abs, err)
	}
	return xs, nil
}

// tarXattrs is the xattrs h's PAX records carry (SCHILY.xattr.NAME).
func tarXattrs(h *tar.Header) map[string][]byte {
	var xs map[string][]byte
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && name != "" {
			if xs == nil {
				xs = map[string][]byte{}
			}
			xs[name] = []byte(v)
		}
	}
	return xs
}

// setXattrs sets xs on an entry just written (before its mode: unprivileged,
// a user xattr needs write permission) with set, in name order. Private
// xattrs, an empty security.capability (the kernel would then refuse the
// file) and, unprivileged, the rootless owner record (the owner is the
// copier's) are skipped; so is one the filesystem does not take (ENOTSUP) or
// the caller may not set (EPERM), as BuildKit's best effort does.
func (cp *copier) setXattrs(set func(k string, v []byte) error, xs map[string][]byte) error {
	names := make([]string, 0, len(xs))
	for k := range xs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := xs[k]
		switch {
		case !copiedXattr(k), cow.IsPrivateXattr(k),
			k == "security.capability" && len(v) == 0,
			k == cow.RootlessXattr && os.Geteuid() != 0:
			continue
		}
		if err := set(k, v); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setxattr %s: %w", k, err)
		}
	}
	return nil
}
