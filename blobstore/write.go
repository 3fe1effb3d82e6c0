package blobstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteOption sets optional parts of what WriteImage writes: manifest fields, tags.
type WriteOption func(*writeSettings)

type writeSettings struct {
	manifest *ocispec.Manifest
	tags     []string
}

// WithParent records parent's manifest digest as the base image (docker's Parent,
// used by rmi's child-image rule).
func WithParent(parent *Image) WriteOption {
	return func(w *writeSettings) {
		if parent == nil {
			return
		}
		m := w.manifest
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[AnnotationBaseDigest] = parent.ManifestDigest.String()
	}
}

// WithAnnotations adds manifest annotations.
func WithAnnotations(a map[string]string) WriteOption {
	return func(w *writeSettings) {
		if len(a) == 0 {
			return
		}
		m := w.manifest
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		for k, v := range a {
			m.Annotations[k] = v
		}
	}
}

// WithTags tags the image with refs (as Tag does) in the same index.json update
// that records it, so a write that fails (a full disk) leaves neither the image nor
// a tag behind; without it the image is recorded untagged. A ref that does not
// parse fails the write before anything is stored.
func WithTags(refs ...string) WriteOption {
	return func(w *writeSettings) { w.tags = append(w.tags, refs...) }
}

// WriteImage writes cfg (JSON-encoded as given) and an OCI manifest naming it and
// layers (already in the store), and records the manifest in index.json, untagged
// unless it is there already or WithTags gives it tags. cfg.RootFS.DiffIDs must match layers one to one.
// Idempotent: the same input gives the same digests and one index entry. A config
// the store lists already under another manifest (other layer compression, other
// annotations) is not recorded again: the tags go to that image, which is
// returned (see One image per ID in image_id.go).
func (s *Store) WriteImage(ctx context.Context, cfg ocispec.Image, layers []ocispec.Descriptor, opts ...WriteOption) (*Image, error) {
	if cfg.RootFS.Type == "" {
		cfg.RootFS.Type = "layers"
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	return s.WriteImageRaw(ctx, cb, layers, opts...)
}

// WriteImageRaw is WriteImage with the config given as its JSON bytes (for fields
// ocispec.Image lacks, such as docker's "comment"). The bytes must parse as an
// image config whose diff_ids match layers.
func (s *Store) WriteImageRaw(ctx context.Context, rawConfig []byte, layers []ocispec.Descriptor, opts ...WriteOption) (*Image, error) {
	if _, err := ParseConfig(rawConfig, digest.FromBytes(rawConfig), len(layers)); err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	for _, l := range layers {
		if !s.Has(l.Digest) {
			return nil, fmt.Errorf("write image: layer %s: %w", l.Digest, ErrMissingBlob)
		}
	}
	var m ocispec.Manifest
	ws := writeSettings{manifest: &m}
	for _, o := range opts {
		o(&ws)
	}
	if _, err := parseTags(ws.tags); err != nil {
		return nil, err
	}
	release, err := s.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	// A config new to the store is no image's yet: only an entry recorded since
	// (by a writer of the same config) can list its ID. before is read first, so
	// that such an entry is not in it.
	check := &sameIDCheck{before: s.indexDigests()}
	check.known = s.Has(digest.FromBytes(rawConfig))
	cd, cs, err := s.Put(ctx, bytes.NewReader(rawConfig), "")
	if err != nil {
		return nil, fmt.Errorf("write image config: %w", err)
	}
	m.MediaType = ocispec.MediaTypeImageManifest
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: cs}
	m.Layers = layers
	m.SchemaVersion = 2
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	md, ms, err := s.Put(ctx, bytes.NewReader(mb), "")
	if err != nil {
		return nil, fmt.Errorf("write image manifest: %w", err)
	}
	return s.addManifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: ms}, check, ws.tags...)
}

// AddManifest records a manifest already in the store (with its config and layers)
// in index.json with the given tags, or untagged if tags is empty and it is not
// there yet. A tag that named another image moves (that image keeps an untagged
// entry if it has no tag left). Returns the image as recorded.
//
// Unlike load and WriteImage, it records the manifest even when the store lists
// its image ID under another one (see One image per ID in image_id.go): pull
// records the registry's manifest, tells "up to date" by it and files the repo
// digest under it.
func (s *Store) AddManifest(ctx context.Context, desc ocispec.Descriptor, tags ...string) (*Image, error) {
	return s.addManifest(ctx, desc, nil, tags...)
}

// sameIDCheck is when WriteImage looks for another manifest of its image's ID:
// always if the config was in the store before it wrote it (known), else only if
// an entry recorded since before (indexDigests) lists the ID (newEntryIDs).
type sameIDCheck struct {
	known  bool
	before map[digest.Digest]bool
}

