package blobstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BrokenImage is an index.json entry whose image cannot be read: its manifest or
// config blob is missing or damaged (deleted by hand, a disk error). Images leaves
// it out so that the other images stay usable; Remove removes it by tag or digest.
type BrokenImage struct {
	Digest digest.Digest // the entry's manifest digest
	ID     digest.Digest // the image ID (config digest) if the manifest reads, else ""
	Tag    string        // normalised tag of the entry, "" if untagged
	Err    error         // why it cannot be read
	// Artifact: the entry is no container image but another tool's artifact
	// (a signature, an SBOM, a helm chart: a media type Images does not read).
	// Images leaves it out without a warning; resolving its tag says what it is.
	Artifact bool

	entry digest.Digest // the index.json entry's digest (an image index's for one listed through it)
}

// Name is the entry's familiar tag, or its digest if untagged.
func (b BrokenImage) Name() string {
	if b.Tag != "" {
		return FamiliarString(b.Tag)
	}
	return b.Digest.String()
}

// ImagesAndBroken is Images plus the index.json entries it leaves out because
// they cannot be read (one per entry, in index.json order). The error is for
// index.json itself only.
//
// index.json is read without a lock, so an rmi and its GC may remove an image
// between that read and the reads of its blobs. An entry that does not read is
// therefore checked against index.json read again, and left out of both lists if
// it is no longer there: it was removed, not broken.
func (s *Store) ImagesAndBroken() ([]*Image, []BrokenImage, error) {
	return s.imagesAndBroken(nil, s.loadImage)
}

// stillListed are the entries of broken that index.json, read again, still has
// (same digest and tag). If it cannot be read, all of them.
func (s *Store) stillListed(broken []BrokenImage) []BrokenImage {
	idx, err := s.readIndex()
	if err != nil {
		return broken
	}
	var out []BrokenImage
	for _, b := range broken {
		for _, e := range idx.Manifests {
			if e.Digest == b.entry && refName(e) == b.Tag {
				out = append(out, b)
				break
			}
		}
	}
	return out
}

// matchBroken are the broken entries ref names: by tag, by manifest digest
// ("sha256:<hex>", 64 hex), or by name@digest. ID prefixes name none (a broken
// entry may have no readable config, so no ID).
func matchBroken(broken []BrokenImage, ref string) []BrokenImage {
	if len(broken) == 0 || ref == "" {
		return nil
	}
	var match func(BrokenImage) bool
	if strings.HasPrefix(ref, "sha256:") || (len(ref) == 64 && hexPrefix.MatchString(ref)) {
		d := digest.Digest(ref)
		if !strings.HasPrefix(ref, "sha256:") {
			d = digest.NewDigestFromEncoded(digest.SHA256, ref)
		}
		match = func(b BrokenImage) bool { return b.Digest == d }
	} else {
		n, err := ParseReference(ref)
		if err != nil {
			return nil
		}
		if dg, ok := n.(reference.Digested); ok {
			match = func(b BrokenImage) bool { return b.Digest == dg.Digest() }
		} else {
			full := n.String()
			match = func(b BrokenImage) bool { return b.Tag == full }
		}
	}
	var out []BrokenImage
	for _, b := range broken {
		if match(b) {
			out = append(out, b)
		}
	}
	return out
}

// brokenID is the config digest the manifest md names, "" if it does not read.
func (s *Store) brokenID(md digest.Digest) digest.Digest {
	b, err := s.readBlob(md, maxMetaSize)
	if err != nil {
		return ""
	}
	m, err := parseManifest(b, md)
	if err != nil {
		return ""
	}
	return m.Config.Digest
}

// removeBroken is Remove for broken entries (matchBroken of ref): a tag is
// removed, and the entry's digest with it when no tag is left; a digest removes
// all its entries. No conflict rules apply: the image cannot be used anyway. The
// line for a deleted entry names the image ID when its manifest reads (only its
// config is missing or damaged), else the manifest digest.
func (s *Store) removeBroken(ctx context.Context, matched []BrokenImage) ([]RemoveLine, error) {
	var lines []RemoveLine
	err := s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		lines = nil
		var digests []digest.Digest
		drop := func(e ocispec.Descriptor) bool {
			for _, b := range matched {
				if e.Digest == b.Digest && (b.Tag == "" || refName(e) == b.Tag) {
					return true
				}
			}
			return false
		}
		kept := idx.Manifests[:0]
		for _, e := range idx.Manifests {
			if !drop(e) {
				kept = append(kept, e)
				continue
			}
			if r := refName(e); r != "" {
				lines = append(lines, RemoveLine{Untagged: FamiliarString(r)})
			}
			if !slices.Contains(digests, e.Digest) {
				digests = append(digests, e.Digest)
			}
		}
		idx.Manifests = kept
		if len(digests) == 0 {
			return false, fmt.Errorf("image %s: %w", matched[0].Name(), ErrNotFound)
		}
		// a digest left with no tag goes: its untagged entry would only list as <none>
		for _, d := range digests {
			tagged := false
			for _, e := range idx.Manifests {
				if e.Digest == d && refName(e) != "" {
					tagged = true
				}
			}
			if tagged {
				continue
			}
			kept := idx.Manifests[:0]
			for _, e := range idx.Manifests {
				if e.Digest != d {
					kept = append(kept, e)
				}
			}
			idx.Manifests = kept
			id := d
			for _, b := range matched {
				if b.Digest == d && b.ID != "" {
					id = b.ID
				}
			}
			lines = append(lines, RemoveLine{Deleted: id})
		}
		return true, nil
	})
	return lines, err
}
