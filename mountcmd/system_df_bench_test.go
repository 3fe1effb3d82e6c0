package mountcmd

import (
	"context"
	"fmt"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkDiskUsageManyContainers is system df's count of the containers
// of each image, for 200 images and 100 containers (rev19-cmdscale: each
// image read every container's state.json, 2.5 s for 1,000 images and 100
// containers).
func BenchmarkDiskUsageManyContainers(b *testing.B) {
	ctx := context.Background()
	g, s, base := storeWithImage(b)
	for i := range 199 {
		cfg := base.Config
		cfg.Config = ocispec.ImageConfig{Env: []string{fmt.Sprintf("N=%d", i)}}
		img, err := s.WriteImage(ctx, cfg, base.Manifest.Layers)
		if err != nil {
			b.Fatal(err)
		}
		if i < 100 {
			claimFor(b, g, fmt.Sprintf("c%d", i), img, nil)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		du, err := diskUsageOf(ctx, g)
		if err != nil || len(du.images) != 200 {
			b.Fatalf("diskUsageOf: %d images, %v", len(du.images), err)
		}
	}
}
