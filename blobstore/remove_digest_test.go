package blobstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestRemoveUntagsRepoDigests: as docker, deleting a pulled image prints an
// Untagged line for its repo digest (once) and forgets it.
func TestRemoveUntagsRepoDigests(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ arg, want string }{
		{"busybox", "Untagged: busybox:latest|Untagged: busybox@%s|Deleted: %s"},
		{"busybox@%s", "Untagged: busybox@%s|Deleted: %s"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			s := newStore(t)
			img := writeTestImage(t, s, newTestImage(t, "r", 1, Gzip, "busybox"))
			index := sha([]byte("the registry's index"))
			if err := s.AddRepoDigest(ctx, img.ManifestDigest, "docker.io/library/busybox@"+index.String()); err != nil {
				t.Fatal(err)
			}
			arg := strings.ReplaceAll(tc.arg, "%s", index.String())
			lines, err := s.Remove(ctx, arg, RemoveOptions{})
			if err != nil {
				t.Fatalf("Remove(%s) = %v", arg, err)
			}
			var got []string
			for _, l := range lines {
				got = append(got, l.String())
			}
			want := fmt.Sprintf(tc.want, index, img.ID)
			if strings.Join(got, "|") != want {
				t.Errorf("Remove(%s) lines = %q, want %q", arg, got, want)
			}
			if rds, err := s.RepoDigests(img.ManifestDigest); err != nil || len(rds) != 0 {
				t.Errorf("after rmi, RepoDigests = %v, %v; want none", rds, err)
			}
		})
	}
}
