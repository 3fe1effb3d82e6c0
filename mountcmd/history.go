package mountcmd

import (
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

func init() { addVerb(newHistoryCommand) }

type historyOptions struct {
	quiet   bool
	noTrunc bool
	human   bool
	format  string
}

func newHistoryCommand(g *globalOptions) *cobra.Command {
	o := &historyOptions{}
	cmd := &cobra.Command{
		Use:          "history [-q] [--no-trunc] IMAGE",
		Short:        "Show the history of an image, newest first",
		Args:         exactArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHistory(cmd, g, o, args[0])
		},
	}
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	cmd.Flags().BoolVarP(&o.human, "human", "H", true, "print sizes and dates in human readable format")
	cmd.Flags().StringVar(&o.format, "format", "", "format output using a Go template (or table TEMPLATE)")
	return cmd
}

// historyRow is one line of history; its fields are the --format names.
type historyRow struct {
	ID           string
	CreatedSince string
	CreatedAt    string
	CreatedBy    string
	Size         string
	Comment      string
	bytes        string // Size in bytes, for --human=false
}

var historyHeader = historyRow{ID: "IMAGE", CreatedSince: "CREATED", CreatedAt: "CREATED AT", CreatedBy: "CREATED BY", Size: "SIZE", Comment: "COMMENT"}

// docker's default formats; --human=false shows the date instead of the age.
const (
	historyTable      = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
	historyTableExact = "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
)

// ellipsis is docker's truncation of CREATED BY.
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// historyEpoch: docker shows no age for a time before 2000 (a missing created, or
// SOURCE_DATE_EPOCH=0).
var historyEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// historyRows are history's lines, newest first; a layer's SIZE is its content
// size (sizes from LayerSizes), as docker shows it. The top row is img's; rows
// made by one of its local ancestors (imgs, see ancestorRows) carry that image's
// ID; the rest are <missing>.
func historyRows(img *blobstore.Image, imgs []*blobstore.Image, sizes map[digest.Digest]int64, noTrunc bool) []historyRow {
	var rows []historyRow
	layer := 0
	layers := img.Manifest.Layers
	add := func(created *time.Time, by, comment string, size int64) {
		// As docker: times in whole seconds and the local zone, the epoch when
		// unknown; tabs in CREATED BY become spaces.
		t := time.Unix(0, 0)
		if created != nil {
			t = time.Unix(created.Unix(), 0)
		}
		r := historyRow{ID: "<missing>", CreatedBy: strings.ReplaceAll(by, "\t", " "), Comment: comment,
			Size: humanSize(size), CreatedAt: t.Format(time.RFC3339), bytes: strconv.FormatInt(size, 10)}
		if t.After(historyEpoch) {
			r.CreatedSince = units.HumanDuration(time.Since(t)) + " ago"
		}
		rows = append(rows, r)
	}
	for _, h := range img.Config.History {
		var size int64
		if !h.EmptyLayer && layer < len(layers) {
			size = img.LayerContentSize(sizes, layer)
			layer++
		}
		add(h.Created, h.CreatedBy, h.Comment, size)
	}
	for ; layer < len(layers); layer++ { // layers the history does not describe
		add(img.Config.Created, "", "", img.LayerContentSize(sizes, layer))
	}
	// newest first
	for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
		rows[i], rows[j] = rows[j], rows[i]
	}
	ids := ancestorRows(img, imgs, len(rows))
	if len(rows) > 0 {
		ids[0] = img.ID
	}
	for i, id := range ids {
		rows[i].ID = blobstore.ShortID(id)
		if noTrunc {
			rows[i].ID = id.String()
		}
	}
	if !noTrunc {
		for i := range rows {
			rows[i].CreatedBy = ellipsis(rows[i].CreatedBy, 45)
		}
	}
	return rows
}

