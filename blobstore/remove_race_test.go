package blobstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// rmi of an image by ID while tags land on it, fired from rmi's own conflict checks
// (the Running and InUse hooks), between its look at the image and its delete, by
// a writer that does not wait for Remove (tagUnordered): rmi must delete it and
// list what it removed, or fail; never succeed doing nothing.
func TestRemoveByIDTaggedMeanwhile(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		tags  []string // the image's tags before rmi
		force bool
		hook  string   // Running or InUse: where the tags land
		call  int      // on the hook's call number call (1 if 0)
		add   []string // tags added
		want  string   // lines, %s for the ID
		err   string   // the error wanted, %s for the short ID; "" for none
	}{
		{name: "force-untags-new-tag-too", tags: []string{"keep:1", "keep:2"}, force: true, hook: "Running",
			add: []string{"keep:3"}, want: "Untagged: keep:1\nUntagged: keep:2\nUntagged: keep:3\nDeleted: %s"},
		{name: "force-untagged-image", force: true, hook: "Running",
			add: []string{"new:1"}, want: "Untagged: new:1\nDeleted: %s"},
		{name: "untagged-image-gets-one-tag", hook: "InUse",
			add: []string{"new:1"}, want: "Untagged: new:1\nDeleted: %s"},
		{name: "untagged-image-gets-one-tag-running", hook: "Running",
			add: []string{"new:1"}, want: "Untagged: new:1\nDeleted: %s"},
		{name: "untagged-image-gets-two-tags", hook: "InUse", add: []string{"new:1", "new:2"},
			err: "conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories"},
		// docker too: the tag lands before the untag, the second look finds it
		{name: "one-tag-gets-another-before-untag", tags: []string{"keep:1"}, hook: "InUse",
			add: []string{"new:1"}, want: "Untagged: keep:1",
			err: "conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories"},
		{name: "one-tag-gets-another-after-untag", tags: []string{"keep:1"}, hook: "InUse", call: 2,
			add: []string{"new:1"}, want: "Untagged: keep:1\nUntagged: new:1\nDeleted: %s"},
		{name: "force-one-tag-gets-another-after-untag", tags: []string{"keep:1"}, force: true, hook: "Running", call: 2,
			add: []string{"new:1"}, want: "Untagged: keep:1\nUntagged: new:1\nDeleted: %s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tagRaceStore(t)
			img := writeTestImage(t, s, newTestImage(t, "victim", 1, Gzip, tc.tags...))
			fired, call := 0, max(tc.call, 1)
			hook := func(got *Image) ([]string, error) {
				if fired++; fired == call {
					for _, tag := range tc.add {
						if err := tagUnordered(ctx, s, got, tag); err != nil {
							t.Errorf("Tag(%s) = %v", tag, err)
						}
					}
				}
				return nil, nil
			}
			opts := RemoveOptions{Force: tc.force}
			if tc.hook == "Running" {
				opts.Running = hook
			} else {
				opts.InUse = hook
			}
			got, err := s.Remove(ctx, img.ID.String(), opts)
			if fired < call {
				t.Fatalf("%s called %d times, want %d (the test lost its hook)", tc.hook, fired, call)
			}
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, img.ID)
			}
			if tc.err != "" {
				wantErr := fmt.Sprintf(tc.err, ShortID(img.ID))
				if err == nil || err.Error() != wantErr || lines(got) != want {
					t.Fatalf("Remove(id) = %q, %v; want %q and %q", lines(got), err, want, wantErr)
				}
				checkUsable(t, s)
				return
			}
			if err != nil || lines(got) != want {
				t.Fatalf("Remove(id) = %q, %v; want %q", lines(got), err, want)
			}
			if _, err := s.Resolve(img.ID.String()); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Resolve(id) after rmi = %v, want %v", err, ErrNotFound)
			}
			checkUsable(t, s)
		})
	}
}

// A tag on every look: rmi gives up after removeTries, with an error.
func TestRemoveByIDRetaggedEveryTime(t *testing.T) {
	ctx := context.Background()
	s := tagRaceStore(t)
	img := writeTestImage(t, s, newTestImage(t, "victim", 1, Gzip))
	n := 0
	opts := RemoveOptions{InUse: func(got *Image) ([]string, error) {
		n++
		if err := tagUnordered(ctx, s, got, fmt.Sprintf("new:%d", n)); err != nil {
			t.Errorf("Tag(new:%d) = %v", n, err)
		}
		return nil, nil
	}}
	got, err := s.Remove(ctx, img.ID.String(), opts)
	if err == nil {
		t.Fatalf("Remove(id) = %q, nil; want an error", lines(got))
	}
	if imgs, _ := s.Images(); len(imgs) != 3 {
		t.Fatalf("Images() = %d images after a failed rmi, want 3", len(imgs))
	}
	checkUsable(t, s)
}
