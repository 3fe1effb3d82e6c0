package mountcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

type psOptions struct {
	quiet  bool
	format string
	all    bool // docker's -a; ps lists every container anyway
}

// psRow is one working container as ps shows it; --format templates see its fields.
type psRow struct {
	Name       string    `json:"Name"`
	Image      string    `json:"Image"`   // the ref it was mounted from, or the short image ID
	ImageID    string    `json:"ImageID"` // sha256:<config digest>
	Mountpoint string    `json:"Mountpoint"`
	Status     string    `json:"Status"` // mounted, paused, dead, unmounted
	PID        int       `json:"PID"`    // the server's, while mounted
	ReadOnly   bool      `json:"ReadOnly"`
	Created    time.Time `json:"Created"`
}

func init() { addVerb(newPsCommand) }

func newPsCommand(g *globalOptions) *cobra.Command {
	o := &psOptions{}
	cmd := &cobra.Command{
		Use:   "ps [-a] [-q] [--format TEMPLATE]",
		Short: "List working containers",
		Long: `List working containers: NAME, IMAGE, MOUNTPOINT, STATUS. STATUS is mounted,
paused (held at commit's write barrier), dead (the server died and left a dead
mount: umount clears it) or unmounted (changes kept until rm).
Every container is listed, the unmounted (stopped) ones too, so -a (--all)
changes nothing: it is accepted for docker ps -a's users (rm $(layerfs ps -aq)).
--format takes a Go template over .Name .Image .ImageID .Mountpoint .Status .PID
.ReadOnly .Created, and docker's .Names .State .Mounts .RunningFor .CreatedAt
("table TEMPLATE" adds a header and aligns columns), or "json" for one JSON
object per line.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rows, err := psRows(cmd.Context(), g)
			if err != nil {
				return err
			}
			return writePs(cmd.OutOrStdout(), o, rows)
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "show all containers (the default: ps lists the unmounted ones too)")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "only print names")
	cmd.Flags().StringVar(&o.format, "format", "", `format output: table, table TEMPLATE, json, or a Go template`)
	return cmd
}

func psRows(ctx context.Context, g *globalOptions) ([]psRow, error) {
	ws, err := listContainers(g.root)
	if err != nil {
		return nil, err
	}
	// docker ps shows the ref a container was made from only while it still names
	// the container's image; once untagged or moved to another image, the ID.
	// (An unreadable store leaves the refs as they were.)
	var imgs []*blobstore.Image
	checkRefs := false
	if len(ws) > 0 {
		if s, err := openStore(g); err == nil {
			imgs, err = s.Images()
			checkRefs = err == nil
		}
	}
	var rows []psRow
	for _, w := range ws {
		st, err := w.load()
		if err != nil {
			continue // removed meanwhile
		}
		r := psRow{
			Name:       w.name,
			Image:      st.ImageRef,
			ImageID:    st.ImageID.String(),
			Mountpoint: st.Mountpoint,
			Status:     w.status(st),
			ReadOnly:   st.ReadOnly,
			Created:    st.Created,
		}
		if r.Image == "" || (checkRefs && !refNames(imgs, r.Image, st.ImageID)) {
			r.Image = shortID(st.ImageID.Encoded())
		}
		switch r.Status {
		case statusMounted:
			r.PID = st.PID
			if ss := queryStatus(ctx, w); ss != nil {
				r.PID, r.Mountpoint = ss.PID, ss.Mountpoint
				if ss.Paused {
					r.Status = statusPaused
				}
			}
		case statusUnmounted:
			r.Mountpoint = ""
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// queryStatus asks a live server for its status, briefly; nil if it does not answer.
func queryStatus(ctx context.Context, w *workContainer) *serverStatus {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := dialControl(ctx, w)
	if err != nil {
		return nil
	}
	defer c.Close()
	ss, err := c.Status(ctx)
	if err != nil {
		return nil
	}
	return ss
}

// docker ps's names for the fields a docker user's --format uses.

// Names is docker's .Names: the container's name.
func (r psRow) Names() string { return r.Name }

// State is docker's .State: mounted, paused, dead or unmounted.
func (r psRow) State() string { return r.Status }

// Mounts is docker's .Mounts: here the mountpoint.
func (r psRow) Mounts() string { return r.Mountpoint }

// RunningFor is docker's .RunningFor: how long ago the container was made.
func (r psRow) RunningFor() string { return createdSince(r.Created) }

// CreatedAt is docker's .CreatedAt.
func (r psRow) CreatedAt() string { return r.Created.Format("2006-01-02 15:04:05 -0700 MST") }

// psHeader is the header row a "table" format prints.
var psHeader = map[string]string{
	"Name": "NAME", "Image": "IMAGE", "ImageID": "IMAGE ID", "Mountpoint": "MOUNTPOINT",
	"Status": "STATUS", "PID": "PID", "ReadOnly": "READ ONLY", "Created": "CREATED",
	"Names": "NAMES", "State": "STATE", "Mounts": "MOUNTS", "RunningFor": "CREATED", "CreatedAt": "CREATED AT",
}

func writePs(out io.Writer, o *psOptions, rows []psRow) error {
	switch {
	case o.quiet:
		for _, r := range rows {
			if _, err := fmt.Fprintln(out, r.Name); err != nil {
				return err
			}
		}
		return nil
	case o.format == "json":
		enc := json.NewEncoder(out)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	format := o.format
	if format == "" || format == "table" {
		format = "table {{.Name}}\t{{.Image}}\t{{.Mountpoint}}\t{{.Status}}"
	}
	anyRows := make([]any, len(rows))
	for i, r := range rows {
		anyRows[i] = r
	}
	return renderRows[any](out, format, anyRows, psHeader)
}

// refNames tells whether ref resolves among imgs to the image with config
// digest id.
func refNames(imgs []*blobstore.Image, ref string, id digest.Digest) bool {
	img, err := blobstore.ResolveIn(imgs, ref)
	return err == nil && img.ID == id
}

// shortID is docker's 12-hex-digit image ID.
func shortID(hex string) string {
	if len(hex) > 12 {
		return hex[:12]
	}
	return hex
}
