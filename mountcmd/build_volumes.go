package mountcmd

// Anonymous volumes for run (the build team's; apart from run.go for size).

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
)

// imageVolumes gives each VOLUME of the image that no -v covers an anonymous
// volume, as docker does: a dir of the container (work/<name>/volumes/<hash>),
// filled on creation with what the image has at that path, bound there. What the
// container writes in it is not in its upper dir, so diff and commit leave it out;
// rm (and --rm) delete it with the container.
func imageVolumes(w *workContainer, img *blobstore.Image, rootfs string, binds []build.Bind, anon ...string) ([]build.Bind, error) {
	paths := append([]string(nil), anon...) // run's -v CONTAINER: made as a VOLUME
	for v := range img.Config.Config.Volumes {
		paths = append(paths, filepath.Clean("/"+v))
	}
	sort.Strings(paths)
	paths = slices.Compact(paths)
	var out []build.Bind
next:
	for _, p := range paths {
		for _, b := range binds {
			if filepath.Clean(b.Target) == p {
				continue next
			}
		}
		dir := volumeDir(w, p)
		if _, err := os.Stat(dir); err != nil {
			if err := fillVolume(dir, rootfs, p); err != nil {
				return nil, fmt.Errorf("volume %s: %w", p, err)
			}
		}
		out = append(out, build.Bind{Source: dir, Target: p})
	}
	return out, nil
}

// volumeDir is where the container keeps the image's VOLUME p.
func volumeDir(w *workContainer, p string) string {
	h := sha256.Sum256([]byte(p))
	return filepath.Join(w.Dir(), "volumes", hex.EncodeToString(h[:8]))
}

// fillVolume makes dir a copy of the image's path (resolved inside rootfs; empty if
// the image has none) with cp -a, through a temp dir renamed into place.
func fillVolume(dir, rootfs, p string) error {
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	src, err := build.OpenInRoot(rootfs, p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil {
		cmd := exec.Command("cp", "-a", "/proc/self/fd/3/.", tmp)
		cmd.ExtraFiles = []*os.File{src}
		out, err := cmd.CombinedOutput()
		src.Close()
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("copy the image's content: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return os.Rename(tmp, dir)
}
