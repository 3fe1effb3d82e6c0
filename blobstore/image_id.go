package blobstore

import (
	"encoding/json"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// One image per ID.
//
// docker keys its images by config digest (the image ID): the same image loaded
// again with other layer compression (skopeo rewrites it, a save/load through
// another tool may) only moves tags. index.json is keyed by manifest, so:
//
//   - load and WriteImage record the tags of an image whose ID the store lists
//     already, under another manifest whose blobs are all there, on that manifest
//     (sameIDEntries); the new manifest is not recorded, and load takes the blobs
//     only it brought out again;
//   - a store that lists several manifests of one ID (written before this rule, or
//     by pull, which keeps the registry's manifest: see AddManifest) shows them as
//     one image: Images leaves out the entries of an ID that carry no reference
//     (tag or repo digest) when another entry of it does, or after the first when
//     none does, and keeps them with the one listed (Image.others); rmi looks at
//     every entry of the ID (withSameID) and removes them all when it deletes the
//     image, and so does every "does a container use it" (SameIDManifests);
//   - an entry Images hides (no reference, another entry of the ID stays) that no
//     working container was made from is garbage: GC takes it out of index.json
//     and collects its blobs (sameIDLeftovers), as docker keeps nothing extra
//     once the pulled tag of a same-ID image is removed.

// sameIDEntry is where the tags of an image go that index.json lists under another
// manifest: desc is the index.json entry to record them on (a manifest's, or the
// image index's it is listed through), manifest the digest of the image it lists.
type sameIDEntry struct {
	desc     ocispec.Descriptor
	manifest digest.Digest
}

// sameIDEntries finds, for each ID in ids, the entry of idx that lists a whole
// image (manifest, config and layers in the store at their sizes: sizedBlobs) of that ID: a tagged one
// before an untagged one, then the first in index.json. An ID without one is
// left out. It reads each manifest idx lists (see idOf), and the images of
// those IDs whole: its callers ask only about an image whose config the store
// had before and whose own manifest idx does not list.
func (s *Store) sameIDEntries(idx *ocispec.Index, ids map[digest.Digest]bool) map[digest.Digest]sameIDEntry {
	out := map[digest.Digest]sameIDEntry{}
	tagged := map[digest.Digest]bool{}
	for _, e := range idx.Manifests {
		d, id, ok := s.entryImage(e)
		if !ok || !ids[id] || tagged[id] {
			continue
		}
		hasTag := refName(e) != ""
		if _, ok := out[id]; ok && !hasTag {
			continue
		}
		img, err := s.loadImage(d)
		if err != nil || img.ID != id || !s.sizedBlobs(img, d.Size) {
			continue
		}
		out[id] = sameIDEntry{desc: ocispec.Descriptor{MediaType: e.MediaType, Digest: e.Digest, Size: e.Size}, manifest: d.Digest}
		tagged[id] = hasTag
	}
	return out
}

// sizedBlobs reports whether the store has the blobs of img (its manifest,
// manifestSize bytes, config and layers) at the sizes their descriptors give: one
// stat each, which tells a missing or truncated blob, not one damaged in place. A
// reload's tags go to an existing manifest only if it passes: else the load
// records its own, as before one image per ID.
func (s *Store) sizedBlobs(img *Image, manifestSize int64) bool {
	sized := func(d digest.Digest, want int64) bool {
		n, err := s.Size(d)
		return err == nil && n == want
	}
	if !sized(img.ManifestDigest, manifestSize) || !sized(img.Manifest.Config.Digest, img.Manifest.Config.Size) {
		return false
	}
	for _, l := range img.Manifest.Layers {
		if !sized(l.Digest, l.Size) {
			return false
		}
	}
	return true
}

// indexDigests are the digests of the entries index.json lists now; nil if it
// cannot be read (every entry then counts as recorded since).
func (s *Store) indexDigests() map[digest.Digest]bool {
	idx, err := s.readIndex()
	if err != nil {
		return nil
	}
	out := make(map[digest.Digest]bool, len(idx.Manifests))
	for _, e := range idx.Manifests {
		out[e.Digest] = true
	}
	return out
}

// newEntryIDs are the image IDs of the entries of idx that before (indexDigests
// read earlier) does not list: those recorded since. A writer that placed an
// image's config itself knows that no entry named it before (GC takes no blob
// while a Lease is held), so only these can list that ID under another manifest:
// another writer that found the config there and committed first. Reading their
// manifests (usually none) keeps the look-up off every load of a new image.
func (s *Store) newEntryIDs(idx *ocispec.Index, before map[digest.Digest]bool) map[digest.Digest]bool {
	out := map[digest.Digest]bool{}
	for _, e := range idx.Manifests {
		if before[e.Digest] {
			continue
		}
		if _, id, ok := s.entryImage(e); ok {
			out[id] = true
		}
	}
	return out
}

// entryImage is the image manifest index.json entry e lists (itself, or an image
// index's child for this platform) and its image ID; not ok for an entry that
// lists no image (another tool's artifact) or one that does not read.
func (s *Store) entryImage(e ocispec.Descriptor) (d ocispec.Descriptor, id digest.Digest, ok bool) {
	d = e
	if isIndexType(e.MediaType) {
		if d, ok = s.indexChild(e, s.idOnly); !ok {
			return d, "", false
		}
	} else if e.MediaType != "" && !isManifestType(e.MediaType) {
		return d, "", false
	}
	id, err := s.idOf(d.Digest)
	return d, id, err == nil
}

// idOf is the image ID (config digest) manifest md names: from the summary of an
// earlier read (skeleton), else from the manifest blob alone.
func (s *Store) idOf(md digest.Digest) (digest.Digest, error) {
	if v, ok := s.summaries.Load(md); ok {
		return v.(imageSummary).id, nil
	}
	b, err := s.readBlob(md, maxMetaSize)
	if err != nil {
		return "", err
	}
	var m struct {
		Config struct {
			Digest digest.Digest `json:"digest"`
		} `json:"config"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return "", err
	}
	return m.Config.Digest, nil
}

// idOnly is an imageLoader for indexChild that reads only the image's ID (idOf).
func (s *Store) idOnly(d ocispec.Descriptor) (*Image, error) {
	id, err := s.idOf(d.Digest)
	if err != nil {
		return nil, err
	}
	return &Image{ID: id, ManifestDigest: d.Digest}, nil
}

// hasReference reports whether img has a tag or a recorded repo digest.
func hasReference(img *Image) bool { return len(img.Tags) > 0 || len(img.PulledDigests) > 0 }

// foldSameID leaves out of imgs (one per index.json manifest, in index.json
// order) the entries of an ID that Images does not list (see One image per ID),
// keeping them in the others of the first entry of that ID it lists.
func foldSameID(imgs []*Image) []*Image {
	byID := make(map[digest.Digest][]*Image, len(imgs))
	dup := false
	for _, img := range imgs {
		byID[img.ID] = append(byID[img.ID], img)
		dup = dup || len(byID[img.ID]) > 1
	}
	if !dup {
		return imgs
	}
	hidden := map[*Image]bool{}
	for _, same := range byID {
		if len(same) < 2 {
			continue
		}
		var listed, left []*Image
		for _, img := range same {
			if hasReference(img) {
				listed = append(listed, img)
			} else {
				left = append(left, img)
			}
		}
		if len(listed) == 0 {
			listed, left = same[:1], same[1:]
		}
		for _, img := range left {
			hidden[img] = true
		}
		listed[0].others = append(listed[0].others, left...)
	}
	out := imgs[:0]
	for _, img := range imgs {
		if !hidden[img] {
			out = append(out, img)
		}
	}
	return out
}

// withSameID returns img with every other entry of its ID that imgs lists, or
// keeps behind one it lists, as its others, and their tags and repo digests
// added to its own: the image rmi judges and deletes.
func withSameID(imgs []*Image, img *Image) *Image {
	out := *img
	out.others = nil
	seen := map[digest.Digest]bool{img.ManifestDigest: true}
	add := func(o *Image) {
		if seen[o.ManifestDigest] {
			return
		}
		seen[o.ManifestDigest] = true
		out.others = append(out.others, o)
		out.Tags = appendNew(out.Tags, o.Tags...)
		out.PulledDigests = appendNew(out.PulledDigests, o.PulledDigests...)
	}
	out.Tags, out.PulledDigests = slices.Clone(img.Tags), slices.Clone(img.PulledDigests)
	for _, o := range img.others {
		add(o)
	}
	for _, x := range imgs {
		if x.ID != img.ID {
			continue
		}
		add(x)
		for _, o := range x.others {
			add(o)
		}
	}
	slices.Sort(out.Tags)
	slices.Sort(out.PulledDigests)
	return &out
}

func appendNew(l []string, more ...string) []string {
	for _, s := range more {
		if !slices.Contains(l, s) {
			l = append(l, s)
		}
	}
	return l
}

// SameIDManifests are the manifest digests of img and of the other index.json
// entries of its ID that Images keeps with it (see One image per ID): each is a
// manifest a container made from this image may have recorded, so whoever asks
// "does a container use this image" asks about all of them.
func (img *Image) SameIDManifests() []digest.Digest { return img.sameIDManifests() }

// sameIDManifests are the manifest digests of img and of its others.
func (img *Image) sameIDManifests() []digest.Digest {
	out := []digest.Digest{img.ManifestDigest}
	for _, o := range img.others {
		out = append(out, o.ManifestDigest)
	}
	return out
}

// sameIDViews are img and, for each of its others, img as listed through that
// entry (its manifest digest and index): what a working container may have
// recorded of the image.
func (img *Image) sameIDViews() []*Image {
	out := []*Image{img}
	for _, o := range img.others {
		v := *img
		v.ManifestDigest, v.Descriptor, v.Index = o.ManifestDigest, o.Descriptor, o.Index
		out = append(out, &v)
	}
	return out
}

// reloadSameID is reload of img together with the entries of its ID it was
// judged with (img.others): a new withSameID of them as index.json lists them now.
func (s *Store) reloadSameID(img *Image) (*Image, error) {
	want := map[digest.Digest]bool{}
	for _, d := range img.sameIDManifests() {
		want[d] = true
	}
	imgs, broken, err := s.imagesAndBroken(func(d digest.Digest) bool { return want[d] }, s.loadImage)
	if err != nil {
		return nil, err
	}
	p, err := pick(imgs, broken, img.ManifestDigest)
	if err != nil {
		return nil, err
	}
	return withSameID(imgs, p), nil
}
