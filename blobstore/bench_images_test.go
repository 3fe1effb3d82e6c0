package blobstore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Load and rmi of many images must cost about linearly in the store's size: each
// image's manifest and config read about once per command, not once per image
// loaded or removed (FINDINGS of rev-perf, 1 and 2). Run:
//
//	go test ./blobstore -run '^$' -bench 'ManyImages' -count 6

// manyImagesArchive is a classic docker-archive of n one-layer images tagged
// gen/imgI:latest, as rev-perf's mkarch.py makes.
func manyImagesArchive(b *testing.B, n int) []byte {
	b.Helper()
	var imgs []*testImage
	for i := range n {
		imgs = append(imgs, newTestImage(b, fmt.Sprintf("img%d", i), 1, None, fmt.Sprintf("gen/img%d:latest", i)))
	}
	return classicDockerArchive(b, imgs...)
}

var manyImagesSizes = []int{100, 400}

// BenchmarkLoadManyImages loads an archive of N images into an empty store.
func BenchmarkLoadManyImages(b *testing.B) {
	for _, n := range manyImagesSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			archive := manyImagesArchive(b, n)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				s, err := Open(filepath.Join(b.TempDir(), "store"))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				l, err := s.Load(context.Background(), bytes.NewReader(archive), LoadOptions{})
				if err != nil || len(l) != n {
					b.Fatalf("Load = %d images, %v; want %d", len(l), err, n)
				}
			}
		})
	}
}

// BenchmarkRemoveManyImages removes half of a store of N images by tag, one Remove
// per image, as rmi does with one argument per image (and image prune with one
// call per image).
func BenchmarkRemoveManyImages(b *testing.B) {
	ctx := context.Background()
	for _, n := range manyImagesSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			tmpl := filepath.Join(b.TempDir(), "store")
			s, err := Open(tmpl)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Load(ctx, bytes.NewReader(manyImagesArchive(b, n)), LoadOptions{}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "store")
				if err := os.CopyFS(dir, os.DirFS(tmpl)); err != nil {
					b.Fatal(err)
				}
				s, err := Open(dir)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for i := n / 2; i < n; i++ {
					ref := fmt.Sprintf("gen/img%d:latest", i)
					if l, err := s.Remove(ctx, ref, RemoveOptions{}); err != nil || len(l) != 2 {
						b.Fatalf("Remove(%s) = %v, %v; want an untag and a delete", ref, l, err)
					}
				}
			}
		})
	}
}
