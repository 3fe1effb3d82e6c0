package mountcmd

import (
	"fmt"
	"strconv"
	"time"

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

// ellipsis is docker's truncation of CREATED BY.
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// historyRows are history's lines, newest first; a layer's SIZE is its content
// size (sizes from LayerSizes), as docker shows it.
func historyRows(img *blobstore.Image, sizes map[digest.Digest]int64, noTrunc bool) []historyRow {
	var rows []historyRow
	layer := 0
	layers := img.Manifest.Layers
	add := func(created *time.Time, by, comment string, size int64) {
		r := historyRow{ID: "<missing>", CreatedBy: by, Comment: comment, Size: humanSize(size), CreatedSince: "N/A", bytes: strconv.FormatInt(size, 10)}
		if created != nil && !created.IsZero() {
			r.CreatedSince = createdSince(*created)
			r.CreatedAt = created.Format(time.RFC3339)
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
	if len(rows) > 0 {
		rows[0].ID = blobstore.ShortID(img.ID)
		if noTrunc {
			rows[0].ID = img.ID.String()
		}
	}
	if !noTrunc {
		for i := range rows {
			rows[i].CreatedBy = ellipsis(rows[i].CreatedBy, 45)
		}
	}
	return rows
}

func runHistory(cmd *cobra.Command, g *globalOptions, o *historyOptions, ref string) error {
	s, img, err := openAndResolve(cmd, g, ref)
	if err != nil {
		return err
	}
	sizes, err := s.LayerSizes(cmd.Context(), img)
	if err != nil {
		return err
	}
	rows := historyRows(img, sizes, o.noTrunc)
	if !o.human { // docker: exact sizes, and the date instead of the age
		for i := range rows {
			rows[i].CreatedSince, rows[i].Size = rows[i].CreatedAt, rows[i].bytes
		}
	}
	out := cmd.OutOrStdout()
	if o.quiet {
		for _, r := range rows {
			if r.ID != "<missing>" {
				fmt.Fprintln(out, r.ID)
			}
		}
		return nil
	}
	f := o.format
	if f == "" || f == "table" {
		f = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
	}
	header := historyHeader
	if !o.human {
		header.CreatedSince = "CREATED AT"
	}
	return renderRows(cmd.OutOrStdout(), f, rows, header)
}