// ancestorRows maps rows of img's history (n rows, newest first) to the local
// images that made them, as docker's classic store shows a commit's or build's
// parent on its row. It walks the parent links commit and build record (the
// base-image annotation, Image.Parent) through imgs; a parent's ID goes on the row
// of its own newest history entry. The walk ends at a parent that is not local,
// has no history, or whose history and layers are not where its child's begin
// (a squash keeps the history but not the layers): those rows stay <missing>,
// rather than name an image that did not make them. Row 0 is left to the caller.
//
// Docker's classic store puts the parent on the next row down, which is the same
// row while every image adds one entry; a build here makes no intermediate images,
// so its FROM image's row is found by history length instead.
func ancestorRows(img *blobstore.Image, imgs []*blobstore.Image, n int) map[int]digest.Digest {
	ids := map[int]digest.Digest{}
	seen := map[digest.Digest]bool{img.ManifestDigest: true}
	for child := img; child.Parent != "" && !seen[child.Parent]; {
		seen[child.Parent] = true
		i := slices.IndexFunc(imgs, func(p *blobstore.Image) bool { return p.ManifestDigest == child.Parent })
		if i < 0 {
			break
		}
		p := imgs[i]
		if len(p.Config.History) == 0 || !historyPrefix(p, img) {
			break
		}
		if row := n - len(p.Config.History); row > 0 {
			if _, ok := ids[row]; !ok {
				ids[row] = p.ID
			}
		}
		child = p
	}
	return ids
}

// historyPrefix reports whether img begins with all of p's history entries and
// layers, and p's history describes all its layers (so that its newest entry is
// its newest row).
func historyPrefix(p, img *blobstore.Image) bool {
	ph, h := p.Config.History, img.Config.History
	pd, d := p.Config.RootFS.DiffIDs, img.Config.RootFS.DiffIDs
	if len(ph) > len(h) || len(pd) > len(d) || !slices.Equal(pd, d[:len(pd)]) {
		return false
	}
	nonEmpty := 0
	for i, e := range ph {
		f := h[i]
		if e.CreatedBy != f.CreatedBy || e.Comment != f.Comment || e.Author != f.Author ||
			e.EmptyLayer != f.EmptyLayer || (e.Created == nil) != (f.Created == nil) ||
			(e.Created != nil && !e.Created.Equal(*f.Created)) {
			return false
		}
		if !e.EmptyLayer {
			nonEmpty++
		}
	}
	return nonEmpty == len(pd)
}

func runHistory(cmd *cobra.Command, g *globalOptions, o *historyOptions, ref string) error {
	s, img, err := openAndResolve(cmd, g, ref)
	if err != nil {
		return err
	}
	imgs, err := s.Images()
	if err != nil {
		return err
	}
	sizes, err := s.LayerSizes(cmd.Context(), img)
	if err != nil {
		return err
	}
	rows := historyRows(img, imgs, sizes, o.noTrunc)
	if !o.human { // docker: exact sizes, and the date instead of the age
		for i := range rows {
			rows[i].CreatedSince, rows[i].Size = rows[i].CreatedAt, rows[i].bytes
		}
	}
	out := cmd.OutOrStdout()
	f := o.format
	switch {
	case f == "json":
		return writeHistoryJSON(out, rows)
	case (f == "" || f == "table") && o.quiet:
		// docker's quiet format is {{.ID}} over every row, <missing> too; a
		// --format of its own wins over -q.
		f = "{{.ID}}"
	case (f == "" || f == "table") && !o.human:
		f = historyTableExact
	case f == "" || f == "table":
		f = historyTable
	}
	return renderRows(out, f, rows, historyHeader)
}

// writeHistoryJSON is --format json: one object a line, with docker's keys
// (sorted, as docker marshals them from a map).
func writeHistoryJSON(w io.Writer, rows []historyRow) error {
	for _, r := range rows {
		if err := writeJSON(w, map[string]string{"ID": r.ID, "CreatedSince": r.CreatedSince, "CreatedAt": r.CreatedAt,
			"CreatedBy": r.CreatedBy, "Size": r.Size, "Comment": r.Comment}, ""); err != nil {
			return err
		}
	}
	return nil
}