// addManifest is AddManifest; with sameID (WriteImage), the tags of a manifest
// index.json does not list go to the entry that lists the image's ID under
// another manifest, if there is one, as index.json says under its lock.
func (s *Store) addManifest(ctx context.Context, desc ocispec.Descriptor, sameID *sameIDCheck, tags ...string) (*Image, error) {
	img, err := s.loadImage(desc)
	if err != nil {
		return nil, err
	}
	for _, l := range img.Manifest.Layers {
		if !s.Has(l.Digest) {
			return nil, fmt.Errorf("manifest %s: layer %s: %w", desc.Digest, l.Digest, ErrMissingBlob)
		}
	}
	refs, err := parseTags(tags)
	if err != nil {
		return nil, err
	}
	target := img.ManifestDigest
	if sameID != nil && sameIDCommitHook != nil {
		sameIDCommitHook()
	}
	adding, err := s.addingRef(ctx)
	if err != nil {
		return nil, err
	}
	defer adding()
	if err := s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		desc := img.Descriptor
		target = img.ManifestDigest
		if sameID != nil && !indexes(idx, img) && (sameID.known || s.newEntryIDs(idx, sameID.before)[img.ID]) {
			if e, ok := s.sameIDEntries(idx, map[digest.Digest]bool{img.ID: true})[img.ID]; ok {
				desc, target = e.desc, e.manifest
			}
		}
		setTags(idx, desc, refs)
		return true, nil
	}); err != nil {
		return nil, err
	}
	return s.reload(target)
}

func parseTags(tags []string) ([]string, error) {
	var refs []string
	for _, t := range tags {
		n, err := ParseNewTag(t)
		if err != nil {
			return nil, err
		}
		refs = append(refs, n.String())
	}
	return refs, nil
}

// setTags points each ref (normalised) at desc in idx and returns the manifests the
// refs were taken from. desc keeps one untagged entry only while it has no tag; a
// manifest that loses its last tag gets one.
func setTags(idx *ocispec.Index, desc ocispec.Descriptor, refs []string) map[string]digest.Digest {
	moved := map[string]digest.Digest{}
	prevs := map[digest.Digest]ocispec.Descriptor{}
	plain := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	has := func(d digest.Digest) bool {
		for _, e := range idx.Manifests {
			if e.Digest == d {
				return true
			}
		}
		return false
	}
	for _, r := range refs {
		present := false
		kept := idx.Manifests[:0]
		for _, e := range idx.Manifests {
			if refName(e) == r {
				if e.Digest == desc.Digest {
					present = true
				} else {
					moved[r] = e.Digest
					prevs[e.Digest] = ocispec.Descriptor{MediaType: e.MediaType, Digest: e.Digest, Size: e.Size}
					continue
				}
			}
			kept = append(kept, e)
		}
		idx.Manifests = kept
		if !present {
			e := plain
			e.Annotations = map[string]string{ocispec.AnnotationRefName: r}
			idx.Manifests = append(idx.Manifests, e)
		}
	}
	if len(refs) > 0 {
		kept := idx.Manifests[:0]
		for _, e := range idx.Manifests {
			if e.Digest == desc.Digest && refName(e) == "" {
				continue
			}
			kept = append(kept, e)
		}
		idx.Manifests = kept
	} else if !has(desc.Digest) {
		idx.Manifests = append(idx.Manifests, plain)
	}
	for _, r := range refs {
		if prev, ok := moved[r]; ok && !has(prev) {
			idx.Manifests = append(idx.Manifests, prevs[prev])
		}
	}
	return moved
}

// Tag points ref (normalised; a tag, not a digest) at img, under the store lock with
// an atomic index.json replace. A tag held by another image moves; that image stays
// as untagged if it has no tag left (docker's <none>). Idempotent.
//
// img is re-checked under the lock: if index.json no longer lists it or its blobs
// are gone (an rmi, and its GC, ran since img was resolved), nothing is written and
// the error wraps ErrNotFound; a missing blob of an image index.json still lists
// wraps ErrMissingBlob as well. Tag holds a Lease, so GC does not run meanwhile.
func (s *Store) Tag(ctx context.Context, img *Image, ref string) error {
	refs, err := parseTags([]string{ref})
	if err != nil {
		return err
	}
	if tagHook != nil {
		tagHook()
	}
	release, err := s.Lease(ctx)
	if err != nil {
		return err
	}
	defer release()
	adding, err := s.addingRef(ctx)
	if err != nil {
		return err
	}
	defer adding()
	return s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		if !indexes(idx, img) {
			return false, fmt.Errorf("image %s: %w", ShortID(img.ID), ErrNotFound)
		}
		if err := s.hasBlobs(img); err != nil {
			return false, err
		}
		setTags(idx, img.Descriptor, refs)
		return true, nil
	})
}

