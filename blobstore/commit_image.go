package blobstore

import (
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
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("write image: %w", err)
	}
	return s.WriteImageRaw(ctx, cb, layers, opts...)
}
