package blobstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Reading the images of a store costs one read, hash and parse of each manifest and
// config. Commands that need one image (load's result, rmi after an untag) build
// only that one from a fresh read of index.json (reload); rmi's looks at the whole
// store (resolving its argument, the child-image rule) read index.json afresh each
// time but take each image's ID, parent and creation time from a summary the Store
// keeps of every image it has read (skeleton), so a command that removes many
// images reads each manifest and config about once.

// imageLoader reads the image of a manifest descriptor: loadImage, or skeleton for
// rmi's scans.
type imageLoader func(ocispec.Descriptor) (*Image, error)

// imagesAndBroken is ImagesAndBroken restricted to the images whose manifest digest
// want accepts (nil: all), each read with load. Only index.json is read for the
// others (and the image indexes it lists, to find their manifest).
func (s *Store) imagesAndBroken(want func(digest.Digest) bool, load imageLoader) ([]*Image, []BrokenImage, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, nil, err
	}
	if imagesHook != nil {
		imagesHook()
	}
	imgs, broken := s.imagesOf(idx, want, load)
	if len(broken) > 0 {
		broken = s.stillListed(broken)
	}
	return imgs, broken, nil
}

// imagesOf builds the images idx lists (see Images) whose manifest digest want
// accepts (nil: all, one per ID as Images lists them; else one per manifest),
// read with load.
func (s *Store) imagesOf(idx *ocispec.Index, want func(digest.Digest) bool, load imageLoader) ([]*Image, []BrokenImage) {
	byDigest := map[digest.Digest]*Image{}
	var out []*Image
	var broken []BrokenImage
	bad := map[digest.Digest]error{}
	owner := map[string]*Image{} // the image each tag is on
	for _, d := range idx.Manifests {
		var via digest.Digest
		entry := d.Digest
		if isIndexType(d.MediaType) {
			child, ok := s.indexChild(d, load)
			if !ok {
				continue
			}
			d, via = ocispec.Descriptor{MediaType: child.MediaType, Digest: child.Digest, Size: child.Size, Annotations: d.Annotations}, d.Digest
		} else if d.MediaType != "" && !isManifestType(d.MediaType) {
			continue
		}
		if want != nil && !want(d.Digest) {
			continue
		}
		img := byDigest[d.Digest]
		if img == nil {
			err, seen := bad[d.Digest]
			if !seen {
				img, err = load(d)
			}
			if errors.Is(err, ErrUnknownMediaType) {
				// An artifact another tool indexed (signature, SBOM...), not
				// an image: one with a tag is noted, so that `run chart:1`
				// says what chart:1 is instead of looking for it in a
				// registry.
				if r := refName(d); r != "" {
					broken = append(broken, BrokenImage{Digest: d.Digest, Tag: r, Err: fmt.Errorf("not a container image: %w", err), Artifact: true, entry: entry})
				}
				continue
			}
			if err != nil {
				bad[d.Digest] = err
				broken = append(broken, BrokenImage{Digest: d.Digest, ID: s.brokenID(d.Digest), Tag: refName(d), Err: err, entry: entry})
				continue
			}
			byDigest[d.Digest] = img
			out = append(out, img)
		}
		if via != "" && img.Index == "" {
			img.Index = via
		}
		if r := refName(d); r != "" {
			// Two entries of one tag (skopeo copied "foo:1" over the
			// "docker.io/library/foo:1" layerfs wrote): the last one
			// written, the later in index.json, has it, as a docker load
			// moves a tag to the image it loads.
			if o := owner[r]; o != nil && o != img {
				o.Tags = slices.DeleteFunc(o.Tags, func(t string) bool { return t == r })
			}
			owner[r] = img
			if !contains(img.Tags, r) {
				img.Tags = append(img.Tags, r)
			}
		} else if named(d) {
			for _, n := range []string{d.Annotations[ocispec.AnnotationRefName], d.Annotations[annotationContainerdName]} {
				if n != "" && !contains(img.OtherNames, n) {
					img.OtherNames = append(img.OtherNames, n)
				}
			}
		}
	}
	if len(out) == 0 {
		return out, broken
	}
	// Recorded repo digests: a damaged registry.json hides them, not the images.
	meta, _ := s.readRegistryMeta()
	for _, img := range out {
		sort.Strings(img.Tags)
		if meta != nil {
			img.PulledDigests = slices.Clone(meta.RepoDigests[img.ManifestDigest])
		}
	}
	if want == nil {
		out = foldSameID(out) // a filtered read lists what it asks for
	}
	sort.SliceStable(out, func(i, j int) bool {
		ci, cj := out[i].Created(), out[j].Created()
		if !ci.Equal(cj) {
			return ci.After(cj)
		}
		return out[i].ID < out[j].ID
	})
	return out, broken
}

