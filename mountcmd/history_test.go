package mountcmd

import (
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// histImage is an image whose history is entries (a '+' prefix marks one that
// adds a layer), built on parent (nil: none) as commit and build make them.
func histImage(name string, parent *blobstore.Image, entries ...string) *blobstore.Image {
	img := &blobstore.Image{
		ID:             digest.FromString("config " + name),
		ManifestDigest: digest.FromString("manifest " + name),
	}
	if parent != nil {
		img.Parent = parent.ManifestDigest
		img.Config.History = append(img.Config.History, parent.Config.History...)
		img.Config.RootFS.DiffIDs = append(img.Config.RootFS.DiffIDs, parent.Config.RootFS.DiffIDs...)
		img.Manifest.Layers = append(img.Manifest.Layers, parent.Manifest.Layers...)
	}
	created := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range entries {
		by, layer := strings.CutPrefix(e, "+")
		img.Config.History = append(img.Config.History, ocispec.History{Created: &created, CreatedBy: by, EmptyLayer: !layer})
		if layer {
			d := digest.FromString("layer " + by)
			img.Config.RootFS.DiffIDs = append(img.Config.RootFS.DiffIDs, d)
			img.Manifest.Layers = append(img.Manifest.Layers, ocispec.Descriptor{Digest: d, Size: 10})
		}
	}
	return img
}

func TestHistoryRowsAncestorIDs(t *testing.T) {
	pulled := histImage("pulled", nil, "+ADD rootfs", "CMD sh")
	c1 := histImage("c1", pulled, "+commit 1")
	c2 := histImage("c2", c1, "commit 2")
	built := histImage("built", c2, "ENV A=1", "+RUN touch x", "CMD x")
	orphan := histImage("orphan", histImage("gone", pulled, "+gone"), "+orphan")
	squashed := histImage("squashed", nil, "+ADD rootfs", "CMD sh", "+squash")
	squashed.Parent = pulled.ManifestDigest
	squashed.Config.History[0].EmptyLayer = true
	squashed.Config.RootFS.DiffIDs = squashed.Config.RootFS.DiffIDs[1:]
	squashed.Manifest.Layers = squashed.Manifest.Layers[1:]
	local := []*blobstore.Image{pulled, c1, c2, built, orphan, squashed}
	short := func(img *blobstore.Image) string { return blobstore.ShortID(img.ID) }
	for _, tc := range []struct {
		name string
		img  *blobstore.Image
		want []string // IDs, newest first
	}{
		{"pulled", pulled, []string{short(pulled), "<missing>"}},
		{"commit", c1, []string{short(c1), short(pulled), "<missing>"}},
		{"commit on commit", c2, []string{short(c2), short(c1), short(pulled), "<missing>"}},
		// no intermediate images: the FROM image's ID goes on its own row
		{"build", built, []string{short(built), "<missing>", "<missing>", short(c2), short(c1), short(pulled), "<missing>"}},
		{"parent removed", orphan, []string{short(orphan), "<missing>", "<missing>", "<missing>"}},
		{"squash", squashed, []string{short(squashed), "<missing>", "<missing>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range historyRows(tc.img, local, nil, false) {
				got = append(got, r.ID)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("historyRows(%s) IDs = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
	rows := historyRows(c2, local, nil, true)
	if rows[1].ID != c1.ID.String() {
		t.Errorf("historyRows(c2, noTrunc) row 1 ID = %q, want %q", rows[1].ID, c1.ID)
	}
}

func TestHistoryRowsColumns(t *testing.T) {
	recent := time.Now().Add(-3 * time.Hour)
	long := "/bin/sh -c set -e;\tapk add --no-cache ca-certificates curl tzdata"
	img := &blobstore.Image{ID: digest.FromString("config")}
	img.Config.History = []ocispec.History{
		{CreatedBy: "unknown time", EmptyLayer: true},
		{Created: &recent, CreatedBy: long, Comment: "note", EmptyLayer: true},
	}
	rows := historyRows(img, nil, nil, false)
	if r := rows[0]; r.CreatedSince != "3 hours ago" || r.CreatedAt != time.Unix(recent.Unix(), 0).Format(time.RFC3339) ||
		r.Size != "0B" || r.bytes != "0" || r.Comment != "note" {
		t.Errorf("historyRows row 0 = %+v", r)
	}
	if got, want := rows[0].CreatedBy, "/bin/sh -c set -e; apk add --no-cache ca-cer…"; got != want {
		t.Errorf("truncated CREATED BY = %q, want %q", got, want)
	}
	if got := historyRows(img, nil, nil, true)[0].CreatedBy; got != strings.ReplaceAll(long, "\t", " ") {
		t.Errorf("--no-trunc CREATED BY = %q, want tabs as spaces", got)
	}
	// docker: no age for an unknown time, the Unix epoch as its date
	if r := rows[1]; r.CreatedSince != "" || r.CreatedAt != time.Unix(0, 0).Format(time.RFC3339) {
		t.Errorf("historyRows unknown created = %q, %q", r.CreatedSince, r.CreatedAt)
	}
}
