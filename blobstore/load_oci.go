package blobstore

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// OCI archives: index.json (possibly through nested image indexes) names the
// manifests; tags come from io.containerd.image.name or a full ref.name.

func (s *Store) ociItems(sp *spool) ([]*loadItem, error) {
	f, _ := sp.lookup("index.json")
	b, err := sp.read(f, "index.json")
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("index.json: %w: %v", ErrInvalidArchive, err)
	}
	var items []*loadItem
	byDigest := map[digest.Digest]*loadItem{}
	for _, d := range idx.Manifests {
		tag, err := ociTag(d)
		if err != nil {
			return nil, err
		}
		md, from, err := s.pickManifest(sp, d, "index.json", 0)
		if err != nil {
			return nil, err
		}
		if err := checkDescSize(sp, md, "manifest", from); err != nil {
			return nil, err
		}
		it := byDigest[md.Digest]
		if it == nil {
			name := DisplayRef(tag)
			if name == "" {
				name = md.Digest.String()
			}
			it, err = s.ociItem(sp, md, name)
			if err != nil {
				return nil, err
			}
			byDigest[md.Digest] = it
			items = append(items, it)
		}
		if tag != "" && !contains(it.tags, tag) {
			it.tags = append(it.tags, tag)
		}
	}
	return items, nil
}

// ociTag is the tag an OCI index entry carries: io.containerd.image.name, else a
// ref.name that is a whole reference (a bare tag like "latest" names no repository).
func ociTag(d ocispec.Descriptor) (string, error) {
	v := d.Annotations[annotationContainerdName]
	if v == "" {
		r := d.Annotations[ocispec.AnnotationRefName]
		if strings.ContainsAny(r, ":/") {
			v = r
		}
	}
	if v == "" {
		return "", nil
	}
	n, err := ParseTag(v)
	if err != nil {
		return "", err
	}
	return n.String(), nil
}

// checkDescSize refuses a descriptor, found in from ("index.json", "index
// sha256:..."), whose size is not that of the blob it names (what is "manifest"
// or "index"), as the sizes of configs and layers are checked against their
// manifest: the store records the blob's own size, but an archive that
// misdescribes its blobs is refused, as umoci refuses it.
func checkDescSize(sp *spool, d ocispec.Descriptor, what, from string) error {
	f, err := sp.lookup("blobs/sha256/" + d.Digest.Encoded())
	if err != nil || checkDigest(d.Digest) != nil {
		return nil // blobIn says what is wrong with it
	}
	if f.size != d.Size {
		return fmt.Errorf("%s %s: %w: size %d, %s says %d", what, d.Digest, ErrDigestMismatch, f.size, from, d.Size)
	}
	return nil
}

// pickManifest follows image indexes down to the manifest for this platform; from
// is where d was found, and the manifest's from is returned with it.
func (s *Store) pickManifest(sp *spool, d ocispec.Descriptor, from string, depth int) (ocispec.Descriptor, string, error) {
	if isManifestType(d.MediaType) {
		return d, from, nil
	}
	if !isIndexType(d.MediaType) {
		return d, from, fmt.Errorf("%s: %w %q", d.Digest, ErrUnknownMediaType, d.MediaType)
	}
	if depth > 4 {
		return d, from, fmt.Errorf("%s: %w: nested too deep", d.Digest, ErrInvalidManifest)
	}
	f, _, err := s.blobIn(sp, d.Digest)
	if err != nil {
		return d, from, fmt.Errorf("index: %w", err)
	}
	if err := checkDescSize(sp, d, "index", from); err != nil {
		return d, from, err
	}
	b, err := sp.read(f, "blobs/sha256/"+d.Digest.Encoded())
	if err != nil {
		return d, from, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return d, from, fmt.Errorf("index %s: %w: %v", d.Digest, ErrInvalidManifest, err)
	}
	var pick *ocispec.Descriptor
	for i, m := range idx.Manifests {
		p := m.Platform
		if p == nil || (p.OS == "linux" && p.Architecture == runtime.GOARCH) {
			pick = &idx.Manifests[i]
			break
		}
	}
	if pick == nil && len(idx.Manifests) == 1 {
		pick = &idx.Manifests[0]
	}
	if pick == nil {
		return d, from, fmt.Errorf("index %s: %w: no manifest for linux/%s", d.Digest, ErrNotFound, runtime.GOARCH)
	}
	return s.pickManifest(sp, *pick, "index "+d.Digest.String(), depth+1)
}

// ociItem reads and checks the image of manifest md; name is what the archive
// calls it, for errors.
func (s *Store) ociItem(sp *spool, md ocispec.Descriptor, name string) (*loadItem, error) {
	f, _, err := s.blobIn(sp, md.Digest)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	mb, err := sp.read(f, "blobs/sha256/"+md.Digest.Encoded())
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(mb, md.Digest)
	if err != nil {
		return nil, err
	}
	cf, _, err := s.blobIn(sp, m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cf.size != m.Config.Size {
		return nil, fmt.Errorf("config %s: %w: size %d, manifest says %d", m.Config.Digest, ErrDigestMismatch, cf.size, m.Config.Size)
	}
	cb, err := sp.read(cf, "blobs/sha256/"+m.Config.Digest.Encoded())
	if err != nil {
		return nil, err
	}
	var layers []*spooled
	for _, l := range m.Layers {
		lf, _, err := s.blobIn(sp, l.Digest)
		if err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		if err := checkLayerDesc(l, lf); err != nil {
			return nil, err
		}
		layers = append(layers, lf)
	}
	if _, err := checkConfigLayers(cb, m.Config.Digest, layers, name); err != nil {
		return nil, err
	}
	return &loadItem{manifest: mb, mdesc: ocispec.Descriptor{MediaType: mediaTypeOr(md.MediaType, m.MediaType), Digest: md.Digest, Size: int64(len(mb))}, m: m}, nil
}
