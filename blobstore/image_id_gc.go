package blobstore

import (
	"context"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// sameIDLeftovers are the digests of the index.json entries that GC drops: an
// entry of an image ID another entry lists too, with no tag and no repo digest,
// whose manifest (or image index) no root (working container) names. Images
// hides such an entry for good (foldSameID), so nothing else would ever remove it
// or its blobs; it is the same image as the entry that stays. Of an ID whose
// entries all lack references and roots, the first stays. Nothing of an ID goes
// unless an entry that stays is whole (sizedBlobs), and only entries that read as
// images count (not an artifact another tool indexed).
func (s *Store) sameIDLeftovers(idx *ocispec.Index, roots []digest.Digest) map[digest.Digest]bool {
	type entry struct {
		desc   ocispec.Descriptor // the manifest
		digest digest.Digest      // the index.json entry's (manifest or image index)
		ref    bool
	}
	byDigest := map[digest.Digest]*entry{}
	byID := map[digest.Digest][]*entry{}
	var ids []digest.Digest
	for _, e := range idx.Manifests {
		if x := byDigest[e.Digest]; x != nil {
			x.ref = x.ref || named(e)
			continue
		}
		d, id, ok := s.entryImage(e)
		if !ok {
			continue
		}
		x := &entry{desc: ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, digest: e.Digest, ref: named(e)}
		byDigest[e.Digest] = x
		if byID[id] == nil {
			ids = append(ids, id)
		}
		byID[id] = append(byID[id], x)
	}
	out := map[digest.Digest]bool{}
	var meta *registryMeta
	metaRead := false
	isRoot := map[digest.Digest]bool{}
	for _, r := range roots {
		isRoot[r] = true
	}
	for _, id := range ids {
		same := byID[id]
		if len(same) < 2 {
			continue
		}
		if !metaRead {
			meta, _ = s.readRegistryMeta() // damaged: no repo digests, as Images reads it
			metaRead = true
		}
		var keep, drop []*entry
		whole := map[*entry]bool{}
		for _, x := range same {
			img, err := s.loadImage(x.desc)
			if err != nil || img.ID != id {
				continue // not an image, or unreadable: not this rule's to judge
			}
			whole[x] = s.sizedBlobs(img, x.desc.Size)
			if meta != nil && (len(meta.RepoDigests[x.desc.Digest]) > 0 || len(meta.RepoDigests[x.digest]) > 0) {
				x.ref = true
			}
			if x.ref || isRoot[x.digest] || isRoot[x.desc.Digest] {
				keep = append(keep, x)
			} else {
				drop = append(drop, x)
			}
		}
		if len(keep) == 0 && len(drop) > 0 {
			keep, drop = drop[:1], drop[1:]
		}
		kept := false
		for _, x := range keep {
			kept = kept || whole[x]
		}
		if !kept {
			continue
		}
		for _, x := range drop {
			out[x.digest] = true
		}
	}
	return out
}

// dropSameIDLeftovers takes the entries sameIDLeftovers names out of index.json
// (of idx, when dryRun: index.json stays as it is) and returns how many went.
func (s *Store) dropSameIDLeftovers(ctx context.Context, dryRun bool, idx *ocispec.Index, roots []digest.Digest) (int, error) {
	n := 0
	drop := func(idx *ocispec.Index) (bool, error) {
		gone := s.sameIDLeftovers(idx, roots)
		if len(gone) == 0 {
			return false, nil
		}
		kept := idx.Manifests[:0]
		for _, e := range idx.Manifests {
			if gone[e.Digest] {
				n++
				continue
			}
			kept = append(kept, e)
		}
		idx.Manifests = kept
		return true, nil
	}
	if dryRun {
		_, err := drop(idx)
		return n, err
	}
	return n, s.updateIndex(ctx, drop)
}

// named reports whether index.json entry e has a name: any ref.name annotation,
// also one that is no docker reference (an OCI tag such as "Stable" or
// "v1.0+build", which skopeo and umoci write, and Images does not show), or a
// containerd image name. GC drops no named entry: it is another tool's tag.
func named(e ocispec.Descriptor) bool {
	return e.Annotations[ocispec.AnnotationRefName] != "" || e.Annotations[annotationContainerdName] != ""
}
