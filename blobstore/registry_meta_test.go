package blobstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestRegistryMeta(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	md := writeTestImage(t, s, newTestImage(t, "meta", 1, Gzip)).ManifestDigest
	blob := digest.FromString("blob")
	if got, err := s.RepoDigests(md); err != nil || len(got) != 0 {
		t.Fatalf("RepoDigests on an empty store = %v, %v", got, err)
	}
	// Concurrent writers lose nothing.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo := "127.0.0.1:5000/r" + string(rune('a'+i))
			if err := s.AddRepoDigest(ctx, md, repo+"@"+md.String()); err != nil {
				t.Error(err)
			}
			if err := s.AddBlobSources(ctx, repo, blob); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	rd, _ := s.RepoDigests(md)
	src, _ := s.BlobSources(blob)
	if len(rd) != 20 || len(src) != 20 || !slices.IsSorted(rd) {
		t.Errorf("after 20 concurrent adds: %d repo digests, %d sources, want 20 each, sorted", len(rd), len(src))
	}
	// Idempotent.
	s.AddRepoDigest(ctx, md, rd[0])
	if again, _ := s.RepoDigests(md); len(again) != 20 {
		t.Errorf("AddRepoDigest of a known digest: %d entries, want 20", len(again))
	}
	if err := s.AddRepoDigest(ctx, digest.FromString("unlisted"), "r@"+md.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddRepoDigest of a manifest index.json does not list = %v, want %v", err, ErrNotFound)
	}
	img := &Image{ManifestDigest: md, Tags: []string{"docker.io/library/busybox:latest", "docker.io/library/busybox:1"}}
	all, err := s.ImageRepoDigests(img)
	if err != nil || len(all) != 21 || !slices.Contains(all, "docker.io/library/busybox@"+md.String()) {
		t.Errorf("ImageRepoDigests = %d entries (%v), want 21 with the tag-derived one", len(all), err)
	}
}
