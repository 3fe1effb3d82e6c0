package mountcmd

import (
	"fmt"
	"strings"
	"testing"
)

func TestImageRefRows(t *testing.T) {
	d1 := "sha256:" + strings.Repeat("1", 64)
	d2 := "sha256:" + strings.Repeat("2", 64)
	base := imageRow{Repository: "<none>", Tag: "<none>", Digest: "<none>", ID: "abc"}
	for _, tc := range []struct {
		name        string
		tags, rds   []string
		want        []string // "repo tag digest"
		wantFullRef []string
	}{
		{"local build", []string{"docker.io/library/busybox:latest"}, nil,
			[]string{"busybox latest <none>"}, []string{"docker.io/library/busybox:latest"}},
		{"pulled", []string{"docker.io/library/busybox:latest", "docker.io/me/bb:v1"}, []string{"docker.io/library/busybox@" + d1},
			[]string{"busybox latest " + d1, "me/bb v1 <none>"}, nil},
		{"pulled by digest only", nil, []string{"localhost:5000/app@" + d2},
			[]string{"localhost:5000/app <none> " + d2}, []string{"localhost:5000/app"}},
		{"dangling", nil, nil, []string{"<none> <none> <none>"}, []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := imageRefRows(base, tc.tags, tc.rds, false)
			var got, full []string
			for _, r := range rows {
				got = append(got, fmt.Sprintf("%s %s %s", r.Repository, r.Tag, r.Digest))
				full = append(full, r.full)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("imageRefRows(%v, %v) = %q, want %q", tc.tags, tc.rds, got, tc.want)
			}
			if tc.wantFullRef != nil && strings.Join(full, "|") != strings.Join(tc.wantFullRef, "|") {
				t.Errorf("full refs = %q, want %q", full, tc.wantFullRef)
			}
		})
	}
}

// TestImageRefRowsAllDigests: images --digests shows a row per recorded digest
// of a repository, as docker's (one, the first, hid a re-pull's newer digest).
func TestImageRefRowsAllDigests(t *testing.T) {
	d1 := "sha256:" + strings.Repeat("1", 64)
	d2 := "sha256:" + strings.Repeat("2", 64)
	base := imageRow{Repository: "<none>", Tag: "<none>", Digest: "<none>", ID: "abc"}
	rows := imageRefRows(base, []string{"docker.io/library/bb:1"}, []string{"docker.io/library/bb@" + d1, "docker.io/library/bb@" + d2, "docker.io/other/x@" + d1}, true)
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s %s %s", r.Repository, r.Tag, r.Digest))
	}
	want := []string{"bb 1 " + d1, "bb 1 " + d2, "other/x <none> " + d1}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("rows = %q, want %q", got, want)
	}
}
