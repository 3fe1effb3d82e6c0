package mountcmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// A command run against a --root that does not exist creates it (blobstore.Open
// makes an empty layout). When the command then fails, or stores nothing (images,
// inspect, gc of a root that was not there), the root it made is removed again:
// bad input leaves no store behind where there was none. Only a root this command
// created is removed, and only while it holds nothing but the empty layout.

// guardFreshRoot wraps the RunE of cmd and of every command below it: when g's
// root did not exist before the command ran and holds only an empty store
// layout afterwards, it is removed.
func guardFreshRoot(cmd *cobra.Command, g *globalOptions) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			missing := rootMissing(g.root)
			err := run(cmd, args)
			if missing {
				removeFreshRoot(g.root)
			}
			return err
		}
	}
	for _, c := range cmd.Commands() {
		guardFreshRoot(c, g)
	}
}

// rootMissing reports whether root does not exist (not even as a dangling link).
func rootMissing(root string) bool {
	_, err := os.Lstat(root)
	return errors.Is(err, fs.ErrNotExist)
}

// removeFreshRoot removes root if it holds an empty store layout and nothing
// else: directories, and no file but the layout's own (oci-layout, an index.json
// without manifests, the store's empty lock files). It holds the store's GC lock
// exclusively meanwhile, and leaves root alone if another process holds a lease
// (a load or pull writing into the store it just found). Best effort: any doubt
// keeps root.
func removeFreshRoot(root string) {
	f, err := os.Open(filepath.Join(root, "store", ".layerfs", "gc.lock"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && onlyEmptyDirs(root) {
			os.RemoveAll(root) // nothing of a store at all (a failed mkdir midway)
		}
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return
	}
	if isEmptyLayout(root) {
		os.RemoveAll(root)
	}
}

// onlyEmptyDirs reports whether root holds directories and nothing else.
func onlyEmptyDirs(root string) bool {
	ok := true
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			ok = false
			return filepath.SkipAll
		}
		return nil
	})
	return err == nil && ok
}

// isEmptyLayout reports whether root holds only directories and the files of
// an empty store layout.
func isEmptyLayout(root string) bool {
	ok := true
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			ok = false
			return filepath.SkipAll
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || !d.Type().IsRegular() || !isLayoutFile(p, rel) {
			ok = false
			return filepath.SkipAll
		}
		return nil
	})
	return err == nil && ok
}

// isLayoutFile reports whether the regular file p, at rel in the root, is one of
// an empty layout's files, as blobstore.Open writes them.
func isLayoutFile(p, rel string) bool {
	switch rel {
	case "store/.layerfs/gc.lock", "store/.layerfs/index.lock":
		fi, err := os.Stat(p)
		return err == nil && fi.Size() == 0
	case "store/" + ocispec.ImageLayoutFile:
		b, err := os.ReadFile(p)
		var l ocispec.ImageLayout
		return err == nil && len(b) < 1024 && json.Unmarshal(b, &l) == nil
	case "store/" + ocispec.ImageIndexFile:
		b, err := os.ReadFile(p)
		var idx ocispec.Index
		return err == nil && len(b) < 1024 && json.Unmarshal(bytes.TrimSpace(b), &idx) == nil &&
			len(idx.Manifests) == 0
	}
	return false
}