// indexes reports whether idx still lists img: its manifest, or the image index it
// was listed through.
func indexes(idx *ocispec.Index, img *Image) bool {
	for _, e := range idx.Manifests {
		if e.Digest == img.ManifestDigest || (img.Index != "" && e.Digest == img.Index) {
			return true
		}
	}
	return false
}

// hasBlobs checks that img's manifest, config and layers are in the store; the
// error names the first blob missing and wraps ErrNotFound and ErrMissingBlob.
func (s *Store) hasBlobs(img *Image) error {
	if !s.Has(img.ManifestDigest) {
		return fmt.Errorf("image %s: manifest blob %s: %w", ShortID(img.ID), img.ManifestDigest, errBlobMissing)
	}
	if !s.Has(img.ID) {
		return fmt.Errorf("image %s: config blob %s: %w", ShortID(img.ID), img.ID, errBlobMissing)
	}
	for _, l := range img.Manifest.Layers {
		if !s.Has(l.Digest) {
			return fmt.Errorf("image %s: layer blob %s: %w", ShortID(img.ID), l.Digest, errBlobMissing)
		}
	}
	return nil
}

// Untag removes tag ref. The image keeps an untagged entry if that was its last
// tag; rmi deletes it afterwards when docker would. ErrNotFound if no image has ref.
func (s *Store) Untag(ctx context.Context, ref string) error {
	n, err := ParseTag(ref)
	if err != nil {
		return err
	}
	full := n.String()
	return s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		// Every entry of the tag goes: more than one when another tool wrote
		// it again in another spelling ("foo:1" over "docker.io/library/
		// foo:1"). Each of their images keeps an untagged entry; before,
		// only the last did, and the others left index.json without a word.
		var removed []ocispec.Descriptor
		kept := idx.Manifests[:0]
		for _, e := range idx.Manifests {
			if refName(e) == full {
				removed = append(removed, e)
				continue
			}
			kept = append(kept, e)
		}
		idx.Manifests = kept
		if len(removed) == 0 {
			return false, fmt.Errorf("image %s: %w", reference.FamiliarString(n), ErrNotFound)
		}
		for _, r := range removed {
			if !slices.ContainsFunc(idx.Manifests, func(e ocispec.Descriptor) bool { return e.Digest == r.Digest }) {
				idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: r.MediaType, Digest: r.Digest, Size: r.Size})
			}
		}
		return true, nil
	})
}

// DeleteImage removes every index.json entry (all tags) of each of mds: manifest
// digests, or the index an image is listed through (Image.Index; "" is skipped).
// Blobs stay until GC. ErrNotFound if index.json has none of them.
func (s *Store) DeleteImage(ctx context.Context, mds ...digest.Digest) error {
	return s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		return deleteEntries(idx, mds)
	})
}

func deleteEntries(idx *ocispec.Index, mds []digest.Digest) (bool, error) {
	kept := idx.Manifests[:0]
	found := false
	for _, e := range idx.Manifests {
		if slices.Contains(mds, e.Digest) {
			found = true
			continue
		}
		kept = append(kept, e)
	}
	idx.Manifests = kept
	if !found {
		return false, fmt.Errorf("image %s: %w", mds[0], ErrNotFound)
	}
	return true, nil
}

// errRetagged: the image got a tag after the caller looked (deleteImageEntries).
var errRetagged = errors.New("image was tagged meanwhile")

// deleteImageEntries is DeleteImage of img for rmi, and returns the tags it
// removed, sorted. Under the index lock it first looks for a tag beyond img.Tags
// (as the caller saw them), added by a concurrent tag: with all set such tags go
// too, else nothing is written and the error wraps errRetagged.
func (s *Store) deleteImageEntries(ctx context.Context, img *Image, all bool) ([]string, error) {
	mds := []digest.Digest{img.ManifestDigest, img.Index}
	for _, o := range img.others { // every entry of its ID (image_id.go)
		mds = append(mds, o.ManifestDigest, o.Index)
	}
	var tags []string
	err := s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		tags = tags[:0]
		// A tag an entry of another image has as well is that image's if
		// its entry is the later one (Images), and stays with it either way.
		elsewhere := map[string]bool{}
		for _, e := range idx.Manifests {
			if !slices.Contains(mds, e.Digest) {
				elsewhere[refName(e)] = true
			}
		}
		for _, e := range idx.Manifests {
			if !slices.Contains(mds, e.Digest) {
				continue
			}
			r := refName(e)
			if r == "" || contains(tags, r) || elsewhere[r] && !contains(img.Tags, r) {
				continue
			}
			if !all && !contains(img.Tags, r) {
				return false, fmt.Errorf("image %s: %w (%s)", ShortID(img.ID), errRetagged, FamiliarString(r))
			}
			tags = append(tags, r)
		}
		return deleteEntries(idx, mds)
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(tags)
	return tags, nil
}
