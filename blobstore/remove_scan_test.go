package blobstore

import (
	"context"
	"os"
	"testing"
)

// rmi's looks at the whole store take images from the summaries of earlier reads
// (skeleton) and do not read the blobs again. A blob damaged or deleted by hand
// after a first Remove has warmed them must still count as Images counts it: the
// image broken, its rmi by name removing the entry, and a broken child no child.
func TestRemoveAfterBlobsChanged(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, s *Store, img *Image)
	}{
		{"config-deleted", removeBlob(imageID)},
		{"manifest-deleted", removeBlob(manifestDigest)},
		{"config-damaged", func(t *testing.T, s *Store, img *Image) {
			if err := os.WriteFile(s.BlobPath(img.ID), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name+"/by-tag", func(t *testing.T) {
			s := newStore(t)
			img := writeTestImage(t, s, newTestImage(t, "keep", 1, Gzip, "keep:1"))
			writeTestImage(t, s, newTestImage(t, "warm", 1, Gzip, "warm:1"))
			writeTestImage(t, s, newTestImage(t, "other", 1, Gzip, "other:1"))
			if _, err := s.Remove(ctx, "warm:1", RemoveOptions{}); err != nil {
				t.Fatalf("Remove(warm:1) = %v", err)
			}
			tc.damage(t, s, img)
			got, err := s.Remove(ctx, "keep:1", RemoveOptions{})
			if err != nil || len(got) != 2 || got[0].Untagged != "keep:1" || got[1].Deleted == "" {
				t.Fatalf("Remove(keep:1) = %q, %v; want it untagged and its entry deleted", lines(got), err)
			}
			if imgs, broken, err := s.ImagesAndBroken(); err != nil || len(imgs) != 1 || len(broken) != 0 {
				t.Fatalf("ImagesAndBroken() = %d images, broken %+v, %v; want other:1 alone", len(imgs), broken, err)
			}
		})
		t.Run(tc.name+"/broken-child", func(t *testing.T) {
			s := newStore(t)
			parent := writeTestImage(t, s, newTestImage(t, "parent", 1, Gzip, "parent:1"))
			child := childOf(t, s, parent, "child", "child:1")
			writeTestImage(t, s, newTestImage(t, "warm", 1, Gzip, "warm:1"))
			if _, err := s.Remove(ctx, "warm:1", RemoveOptions{}); err != nil {
				t.Fatalf("Remove(warm:1) = %v", err)
			}
			// the child makes a hard conflict while it reads
			if got, err := s.Remove(ctx, parent.ID.String(), RemoveOptions{}); err == nil {
				t.Fatalf("Remove(parent ID) with a child = %q, nil; want a conflict", lines(got))
			}
			tc.damage(t, s, child)
			got, err := s.Remove(ctx, parent.ID.String(), RemoveOptions{})
			want := "Untagged: parent:1\nDeleted: " + parent.ID.String()
			if err != nil || lines(got) != want {
				t.Fatalf("Remove(parent ID) with a broken child = %q, %v; want %q", lines(got), err, want)
			}
		})
	}
}
