package blobstore

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Archive formats Save writes.
const (
	FormatDocker = "docker" // docker-archive: manifest.json plus an OCI layout (docker 25+ layout)
	FormatOCI    = "oci"    // OCI image layout archive
)

// SaveItem is one image to save with the tags (normalised) to record for it.
type SaveItem struct {
	Image *Image
	Tags  []string
}

// SaveOptions are save's knobs.
type SaveOptions struct {
	Format   string // FormatDocker (default) or FormatOCI
	Progress Progress
}

// legacyRepositoriesFile is the docker-archive's pre-manifest.json index of tags,
// {"familiar/name":{"tag":"<id>"}}, which docker save still writes for tagged
// images. Docker 25+ (whose layout Save follows: no legacy <id>/ dirs) gives
// each tag its image's top layer's diffID, hex only; docker load reads the file
// only from an archive without manifest.json, and skopeo and podman ignore it.
const legacyRepositoriesFile = "repositories"

// epoch is the fixed mtime of every entry Save writes.
var epoch = time.Unix(0, 0).UTC()

// Save streams items into w as one archive. Blobs are copied unchanged from the store
// (each verified as it is read). The docker format has manifest.json (RepoTags in
// familiar form, Config and Layers as blobs/sha256/<hex> paths) and, when an image
// is tagged, the legacy repositories file, beside oci-layout and index.json, as
// docker 25+ writes it, so docker load, podman load and skopeo
// (docker-archive:) read it and layerfs load keeps the manifest digest; the OCI format
// has index.json entries whose org.opencontainers.image.ref.name is the full
// reference. Entries are sorted with fixed headers: the same items give the same
// bytes. Items naming the same image are merged.
func (s *Store) Save(ctx context.Context, w io.Writer, items []SaveItem, opts SaveOptions) error {
	format := opts.Format
	if format == "" {
		format = FormatDocker
	}
	if format != FormatDocker && format != FormatOCI {
		return fmt.Errorf("save: unknown format %q (docker or oci)", format)
	}
	var merged []*SaveItem
	byDigest := map[digest.Digest]*SaveItem{}
	for _, it := range items {
		m := byDigest[it.Image.ManifestDigest]
		if m == nil {
			m = &SaveItem{Image: it.Image}
			byDigest[it.Image.ManifestDigest] = m
			merged = append(merged, m)
		}
		for _, t := range it.Tags {
			if !contains(m.Tags, t) {
				m.Tags = append(m.Tags, t)
			}
		}
	}
	blobs := map[digest.Digest]int64{}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	var dm []dockerManifestEntry
	repos := map[string]map[string]string{} // the legacy "repositories" file
	for _, it := range merged {
		img := it.Image
		sort.Strings(it.Tags)
		blobs[img.ManifestDigest] = img.Descriptor.Size
		blobs[img.ID] = img.Manifest.Config.Size
		e := dockerManifestEntry{Config: "blobs/sha256/" + img.ID.Encoded(), RepoTags: []string{}, Layers: []string{}}
		for _, l := range img.Manifest.Layers {
			blobs[l.Digest] = l.Size
			e.Layers = append(e.Layers, "blobs/sha256/"+l.Digest.Encoded())
		}
		desc := ocispec.Descriptor{MediaType: img.Descriptor.MediaType, Digest: img.ManifestDigest, Size: img.Descriptor.Size}
		if len(it.Tags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, t := range it.Tags {
			n, err := ParseTag(t)
			if err != nil {
				return err
			}
			e.RepoTags = append(e.RepoTags, reference.FamiliarString(n))
			if ids := img.Config.RootFS.DiffIDs; len(ids) > 0 {
				fam := reference.FamiliarName(n)
				if repos[fam] == nil {
					repos[fam] = map[string]string{}
				}
				repos[fam][n.Tag()] = ids[len(ids)-1].Encoded()
			}
			d := desc
			refName := n.String()
			if format == FormatDocker {
				refName = n.Tag() // as docker writes it
			}
			d.Annotations = map[string]string{annotationContainerdName: n.String(), ocispec.AnnotationRefName: refName}
			idx.Manifests = append(idx.Manifests, d)
		}
		dm = append(dm, e)
	}
	for d := range blobs {
		if !s.Has(d) {
			return fmt.Errorf("save: blob %s: %w", d, ErrMissingBlob)
		}
	}
	tw := tar.NewWriter(w)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(saveHeader(dir, tar.TypeDir, 0)); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	order := make([]digest.Digest, 0, len(blobs))
	for d := range blobs {
		order = append(order, d)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	p := orNop(opts.Progress)
	for _, d := range order {
		if err := s.saveBlob(ctx, tw, d, p); err != nil {
			return err
		}
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		b    []byte
	}{{"index.json", ib}}
	if format == FormatDocker {
		mb, err := json.Marshal(dm)
		if err != nil {
			return err
		}
		files = append(files, struct {
			name string
			b    []byte
		}{"manifest.json", mb})
	}
	lb, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	files = append(files, struct {
		name string
		b    []byte
	}{ocispec.ImageLayoutFile, lb})
	if format == FormatDocker && len(repos) > 0 {
		rb, err := json.Marshal(repos)
		if err != nil {
			return err
		}
		files = append(files, struct {
			name string
			b    []byte
		}{legacyRepositoriesFile, append(rb, '\n')})
	}
	for _, f := range files {
		if err := tw.WriteHeader(saveHeader(f.name, tar.TypeReg, int64(len(f.b)))); err != nil {
			return fmt.Errorf("save: %w", err)
		}
		if _, err := tw.Write(f.b); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

func (s *Store) saveBlob(ctx context.Context, tw *tar.Writer, d digest.Digest, p Progress) error {
	size, err := s.Size(d)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	rc, err := s.Open(d)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer rc.Close()
	if err := tw.WriteHeader(saveHeader("blobs/sha256/"+d.Encoded(), tar.TypeReg, size)); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	tk := p.Track(d.String(), size)
	_, err = io.Copy(io.MultiWriter(tw, tk), ctxReader{ctx, rc})
	tk.Done(err)
	if err != nil {
		return fmt.Errorf("save: blob %s: %w", d, err)
	}
	return nil
}

func saveHeader(name string, typ byte, size int64) *tar.Header {
	mode := int64(0o644)
	if typ == tar.TypeDir {
		mode = 0o755
	}
	return &tar.Header{Typeflag: typ, Name: name, Size: size, Mode: mode, ModTime: epoch, Format: tar.FormatUSTAR}
}

// SaveItems expands one save argument the way docker does: a tag is that tag; a
// repository name without a tag is every tag of that repository (falling back to
// name:latest lookup rules when it has none); an ID or digest reference saves the
// image without tags.
func SaveItems(imgs []*Image, arg string) ([]SaveItem, error) {
	if n, err := reference.ParseNormalizedNamed(arg); err == nil && reference.IsNameOnly(n) {
		var out []SaveItem
		for _, img := range imgs {
			var tags []string
			for _, t := range img.Tags {
				if tn, err := reference.ParseNormalizedNamed(t); err == nil && tn.Name() == n.Name() {
					tags = append(tags, t)
				}
			}
			if len(tags) > 0 {
				out = append(out, SaveItem{Image: img, Tags: tags})
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	img, err := resolveIn(imgs, arg)
	if err != nil {
		return nil, err
	}
	if n, err := ParseReference(arg); err == nil && contains(img.Tags, n.String()) {
		return []SaveItem{{Image: img, Tags: []string{n.String()}}}, nil
	}
	return []SaveItem{{Image: img}}, nil
}