// indexChild picks the manifest of the image index d that Images lists (see
// there), checking candidates with load: false if the store has none of them.
func (s *Store) indexChild(d ocispec.Descriptor, load imageLoader) (ocispec.Descriptor, bool) {
	b, err := s.readBlob(d.Digest, maxMetaSize)
	if err != nil {
		return ocispec.Descriptor{}, false
	}
	var ix ocispec.Index
	if json.Unmarshal(b, &ix) != nil {
		return ocispec.Descriptor{}, false
	}
	var first *ocispec.Descriptor
	for i, m := range ix.Manifests {
		if !isManifestType(m.MediaType) || !s.Has(m.Digest) {
			continue
		}
		if _, err := load(m); err != nil {
			continue
		}
		if p := m.Platform; p != nil && p.OS == "linux" && p.Architecture == runtime.GOARCH {
			return m, true
		}
		if first == nil {
			first = &ix.Manifests[i]
		}
	}
	if first == nil {
		return ocispec.Descriptor{}, false
	}
	return *first, true
}

// reload is the image whose manifest is md as index.json lists it now (its tags,
// Index, repo digests), reading no other image's blobs. ErrNotFound if index.json
// does not list it; an entry that cannot be read gives its reason.
func (s *Store) reload(md digest.Digest) (*Image, error) {
	imgs, broken, err := s.imagesAndBroken(func(d digest.Digest) bool { return d == md }, s.loadImage)
	if err != nil {
		return nil, err
	}
	return pick(imgs, broken, md)
}

// pick finds md among what imagesAndBroken returned, as reload reports it.
func pick(imgs []*Image, broken []BrokenImage, md digest.Digest) (*Image, error) {
	for _, img := range imgs {
		if img.ManifestDigest == md {
			return img, nil
		}
	}
	for _, b := range broken {
		if b.Digest == md {
			return nil, b.Err
		}
	}
	return nil, fmt.Errorf("image %s: %w", md, ErrNotFound)
}

// scanImages is ImagesAndBroken for rmi's looks at the whole store: the images are
// skeletons (see skeleton), to resolve a reference against and to find children
// by, never handed out; fill makes a whole image of one.
func (s *Store) scanImages() ([]*Image, []BrokenImage, error) {
	return s.imagesAndBroken(nil, s.skeleton)
}

// fill reads the whole image of a skeleton from its blobs, keeping its tags, Index,
// repo digests and others (as index.json listed them when the skeleton was made).
func (s *Store) fill(sk *Image) (*Image, error) {
	img, err := s.loadImage(sk.Descriptor)
	if err != nil {
		return nil, err
	}
	img.Tags, img.Index, img.PulledDigests, img.others = sk.Tags, sk.Index, sk.PulledDigests, sk.others
	return img, nil
}

// imageSummary is what a skeleton holds of an image: all of it follows from the
// manifest's digest (the manifest names the config by digest), so it stays true
// while the Store lives, whatever happens to the blobs.
type imageSummary struct {
	id, parent digest.Digest
	mediaType  string // the manifest's own
	created    *time.Time
}

// skeleton is loadImage for rmi's scans, from the summary of an earlier read when
// there is one (loadImage keeps one of each image it reads). Only ID,
// ManifestDigest, Descriptor, Parent and Config.Created are set: enough to resolve
// references, order images and find children. It does not look at the blobs
// again: an image whose blobs were deleted or damaged since (by hand; GC takes
// only unlisted images) still lists as a skeleton, so whoever acts on one reads
// it first (fill, hasChildren).
func (s *Store) skeleton(desc ocispec.Descriptor) (*Image, error) {
	if v, ok := s.summaries.Load(desc.Digest); ok {
		return v.(imageSummary).image(desc), nil
	}
	if _, err := s.loadImage(desc); err != nil {
		return nil, err
	}
	v, _ := s.summaries.Load(desc.Digest)
	return v.(imageSummary).image(desc), nil
}

func (sum imageSummary) image(desc ocispec.Descriptor) *Image {
	plain := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	if plain.MediaType == "" {
		plain.MediaType = sum.mediaType
	}
	img := &Image{ID: sum.id, ManifestDigest: desc.Digest, Descriptor: plain, Parent: sum.parent}
	if sum.created != nil {
		c := *sum.created
		img.Config.Created = &c
	}
	return img
}

// hasChildren reports whether img has a child among skeletons whose blobs still
// read: a child Images would list.
func (s *Store) hasChildren(skeletons []*Image, img *Image) bool {
	for _, c := range Children(skeletons, img) {
		if _, err := s.loadImage(c.Descriptor); err == nil {
			return true
		}
	}
	return false
}
