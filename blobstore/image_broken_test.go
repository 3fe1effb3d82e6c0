package blobstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"
)

// One unreadable index entry must not make the other images unusable, and rmi of
// its name must remove it.
func TestBrokenEntry(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, s *Store, img *Image)
		rmi     func(img *Image) string
		opts    RemoveOptions
		wantErr error // what Resolve of the broken tag wraps
		// what rmi's Deleted line names: the image ID if the manifest reads
		deleted func(img *Image) digest.Digest
	}{
		{"manifest-deleted", removeBlob(func(img *Image) digest.Digest { return img.ManifestDigest }),
			func(*Image) string { return "keep:1" }, RemoveOptions{}, ErrNotFound, manifestDigest},
		{"config-deleted", removeBlob(func(img *Image) digest.Digest { return img.ID }),
			func(*Image) string { return "keep:1" }, RemoveOptions{Force: true}, ErrNotFound, imageID},
		{"config-damaged", func(t *testing.T, s *Store, img *Image) {
			if err := os.WriteFile(s.BlobPath(img.ID), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, func(*Image) string { return "keep:1" }, RemoveOptions{}, ErrDigestMismatch, imageID},
		{"manifest-damaged", func(t *testing.T, s *Store, img *Image) {
			if err := os.WriteFile(s.BlobPath(img.ManifestDigest), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, func(img *Image) string { return img.ManifestDigest.String() }, RemoveOptions{}, ErrDigestMismatch, manifestDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			img := writeTestImage(t, s, newTestImage(t, "keep", 1, Gzip, "keep:1"))
			writeTestImage(t, s, newTestImage(t, "other", 1, Gzip, "other:1"))
			tc.damage(t, s, img)

			imgs, err := s.Images()
			if err != nil || len(imgs) != 1 || imgs[0].Tags[0] != "docker.io/library/other:1" {
				t.Fatalf("Images() = %d images, %v; want other:1 alone", len(imgs), err)
			}
			_, broken, err := s.ImagesAndBroken()
			if err != nil || len(broken) != 1 || broken[0].Name() != "keep:1" || broken[0].Digest != img.ManifestDigest {
				t.Fatalf("ImagesAndBroken() broken = %+v, %v; want keep:1 at %s", broken, err, img.ManifestDigest)
			}
			if _, err := s.Resolve("other:1"); err != nil {
				t.Fatalf("Resolve(other:1) = %v", err)
			}
			if _, err := s.Resolve("keep:1"); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Resolve(keep:1) = %v, want %v", err, tc.wantErr)
			}
			got, err := s.Remove(ctx, tc.rmi(img), tc.opts)
			want := "Untagged: keep:1\nDeleted: " + tc.deleted(img).String()
			if err != nil || lines(got) != want {
				t.Fatalf("Remove(%s) = %q, %v; want %q", tc.rmi(img), lines(got), err, want)
			}
			imgs, broken, err = s.ImagesAndBroken()
			if err != nil || len(imgs) != 1 || len(broken) != 0 {
				t.Fatalf("after rmi: ImagesAndBroken() = %d images, broken %+v, %v; want other:1 alone", len(imgs), broken, err)
			}
			if _, err := s.Remove(ctx, "keep:1", RemoveOptions{}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Remove(keep:1) again = %v, want %v", err, ErrNotFound)
			}
		})
	}
}

// rmi of one of a broken image's two tags only untags it.
func TestBrokenEntryTwoTags(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := writeTestImage(t, s, newTestImage(t, "keep", 1, Gzip, "keep:1", "keep:2"))
	removeBlob(func(img *Image) digest.Digest { return img.ManifestDigest })(t, s, img)
	got, err := s.Remove(ctx, "keep:2", RemoveOptions{})
	if err != nil || lines(got) != "Untagged: keep:2" {
		t.Fatalf("Remove(keep:2) = %q, %v; want the untag only", lines(got), err)
	}
	if _, broken, _ := s.ImagesAndBroken(); len(broken) != 1 || broken[0].Name() != "keep:1" {
		t.Fatalf("broken = %+v, want keep:1 left", broken)
	}
}

func manifestDigest(img *Image) digest.Digest { return img.ManifestDigest }
func imageID(img *Image) digest.Digest        { return img.ID }

func removeBlob(which func(img *Image) digest.Digest) func(t *testing.T, s *Store, img *Image) {
	return func(t *testing.T, s *Store, img *Image) {
		t.Helper()
		if err := os.Remove(s.BlobPath(which(img))); err != nil {
			t.Fatal(err)
		}
	}
}

// An rmi and its GC between images' read of index.json and its reads of an image's
// blobs remove that image; it must not be reported as unreadable.
func TestImagesWhileRemoved(t *testing.T) {
	ctx := context.Background()
	for _, tags := range [][]string{{"keep:1"}, {"keep:1", "keep:2"}, nil} {
		t.Run(fmt.Sprint(len(tags), "-tags"), func(t *testing.T) {
			s := newStore(t)
			img := writeTestImage(t, s, newTestImage(t, "keep", 1, Gzip, tags...))
			writeTestImage(t, s, newTestImage(t, "other", 1, Gzip, "other:1"))
			fired := false
			imagesHook = func() {
				if fired {
					return // Remove and GC list images too
				}
				fired = true
				if _, err := s.Remove(ctx, img.ID.String(), RemoveOptions{Force: true}); err != nil {
					t.Errorf("Remove(keep) = %v", err)
				}
				if _, err := s.GC(ctx, false, nil); err != nil {
					t.Errorf("GC = %v", err)
				}
			}
			t.Cleanup(func() { imagesHook = nil })
			_, broken, err := s.ImagesAndBroken()
			if !fired {
				t.Fatal("ImagesAndBroken never called imagesHook (the test lost its hook)")
			}
			if err != nil || len(broken) != 0 {
				t.Fatalf("ImagesAndBroken() broken = %+v, %v; want none (the image was removed, not damaged)", broken, err)
			}
		})
	}
}
