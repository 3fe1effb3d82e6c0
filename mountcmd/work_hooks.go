package mountcmd

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
)

// The image commands ask the working containers what they use (store.go's hooks):
// rmi refuses to delete an image a container was made from, mounted or not (as
// docker refuses for a stopped container), and gc keeps the blobs they reach.
// Both read state.json without locks: it is only ever replaced whole.
func init() {
	workingContainersUsing = containersUsing
	workingContainerRoots = containerRoots
	workingContainerLayers = containerLayers
}

// containersUsing names the working containers made from img (by manifest, any of
// the manifests the store lists of its ID, or by image ID for a state that has no
// manifest digest): a container made from a same-ID manifest Images does not list
// uses the image all the same.
func containersUsing(g *globalOptions, img *blobstore.Image) ([]string, error) {
	ci, err := loadContainerImages(g)
	if err != nil {
		return nil, err
	}
	return ci.using(img), nil
}

// containerImages is what each working container was made from, read once, for a
// command that asks about many images (system df, image prune): asking
// containersUsing per image read every state.json once per image (100
// containers, 1,000 images: 2.5 s of system df).
type containerImages []containerMadeFrom

type containerMadeFrom struct {
	name         string
	manifest, id digest.Digest
}

func loadContainerImages(g *globalOptions) (containerImages, error) {
	ws, err := listContainers(g.root)
	if err != nil {
		return nil, err
	}
	ci := make(containerImages, 0, len(ws))
	for _, w := range ws {
		st, err := w.load()
		if err != nil {
			// Removed meanwhile, or unreadable: an image it may use can be
			// untagged (rmi, prune), its blobs stay, as gc keeps them while
			// any container's state cannot be read (containerRoots).
			continue
		}
		ci = append(ci, containerMadeFrom{name: w.name, manifest: st.ManifestDigest, id: st.ImageID})
	}
	return ci, nil
}

// using is containersUsing over the containers read.
func (ci containerImages) using(img *blobstore.Image) []string {
	mds := img.SameIDManifests()
	var names []string
	for _, c := range ci {
		if slices.Contains(mds, c.manifest) || c.manifest == "" && c.id == img.ID {
			names = append(names, c.name)
		}
	}
	return names
}

// containerRoots are the manifest digests of every working container's image.
func containerRoots(g *globalOptions) ([]digest.Digest, error) {
	var roots []digest.Digest
	seen := map[digest.Digest]bool{}
	err := eachContainerState(g, func(st *workState) {
		if st.ManifestDigest != "" && !seen[st.ManifestDigest] {
			seen[st.ManifestDigest] = true
			roots = append(roots, st.ManifestDigest)
		}
	})
	return roots, err
}

// eachContainerState calls f with the state of every working container, for gc:
// one it cannot read fails the whole, since gc must not take what it uses.
func eachContainerState(g *globalOptions, f func(st *workState)) error {
	ws, err := listContainers(g.root)
	if err != nil {
		return err
	}
	for _, w := range ws {
		st, err := w.load()
		if errors.Is(err, errNoSuchContainer) {
			continue // removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("%w (remove it with layerfs rm -f %s, or mend its state.json)", err, w.name)
		}
		f(st)
	}
	return nil
}

// mountedContainersUsing names the containers made from img that are mounted now
// (or left a dead mount). Docker refuses even rmi -f for an image a running
// container uses ("unable to delete <id> (cannot be forced) - image is being used
// by running container <id>"); rmi can call this for that hard conflict.
func mountedContainersUsing(g *globalOptions, img *blobstore.Image) ([]string, error) {
	names, err := containersUsing(g, img)
	if err != nil {
		return nil, err
	}
	var mounted []string
	for _, name := range names {
		w, err := newWorkContainer(g.root, name)
		if err != nil {
			continue
		}
		if st, err := w.load(); err == nil && w.status(st) != statusUnmounted {
			mounted = append(mounted, name)
		}
	}
	return mounted, nil
}

// containerIDsOf gives the named containers' short IDs, as docker's conflict
// messages name a container ("... used by stopped container 0a1b2c3d4e5f"); a
// container removed meanwhile keeps its name.
func containerIDsOf(g *globalOptions, names []string) []string {
	ids := make([]string, 0, len(names))
	for _, name := range names {
		id := name
		if w, werr := newWorkContainer(g.root, name); werr == nil {
			if st, lerr := w.load(); lerr == nil && len(st.ID) >= 12 {
				id = st.ID[:12]
			}
		}
		ids = append(ids, id)
	}
	return ids
}

// imageRemoveOptions are rmi's and image prune's hooks into the containers.
func imageRemoveOptions(g *globalOptions) blobstore.RemoveOptions {
	ids := func(users func(*globalOptions, *blobstore.Image) ([]string, error)) func(*blobstore.Image) ([]string, error) {
		return func(img *blobstore.Image) ([]string, error) {
			names, err := users(g, img)
			if err != nil {
				return nil, err
			}
			return containerIDsOf(g, names), nil
		}
	}
	return blobstore.RemoveOptions{InUse: ids(workingContainersUsing), Running: ids(mountedContainersUsing)}
}

// containerLayers are the diffIDs of the unpacked layer dirs every working
// container's state names as its lowers. gc keeps a container's layers through
// its image's manifest (containerRoots); these keep them when that manifest is
// gone: another tool's gc (umoci rm and gc, a skopeo copy over the tag) took the
// image from the store, and the gc that followed removed the layer dirs under a
// live mount, which then showed older layers' files without a word.
func containerLayers(g *globalOptions) (map[digest.Digest]bool, error) {
	keep := map[digest.Digest]bool{}
	err := eachContainerState(g, func(st *workState) {
		for _, l := range st.Lowers {
			if filepath.Base(filepath.Dir(filepath.Clean(l))) != "layers" {
				continue // made by commit --rebase, in the container's dir
			}
			if d := digest.NewDigestFromEncoded(digest.SHA256, filepath.Base(l)); d.Validate() == nil {
				keep[d] = true
			}
		}
	})
	return keep, err
}
