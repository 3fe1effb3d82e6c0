package mountcmd

import (
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
}

// containersUsing names the working containers made from img (by manifest, or by
// image ID for a state that has no manifest digest).
func containersUsing(g *globalOptions, img *blobstore.Image) ([]string, error) {
	ws, err := listContainers(g.root)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, w := range ws {
		st, err := w.load()
		if err != nil {
			continue // removed meanwhile
		}
		if st.ManifestDigest == img.ManifestDigest || st.ManifestDigest == "" && st.ImageID == img.ID {
			names = append(names, w.name)
		}
	}
	return names, nil
}

// containerRoots are the manifest digests of every working container's image.
func containerRoots(g *globalOptions) ([]digest.Digest, error) {
	ws, err := listContainers(g.root)
	if err != nil {
		return nil, err
	}
	var roots []digest.Digest
	seen := map[digest.Digest]bool{}
	for _, w := range ws {
		st, err := w.load()
		if err != nil || st.ManifestDigest == "" || seen[st.ManifestDigest] {
			continue
		}
		seen[st.ManifestDigest] = true
		roots = append(roots, st.ManifestDigest)
	}
	return roots, nil
}
