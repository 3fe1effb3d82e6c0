package blobstore

import (
	"context"
	"testing"
)

func TestResolveRecordedRepoDigest(t *testing.T) {
	s := newStore(t)
	img := writeTestImage(t, s, newTestImage(t, "r", 1, Gzip, "busybox"))
	index := sha([]byte("a multi-platform index"))
	if err := s.AddRepoDigest(context.Background(), img.ManifestDigest, "docker.io/library/busybox@"+index.String()); err != nil {
		t.Fatal(err)
	}
	got, err := s.Resolve("busybox@" + index.String())
	if err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Fatalf("Resolve(busybox@<index digest>) = %v, %v; want %s", got, err, img.ManifestDigest)
	}
}
