package blobstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationBaseDigest names a manifest's parent image (the OCI base-image
// annotation); commit sets it through WithParent.
const AnnotationBaseDigest = ocispec.AnnotationBaseImageDigest

// size limits for metadata blobs read whole.
const maxMetaSize = 16 << 20

// Image is one manifest in index.json with its config and tags.
type Image struct {
	ID             digest.Digest      // config digest ("image ID")
	ManifestDigest digest.Digest      // manifest digest
	Descriptor     ocispec.Descriptor // manifest descriptor, without annotations
	Manifest       ocispec.Manifest
	Config         ocispec.Image
	RawConfig      []byte   // the config blob as stored
	Tags           []string // normalised refs, e.g. "docker.io/library/busybox:latest", sorted
	Parent         digest.Digest
	// Parent is the manifest digest in the org.opencontainers.image.base.digest
	// annotation ("" if none); the parent image may no longer be in the store.

	// Index is the image index (multi-platform) entry of index.json this image was
	// listed through, "" when index.json names the manifest itself. See Images.
	Index digest.Digest
	// PulledDigests are the repo digests recorded for the image by pulls and
	// pushes ("docker.io/library/busybox@sha256:...", sorted); for a multi-platform
	// pull the digest is the index's. See AddRepoDigest.
	PulledDigests []string
	// OtherNames are the names of its index.json entries that are no docker
	// reference: an OCI tag skopeo or umoci wrote ("Stable", "v1.0+build"), or
	// a containerd image name refName does not read. Images lists no tag for
	// them, but they are names all the same: prune and gc keep such an image.
	OtherNames []string

	// others are the other index.json entries of this image's ID that Images
	// leaves out behind this one, or (in rmi) every other entry of the ID: see
	// One image per ID (image_id.go).
	others []*Image
}

// Size is the stored size of the image's layers (compressed as stored).
func (img *Image) Size() int64 {
	var n int64
	for _, l := range img.Manifest.Layers {
		n += l.Size
	}
	return n
}

// Created is the config's created time (zero if absent).
func (img *Image) Created() time.Time {
	if img.Config.Created == nil {
		return time.Time{}
	}
	return *img.Config.Created
}

// RepoDigests are "name@<manifest digest>" for each repository the image is tagged in.
func (img *Image) RepoDigests() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range img.Tags {
		n, err := reference.ParseNormalizedNamed(t)
		if err != nil || seen[n.Name()] {
			continue
		}
		seen[n.Name()] = true
		out = append(out, n.Name()+"@"+img.ManifestDigest.String())
	}
	return out
}

// isManifestType reports a single-image manifest media type.
func isManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

func isConfigType(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == MediaTypeDockerConfig
}

// refName is the normalised tag of an index entry ("" if untagged or unparsable).
func refName(d ocispec.Descriptor) string {
	v := d.Annotations[ocispec.AnnotationRefName]
	if v == "" {
		return ""
	}
	if c := d.Annotations[annotationContainerdName]; c != "" && !strings.ContainsAny(v, ":/") {
		// docker save's form: ref.name holds the tag alone ("1"), the
		// containerd name the whole reference; "1" read alone was the
		// repository 1, tag latest (review rev23-oci).
		if n, err := ParseReference(c); err == nil {
			if t, ok := n.(reference.NamedTagged); ok && t.Tag() == v {
				v = c
			}
		}
	}
	refNames.Lock()
	r, ok := refNames.m[v]
	refNames.Unlock()
	if ok {
		return r
	}
	if n, err := ParseReference(v); err == nil {
		if _, ok := n.(reference.NamedTagged); ok {
			r = n.String()
		}
	}
	refNames.Lock()
	if len(refNames.m) >= maxRefNames {
		clear(refNames.m)
	}
	refNames.m[v] = r
	refNames.Unlock()
	return r
}

// refNames remembers refName's parses: a command reads index.json several times
// (each index.json update too) and looks at every entry's tag each time, and
// load's setTags once per tag it sets. Cleared when full.
var refNames = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

const maxRefNames = 1 << 16

// CheckMetaSize refuses a manifest or config blob of size bytes (d is its
// digest) that the store would not read whole (over 16 MiB), or a negative size.
// Pull judges a manifest's declared config size by it before the config is read,
// so that what the store would refuse is never downloaded, nor held in memory.
func CheckMetaSize(d digest.Digest, size int64) error {
	if size < 0 {
		return fmt.Errorf("blob %s: %w: size %d", d, ErrInvalidManifest, size)
	}
	if size > maxMetaSize {
		return errTooLarge(d, maxMetaSize)
	}
	return nil
}

// ParseManifest decodes and checks a manifest blob b whose digest is d as the
// store does before it records an image (AddManifest, load): at most 16 MiB, a
// single-image manifest of schemaVersion 2 with known config and layer media
// types and valid digests. Pull judges a fetched manifest by it before it
// downloads anything else.
func ParseManifest(b []byte, d digest.Digest) (ocispec.Manifest, error) {
	if err := CheckMetaSize(d, int64(len(b))); err != nil {
		return ocispec.Manifest{}, err
	}
	return parseManifest(b, d)
}

