package blobstore

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestRemoveRepoDigests: rmi and the repo digests pulls and pushes record, as
// docker's ImageDelete: name@digest drops that digest only and deletes the image
// only when nothing else names it; the last tag of a repository takes that
// repository's digests along; deleting an image untags all its digests.
func TestRemoveRepoDigests(t *testing.T) {
	ctx := context.Background()
	const bb = "docker.io/library/busybox@{d}"
	const reg = "127.0.0.1:5055/bb@{d}"
	for _, tc := range []struct {
		name      string
		tags      []string // besides busybox:latest
		digests   []string // recorded ({d}: the digest)
		arg       string
		want      string // lines, | between; {d} is the digest, {id} the image ID
		wantTags  []string
		wantDigs  []string
		wantGone  bool
		wantError bool
	}{
		{name: "by tag deletes", digests: []string{bb}, arg: "busybox",
			want: "Untagged: busybox:latest|Untagged: busybox@{d}|Deleted: {id}", wantGone: true},
		{name: "by digest, only reference", tags: []string{"-"}, digests: []string{bb}, arg: "busybox@{d}",
			want: "Untagged: busybox@{d}|Deleted: {id}", wantGone: true},
		{name: "by digest keeps the tag", digests: []string{bb}, arg: "busybox@{d}",
			want: "Untagged: busybox@{d}", wantTags: []string{"busybox:latest"}},
		{name: "by digest keeps other repository's tags", tags: []string{"127.0.0.1:5055/bb:latest", "127.0.0.1:5055/bb:v2"},
			digests: []string{reg}, arg: "127.0.0.1:5055/bb@{d}",
			want:     "Untagged: 127.0.0.1:5055/bb@{d}",
			wantTags: []string{"127.0.0.1:5055/bb:latest", "127.0.0.1:5055/bb:v2", "busybox:latest"}},
		{name: "by digest of another repository", digests: []string{reg}, arg: "127.0.0.1:5055/bb@{d}",
			want: "Untagged: 127.0.0.1:5055/bb@{d}", wantTags: []string{"busybox:latest"}},
		{name: "unrecorded digest", digests: []string{reg}, arg: "busybox@{d}", wantError: true,
			wantTags: []string{"busybox:latest"}, wantDigs: []string{reg}},
		{name: "last tag of the repository", tags: []string{"127.0.0.1:5055/bb:latest"}, digests: []string{reg, bb},
			arg:      "127.0.0.1:5055/bb:latest",
			want:     "Untagged: 127.0.0.1:5055/bb:latest|Untagged: 127.0.0.1:5055/bb@{d}",
			wantTags: []string{"busybox:latest"}, wantDigs: []string{bb}},
		{name: "not the last tag of the repository", tags: []string{"127.0.0.1:5055/bb:latest", "127.0.0.1:5055/bb:v2"},
			digests: []string{reg}, arg: "127.0.0.1:5055/bb:latest",
			want:     "Untagged: 127.0.0.1:5055/bb:latest",
			wantTags: []string{"127.0.0.1:5055/bb:v2", "busybox:latest"}, wantDigs: []string{reg}},
		{name: "by ID, one repository", digests: []string{bb}, arg: "{id}",
			want: "Untagged: busybox:latest|Untagged: busybox@{d}|Deleted: {id}", wantGone: true},
		{name: "by ID, two repositories", digests: []string{reg}, arg: "{id}", wantError: true,
			wantTags: []string{"busybox:latest"}, wantDigs: []string{reg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			tags := []string{"busybox"}
			if len(tc.tags) > 0 && tc.tags[0] == "-" {
				tags = nil
			}
			img := writeTestImage(t, s, newTestImage(t, "r", 1, Gzip, tags...))
			for _, tag := range tc.tags {
				if tag != "-" {
					if err := s.Tag(ctx, img, tag); err != nil {
						t.Fatal(err)
					}
				}
			}
			d := img.ManifestDigest.String()
			fill := strings.NewReplacer("{d}", d, "{id}", img.ID.String()).Replace
			for _, rd := range tc.digests {
				if err := s.AddRepoDigest(ctx, img.ManifestDigest, fill(rd)); err != nil {
					t.Fatal(err)
				}
			}
			arg := fill(tc.arg)
			lines, err := s.Remove(ctx, arg, RemoveOptions{})
			if (err != nil) != tc.wantError {
				t.Fatalf("Remove(%s) = %v, want error %v", arg, err, tc.wantError)
			}
			var got []string
			for _, l := range lines {
				got = append(got, l.String())
			}
			if want := fill(tc.want); tc.want != "" && strings.Join(got, "|") != want {
				t.Errorf("Remove(%s) lines = %q, want %q", arg, got, want)
			}
			after, err := s.reload(img.ManifestDigest)
			if tc.wantGone {
				if err == nil {
					t.Errorf("after Remove(%s) the image is still there (tags %q)", arg, after.Tags)
				}
				if rds, err := s.RepoDigests(img.ManifestDigest); err != nil || len(rds) != 0 {
					t.Errorf("after Remove(%s), RepoDigests = %v, %v; want none", arg, rds, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("after Remove(%s) the image is gone: %v", arg, err)
			}
			var familiar []string
			for _, tag := range after.Tags {
				familiar = append(familiar, FamiliarString(tag))
			}
			slices.Sort(familiar)
			if !slices.Equal(familiar, tc.wantTags) {
				t.Errorf("after Remove(%s) tags = %q, want %q", arg, familiar, tc.wantTags)
			}
			var wantDigs []string
			for _, rd := range tc.wantDigs {
				wantDigs = append(wantDigs, fill(rd))
			}
			if !slices.Equal(after.PulledDigests, wantDigs) {
				t.Errorf("after Remove(%s) repo digests = %q, want %q", arg, after.PulledDigests, wantDigs)
			}
		})
	}
}
