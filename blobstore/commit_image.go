package blobstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteImageConfig is WriteImage for a config of any shape that marshals to an OCI
// image config, such as docker's extension of it (dockerspec.DockerOCIImage, which
// keeps OnBuild, Healthcheck and Shell that ocispec.Image drops). diffIDs is the
// number of rootfs.diff_ids in cfg, checked against layers. Idempotent like WriteImage.
func (s *Store) WriteImageConfig(ctx context.Context, cfg any, diffIDs int, layers []ocispec.Descriptor, opts ...WriteOption) (*Image, error) {
	if diffIDs != len(layers) {
		return nil, fmt.Errorf("write image: %w: %d diff_ids for %d layers", ErrInvalidConfig, diffIDs, len(layers))
	}
	for _, l := range layers {
		if !s.Has(l.Digest) {
			return nil, fmt.Errorf("write image: layer %s: %w", l.Digest, ErrMissingBlob)
		}
	}
	release, err := s.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	cd, cs, err := s.Put(ctx, bytes.NewReader(cb), "")
	if err != nil {
		return nil, fmt.Errorf("write image config: %w", err)
	}
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: cs},
		Layers:    layers,
	}
	m.SchemaVersion = 2
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	for _, o := range opts {
		o(&m)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	md, ms, err := s.Put(ctx, bytes.NewReader(mb), "")
	if err != nil {
		return nil, fmt.Errorf("write image manifest: %w", err)
	}
	return s.AddManifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: ms})
}