// parseManifest decodes and checks a manifest blob.
func parseManifest(b []byte, d digest.Digest) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("manifest %s: %w: %v", d, ErrInvalidManifest, err)
	}
	if m.MediaType != "" && !isManifestType(m.MediaType) {
		return m, fmt.Errorf("manifest %s: %w %q", d, ErrUnknownMediaType, m.MediaType)
	}
	if m.SchemaVersion != 2 {
		return m, fmt.Errorf("manifest %s: %w: schemaVersion %d", d, ErrInvalidManifest, m.SchemaVersion)
	}
	if !isConfigType(m.Config.MediaType) {
		return m, fmt.Errorf("manifest %s: config: %w %q", d, ErrUnknownMediaType, m.Config.MediaType)
	}
	if err := checkDigest(m.Config.Digest); err != nil {
		return m, fmt.Errorf("manifest %s: config: %w", d, err)
	}
	for _, l := range m.Layers {
		if _, ok := LayerCompression(l.MediaType); !ok {
			return m, fmt.Errorf("manifest %s: layer %s: %w %q", d, l.Digest, ErrUnknownMediaType, l.MediaType)
		}
		if err := checkDigest(l.Digest); err != nil {
			return m, fmt.Errorf("manifest %s: layer: %w", d, err)
		}
	}
	return m, nil
}

// ParseConfig decodes a config blob (d is its digest, for errors) and checks it
// as the store does before it records an image: rootfs type "layers" and one valid
// diff_id for each of the manifest's nLayers layers. Errors wrap ErrInvalidConfig
// and name the config. Pull uses it to refuse an image before fetching its layers.
func ParseConfig(b []byte, d digest.Digest, nLayers int) (ocispec.Image, error) {
	var c ocispec.Image
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("config %s: %w: not JSON: %v", d, ErrInvalidConfig, err)
	}
	if c.RootFS.Type != "layers" {
		return c, fmt.Errorf("config %s: %w: rootfs type %q", d, ErrInvalidConfig, c.RootFS.Type)
	}
	if len(c.RootFS.DiffIDs) != nLayers {
		return c, fmt.Errorf("config %s: %w: %d diff_ids for %d layers", d, ErrInvalidConfig, len(c.RootFS.DiffIDs), nLayers)
	}
	for _, id := range c.RootFS.DiffIDs {
		if err := checkDigest(id); err != nil {
			return c, fmt.Errorf("config %s: %w: diff_id: %v", d, ErrInvalidConfig, err)
		}
	}
	return c, nil
}

// loadImage reads manifest and config of desc from the store, and keeps a summary
// of the image for skeleton.
func (s *Store) loadImage(desc ocispec.Descriptor) (*Image, error) {
	mb, err := s.readBlob(desc.Digest, maxMetaSize)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", desc.Digest, err)
	}
	m, err := parseManifest(mb, desc.Digest)
	if err != nil {
		return nil, err
	}
	cb, err := s.readBlob(m.Config.Digest, maxMetaSize)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", m.Config.Digest, err)
	}
	c, err := ParseConfig(cb, m.Config.Digest, len(m.Layers))
	if err != nil {
		return nil, err
	}
	plain := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	if plain.MediaType == "" {
		plain.MediaType = m.MediaType
	}
	img := &Image{ID: m.Config.Digest, ManifestDigest: desc.Digest, Descriptor: plain, Manifest: m, Config: c, RawConfig: cb}
	if p := m.Annotations[AnnotationBaseDigest]; p != "" {
		img.Parent = digest.Digest(p)
	}
	sum := imageSummary{id: img.ID, parent: img.Parent, mediaType: m.MediaType}
	if c.Created != nil {
		created := *c.Created // a copy: the caller owns img
		sum.created = &created
	}
	s.summaries.Store(desc.Digest, sum)
	return img, nil
}

// LoadManifest reads the image whose manifest is md from the store's blobs, whether
// or not index.json lists it (Tags stay empty): a working container keeps using its
// image after rmi -f. Errors wrap ErrNotFound (blob missing) or the parse errors.
func (s *Store) LoadManifest(md digest.Digest) (*Image, error) {
	if err := checkDigest(md); err != nil {
		return nil, err
	}
	return s.loadImage(ocispec.Descriptor{Digest: md})
}

