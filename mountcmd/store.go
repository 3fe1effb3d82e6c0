package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// workingContainersUsing names the working containers that use img; rmi refuses
// (without -f) to delete an image in use. The mount commands fill it in.
var workingContainersUsing = func(g *globalOptions, img *blobstore.Image) ([]string, error) { return nil, nil }

// workingContainerRoots are the manifest digests working containers use; gc (and
// rmi's blob reclaim) keeps everything they reach. The mount commands fill it in.
var workingContainerRoots = func(g *globalOptions) ([]digest.Digest, error) { return nil, nil }

// workingContainerLayers are the unpacked layer dirs (diffIDs, from <root>/layers)
// working containers stack, whatever became of their images: gc keeps them. The
// mount commands fill it in.
var workingContainerLayers = func(g *globalOptions) (map[digest.Digest]bool, error) { return nil, nil }

// storeDir is the image store of the root (<root>/store).
func storeDir(g *globalOptions) string { return filepath.Join(g.root, "store") }

// openStore opens (creating if needed) the image store under --root.
func openStore(g *globalOptions) (*blobstore.Store, error) {
	if err := checkStoreOwner(storeDir(g)); err != nil {
		return nil, err
	}
	return blobstore.Open(storeDir(g))
}

// checkStoreOwner refuses root a store that a user made without root: its
// unpacked files are that user's, the image's owners kept in
// user.rootlesscontainers xattrs that only an unprivileged run reads, so root
// would show, commit and export every file as that user's.
func checkStoreOwner(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil || st.Uid == 0 {
		return nil
	}
	return fmt.Errorf("store %s belongs to uid %d, who made it without root (its files carry that uid, the images' owners kept in xattrs only an unprivileged layerfs reads): run layerfs as that user, or give root a store of its own with --root", dir, st.Uid)
}

// openLeased opens the store under a lease (blobstore.Store.Lease): no blob it
// holds or writes is collected until release, though an rmi may untag
// meanwhile (its collection waits).
func openLeased(ctx context.Context, g *globalOptions) (s *blobstore.Store, release func(), err error) {
	if s, err = openStore(g); err != nil {
		return nil, nil, err
	}
	if release, err = s.Lease(ctx); err != nil {
		return nil, nil, err
	}
	return s, release, nil
}

// openAndResolve opens the store and resolves the image argument ref; a miss is
// printed as docker does ("Error response from daemon: No such image: X", exit 1).
func openAndResolve(cmd *cobra.Command, g *globalOptions, ref string) (*blobstore.Store, *blobstore.Image, error) {
	s, err := openStore(g)
	if err != nil {
		return nil, nil, err
	}
	img, err := s.Resolve(ref)
	if err != nil {
		return nil, nil, daemonError(cmd, imageErr(ref, err))
	}
	return s, img, nil
}

// resolveListed is blobstore.ResolveIn for verbs that resolve against one listing
// (openImages); for a name it does not find there, the reason Resolve gives when
// index.json does list it but the image cannot be read (Images leaves such entries
// out), so that imageErr can say why instead of "No such image".
func resolveListed(s *blobstore.Store, imgs []*blobstore.Image, ref string) (*blobstore.Image, error) {
	img, err := blobstore.ResolveIn(imgs, ref)
	if !errors.Is(err, blobstore.ErrNotFound) {
		return img, err
	}
	if _, why := s.Resolve(ref); why != nil && (errors.Is(why, blobstore.ErrMissingBlob) || !errors.Is(why, blobstore.ErrNotFound)) {
		return nil, why
	}
	return nil, err
}

// openImages opens the store and lists its images (one reading of index.json for
// verbs that resolve several arguments or show them all).
func openImages(g *globalOptions) (*blobstore.Store, []*blobstore.Image, error) {
	s, err := openStore(g)
	if err != nil {
		return nil, nil, err
	}
	imgs, err := s.Images()
	if err != nil {
		return nil, nil, err
	}
	return s, imgs, nil
}
