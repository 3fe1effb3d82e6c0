package mountcmd

// The runtime's mountpoint stubs of a running container (the empty /etc/hosts,
// /etc/resolv.conf, /etc/hostname that run binds over, and /proc, /dev, /sys,
// /etc for an image without them) are made in its upper dir and taken out again
// when the run ends (build.RuntimePaths.Undo). Meanwhile they are not the
// container's changes either, as in docker, where they live in the container's
// init layer: commit and diff leave them out. run saves what it noted in
// runtime-paths.json from its start until its Undo; a run that was killed leaves
// the file, and its stubs stay left out until the next run takes them over.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
	"golang.org/x/sys/unix"
)

func runtimePathsPath(w *workContainer) string {
	return filepath.Join(w.Dir(), "runtime-paths.json")
}

// saveRuntimePaths records the paths a run noted before it starts its command.
func saveRuntimePaths(w *workContainer, r *build.RuntimePaths) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(runtimePathsPath(w), b, 0o600); err != nil {
		return fmt.Errorf("container %s: %w", w.name, err)
	}
	return nil
}

// loadRuntimePaths reads what saveRuntimePaths wrote: nil if no run of w has
// stubs in its upper dir (or the file is unreadable).
func loadRuntimePaths(w *workContainer) *build.RuntimePaths {
	return readJSONFile[build.RuntimePaths](runtimePathsPath(w))
}

// runtimeStubs are the entries of upper (w's upper dir) that are its run's
// mountpoint stubs now, children first; nil when no run left any.
func runtimeStubs(w *workContainer, upper string) []string {
	r := loadRuntimePaths(w)
	if r == nil {
		return nil
	}
	return r.Stubs(upper)
}

// excludeStubs is the cow exclusion of stubs (nil for none).
func excludeStubs(stubs []string) func(rel string) bool {
	if len(stubs) == 0 {
		return nil
	}
	set := make(map[string]bool, len(stubs))
	for _, p := range stubs {
		set[p] = true
	}
	return func(rel string) bool { return set[rel] }
}

// carryStubs copies the stubs (children first) of the upper dir from into the
// fresh upper dir to, with the dirs they are in, each with its mode, owner,
// xattrs and times: commit --rebase leaves them out of the layer that becomes
// the container's lower, but its mounts sit on them until its run's Undo takes
// them out of the upper dir it then has. With the container mounted at mnt
// ("" if not), each copy keeps the identity the mount gives it
// (fs.CarryOrigin): a name that stays the node it was keeps the kernel's
// entry, so the rebase leaves what is mounted on it alone.
func carryStubs(from, to, mnt string, stubs []string) (carried map[string]unix.Stat_t, err error) {
	src, err := unix.Open(from, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("carry the runtime's mountpoints: %w", err)
	}
	defer unix.Close(src)
	dst, err := unix.Open(to, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("carry the runtime's mountpoints: %w", err)
	}
	defer unix.Close(dst)
	stub := make(map[string]bool, len(stubs))
	for _, p := range stubs {
		stub[p] = true
	}
	carried = map[string]unix.Stat_t{}
	mfd := -1
	if mnt != "" {
		if mfd, err = unix.Open(mnt, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			defer unix.Close(mfd)
		}
	}
	done := map[string]bool{}
	for i := len(stubs) - 1; i >= 0; i-- { // parents first
		comps := strings.Split(stubs[i], "/")
		for j := range comps {
			p := strings.Join(comps[:j+1], "/")
			if done[p] {
				continue
			}
			if err := carryEntry(src, dst, mfd, p); err != nil {
				return nil, fmt.Errorf("carry %s: %w", p, err)
			}
			done[p] = true
			if !stub[p] { // a dir committed with a change, carried to hold stubs
				if d, err := beneath(dst, path.Dir(p)); err == nil {
					var st unix.Stat_t
					if unix.Fstatat(d, path.Base(p), &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
						carried[p] = st
					}
					unix.Close(d)
				}
			}
		}
	}
	return carried, nil
}

// beneath opens the dir rel under dirfd, no symlink followed.
func beneath(dirfd int, rel string) (int, error) {
	return unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// carryEntry copies the entry p (relative) of the dir src to the same place in
// dst, whose parent dir it already has; one dst has too stays. mnt is the
// container's mount (-1: none), for the entry's identity.
func carryEntry(src, dst, mnt int, p string) error {
	dir, base := path.Dir(p), path.Base(p)
	sd, err := beneath(src, dir)
	if err != nil {
		return err
	}
	defer unix.Close(sd)
	dd, err := beneath(dst, dir)
	if err != nil {
		return err
	}
	defer unix.Close(dd)
	var st unix.Stat_t
	if err := unix.Fstatat(dd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil
	} else if !errors.Is(err, unix.ENOENT) {
		return err
	}
	o := cow.CopyUpOptions{Work: dst, DataLimit: -1, KeepDirTimes: true}
	if mnt >= 0 {
		if md, err := beneath(mnt, dir); err == nil {
			var ms unix.Stat_t
			if unix.Fstatat(md, base, &ms, unix.AT_SYMLINK_NOFOLLOW) == nil {
				if name, v, err := fs.CarryOrigin(sd, base, ms.Ino); err == nil {
					o.Xattrs = map[string][]byte{name: v}
				}
			}
			unix.Close(md)
		}
	}
	return cow.CopyUp(sd, dd, base, o)
}

// removeRuntimePaths drops the record once its run's Undo ran.
func removeRuntimePaths(w *workContainer) {
	if err := os.Remove(runtimePathsPath(w)); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "WARNING: container %s: %v\n", w.name, err)
	}
}