// Images lists the images in index.json, one per manifest, with their tags, newest
// first (then by ID). Entries of an ID another entry lists already are left out
// when they carry no reference (see One image per ID in image_id.go): an ID shows
// as one untagged image, or as its tagged ones.
//
// An image index (multi-platform, as `skopeo copy --all` or another tool may put in
// index.json) lists as one image: the manifest for linux on the host's
// architecture if the store has it, else the first of its manifests the store has
// (manifest and config present); the index entry's tag names that image and
// Image.Index is set. The index's other manifests are not listed (they stay
// reachable for gc through the index). An index none of whose manifests is in the
// store is not listed. Entries that are neither (signatures, SBOMs) are skipped.
//
// An entry whose manifest or config cannot be read (a blob deleted or damaged by
// hand) is left out too, so that it does not hide the other images;
// ImagesAndBroken lists such entries and Remove removes them.
func (s *Store) Images() ([]*Image, error) {
	imgs, _, err := s.ImagesAndBroken()
	return imgs, err
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// DisplayRef is how docker names a reference in messages: "busybox" is
// "busybox:latest"; IDs and unparsable input are returned unchanged.
func DisplayRef(s string) string {
	if hexPrefix.MatchString(s) || strings.HasPrefix(s, "sha256:") {
		return s
	}
	n, err := ParseReference(s)
	if err != nil {
		return s
	}
	return reference.FamiliarString(n)
}

// Resolve finds the image s names: name[:tag]; name@sha256:<digest> where the
// digest is the manifest's, the image index's it is listed through, or one a pull
// or push recorded for it (a registry's index digest); a full ID ("sha256:<hex>" or
// 64 hex, also a manifest or index digest); or a unique prefix of an ID's hex. Tags
// win over ID prefixes, as in docker. Errors: ErrNotFound, ErrInvalidReference,
// ErrAmbiguous. An index.json entry ref names that cannot be read gives its reason
// (a missing blob is ErrNotFound and ErrMissingBlob; see ImagesAndBroken).
func (s *Store) Resolve(ref string) (*Image, error) {
	imgs, broken, err := s.ImagesAndBroken()
	if err != nil {
		return nil, err
	}
	img, err := resolveIn(imgs, ref)
	if errors.Is(err, ErrNotFound) {
		if b := matchBroken(broken, ref); len(b) > 0 {
			// say why, not just "no such image"
			return nil, fmt.Errorf("image %s: %w", DisplayRef(ref), b[0].Err)
		}
	}
	return img, err
}

// ResolveIn is Resolve over a list Images returned (to resolve several references
// against one reading of index.json).
func ResolveIn(imgs []*Image, ref string) (*Image, error) { return resolveIn(imgs, ref) }

func resolveIn(imgs []*Image, ref string) (*Image, error) {
	notFound := fmt.Errorf("image %s: %w", DisplayRef(ref), ErrNotFound)
	if ref == "" {
		return nil, fmt.Errorf("%w: empty reference", ErrInvalidReference)
	}
	if strings.HasPrefix(ref, "sha256:") || (len(ref) == 64 && hexPrefix.MatchString(ref)) {
		d := digest.Digest(ref)
		if !strings.HasPrefix(ref, "sha256:") {
			d = digest.NewDigestFromEncoded(digest.SHA256, ref)
		}
		if err := checkDigest(d); err != nil {
			// "sha256:<prefix>" is a prefix too (docker accepts it).
			if p := strings.TrimPrefix(ref, "sha256:"); hexPrefix.MatchString(p) {
				return byPrefix(imgs, p, notFound)
			}
			return nil, fmt.Errorf("%w %q", ErrInvalidReference, ref)
		}
		for _, img := range imgs {
			if img.ID == d {
				return img, nil
			}
		}
		for _, img := range imgs {
			if img.ManifestDigest == d || img.Index == d {
				return img, nil
			}
		}
		return nil, notFound
	}
	n, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if dg, ok := n.(reference.Digested); ok {
		var loose *Image
		for _, img := range imgs {
			if contains(img.PulledDigests, n.String()) {
				return img, nil
			}
			if img.ManifestDigest != dg.Digest() && img.Index != dg.Digest() {
				continue
			}
			for _, t := range img.Tags {
				if tn, err := reference.ParseNormalizedNamed(t); err == nil && tn.Name() == n.Name() {
					return img, nil
				}
			}
			if loose == nil {
				loose = img
			}
		}
		if loose != nil {
			return loose, nil
		}
		return nil, notFound
	}
	full := n.String()
	for _, img := range imgs {
		if contains(img.Tags, full) {
			return img, nil
		}
	}
	if hexPrefix.MatchString(ref) {
		return byPrefix(imgs, ref, notFound)
	}
	return nil, notFound
}

func byPrefix(imgs []*Image, p string, notFound error) (*Image, error) {
	var found *Image
	for _, img := range imgs {
		if strings.HasPrefix(img.ID.Encoded(), p) {
			if found != nil && found.ID != img.ID {
				return nil, fmt.Errorf("image %s: %w", p, ErrAmbiguous)
			}
			if found == nil {
				found = img
			}
		}
	}
	if found == nil {
		return nil, notFound
	}
	return found, nil
}

// Children are the images whose parent (base digest annotation) is img: its
// manifest, or another manifest of its ID that Images lists as img (see One image
// per ID in image_id.go).
func Children(imgs []*Image, img *Image) []*Image {
	var out []*Image
	mds := img.sameIDManifests()
	for _, c := range imgs {
		if c.Parent != "" && slices.Contains(mds, c.Parent) && !slices.Contains(mds, c.ManifestDigest) {
			out = append(out, c)
		}
	}
	return out
}
