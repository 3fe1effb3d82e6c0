package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

type psOptions struct {
	quiet   bool
	format  string
	all     bool // docker's -a: the unmounted ones too
	filters []string
	last    int  // -n: the last N created, newest first
	latest  bool // -l: -n 1
	size    bool // -s: the SIZE column
	noTrunc bool // full IDs and commands
}

// psRow is one working container as ps shows it; --format templates see its fields.
type psRow struct {
	Name       string    `json:"Name"`
	Image      string    `json:"Image"`   // the ref it was mounted from, or the short image ID
	ImageID    string    `json:"ImageID"` // sha256:<config digest>
	Mountpoint string    `json:"Mountpoint"`
	Mount      string    `json:"Mount"`  // layerfs's mount state: mounted, paused, dead, unmounted
	Status     string    `json:"Status"` // docker's: "Up 5 minutes", "Exited (0) 2 minutes ago", ...
	PID        int       `json:"PID"`    // the server's, while mounted
	ReadOnly   bool      `json:"ReadOnly"`
	Created    time.Time `json:"Created"`
	ID         string    `json:"ID"`                // the container's 64-hex-digit ID
	Command    string    `json:"Command,omitempty"` // what run runs in it, quoted as docker ps shows it
	Size       string    `json:"Size,omitempty"`    // with -s: the upper dir's size
	// dockerState is docker's word (running, exited, created ...), for status=.
	dockerState string
	exitCode    int               // of its last run, for exited=
	labels      map[string]string // the image's and run's, for label=
}

func init() { addVerb(newPsCommand) }

func newPsCommand(g *globalOptions) *cobra.Command {
	o := &psOptions{}
	cmd := &cobra.Command{
		Use:   "ps [-a] [-q] [--format TEMPLATE]",
		Short: "List working containers",
		Long: `List working containers in docker's columns: CONTAINER ID (12 hex digits; all
64 with --no-trunc), IMAGE, COMMAND (quoted, cut to 20 characters unless
--no-trunc), CREATED, STATUS, MOUNTPOINT (where layerfs serves it, empty when
unmounted; it stands where docker's PORTS, always empty here, would: containers
share the host's network) and NAMES, last (-s adds SIZE after it).
STATUS is docker's: "Up 5 minutes" while run's command runs ("Up 5 minutes
(Paused)" while commit --pause holds it), "Exited (0) 2 minutes ago", "Created"
or "Dead" (the server died and left a dead mount: umount clears it); a container
mounted with layerfs mount that runs nothing is "Mounted" ("Mounted (Paused)").
layerfs mount with no arguments lists the mounted ones and their mountpoints.
As docker ps, it lists the containers in use: mounted, or running a command
(paused too); -a (--all) lists every one, the unmounted (stopped) ones with
their kept changes too, as do -n, -l and a status= filter (exited= needs -a,
as docker's). So rm -f $(layerfs ps -q) leaves the stopped ones, as docker's.
-q prints the IDs alone (a container whose state cannot be read: its name).
--format takes a Go template over .ID .Image .Command .RunningFor .Status .Ports
.Names (docker's columns), docker's .State (running, exited, created, paused,
dead, or mounted) .Mounts .CreatedAt .Labels .Label "KEY" .Networks (host)
.Size, and layerfs's .Name .ImageID .Mountpoint .Mount (mounted, paused, dead
or unmounted) .PID .ReadOnly .Created ("table TEMPLATE" adds a header and
aligns columns), or "json" for one JSON object per line.
--filter takes docker's name= (a regular expression), id= (a prefix), status=
(docker's running, exited, created, paused, dead, or a .Mount word: mounted,
unmounted), exited= (an exit code: the exited containers whose last run ended
with it), ancestor= (an image: its containers), before= and since= (a
container), and label=KEY[=VALUE] (the image's labels and run's --label);
Rows come newest first, as docker's; -n N and -l show the N (1) created last.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := parsePsFilters(o.filters)
			if err != nil {
				return err
			}
			if err := o.checkFormat(cmd.Flags().Changed("size")); err != nil {
				return err
			}
			rows, imgs, err := psRows(cmd.Context(), g, o.size)
			if err != nil {
				return err
			}
			if rows, err = filter.apply(rows, imgs); err != nil {
				return err
			}
			if o.latest {
				o.last = 1
			}
			if !o.all && o.last <= 0 && !filter.asksState() {
				rows = slices.DeleteFunc(rows, func(r psRow) bool { return !r.active() })
			}
			// Newest first, as docker's; -n and -l keep the first n.
			n := len(rows)
			if o.last > 0 {
				n = o.last
			}
			rows = lastCreated(rows, n)
			if !o.noTrunc {
				for i := range rows {
					rows[i].truncate()
				}
			}
			return writePs(cmd.OutOrStdout(), o, rows)
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "show all containers (default shows just the mounted and running)")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "only print container IDs")
	cmd.Flags().StringVar(&o.format, "format", "", `format output: table, table TEMPLATE, json, or a Go template`)
	cmd.Flags().StringArrayVarP(&o.filters, "filter", "f", nil, "filter output (name=, id=, status=, exited=, ancestor=, before=, since=, label=)")
	cmd.Flags().IntVarP(&o.last, "last", "n", 0, "show the n containers created last")
	cmd.Flags().BoolVarP(&o.latest, "latest", "l", false, "show the container created last")
	cmd.Flags().BoolVarP(&o.size, "size", "s", false, "show the size of each container's changes")
	cmd.Flags().BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate IDs and commands")
	return cmd
}

// checkFormat runs a --format template once on an empty row before anything is
// listed, as docker ps does: a bad field fails when no container matches (or
// with -q) too, and a template that shows .Size turns -s on unless --size was
// given (docker/cli's list.go).
func (o *psOptions) checkFormat(sizeGiven bool) error {
	if o.format == "" || o.format == "json" || o.format == "table" {
		return nil
	}
	tmpl, _, err := parseFormat(o.format)
	if err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	if err := tmpl.Execute(io.Discard, psRow{}); err != nil {
		return fmt.Errorf("failed to execute template: %w", err)
	}
	// Any mention, however reached ($x.Size, (.).Size): docker records the
	// fields a run of the template reads; an explicit --size=false wins.
	if !sizeGiven && sizeField.MatchString(o.format) {
		o.size = true
	}
	return nil
}

// sizeField finds a template's use of .Size.
var sizeField = regexp.MustCompile(`\.Size\b`)

func psRows(ctx context.Context, g *globalOptions, size bool) ([]psRow, []*blobstore.Image, error) {
	ws, err := listContainers(g.root)
	if err != nil {
		return nil, nil, err
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
		if _, removed := settleLostRun(w); removed {
			continue // a run --rm whose run was killed: removed now
		}
		st, err := w.load()
		if errors.Is(err, errNoSuchContainer) {
			continue // removed meanwhile
		}
		if err != nil { // shown, so that rm -f can be found for it
			rows = append(rows, psRow{Name: w.name, Mount: statusBroken, Status: "Broken", dockerState: statusBroken})
			continue
		}
		r := psRow{
			Name:       w.name,
			Image:      st.ImageRef,
			ImageID:    st.ImageID.String(),
			Mountpoint: st.Mountpoint,
			Mount:      w.status(st),
			ReadOnly:   st.ReadOnly,
			Created:    st.Created,
			ID:         containerID(st),
		}
		if r.Image == "" || (checkRefs && !refNames(imgs, r.Image, st.ImageID)) {
			r.Image = shortID(st.ImageID.Encoded())
		}
		switch r.Mount {
		case statusMounted:
			r.PID = st.PID
			if ss := queryStatus(ctx, w); ss != nil {
				r.PID, r.Mountpoint = ss.PID, ss.Mountpoint
				if ss.Paused {
					r.Mount = statusPaused
				}
			}
		case statusUnmounted:
			r.Mountpoint = ""
		}
		var img *blobstore.Image
		for _, i := range imgs {
			if i.ID == st.ImageID {
				img = i
			}
		}
		sr, spec, ok := savedCommand(w, img)
		if ok {
			r.Command = strconv.Quote(strings.Join(spec.Args, " "))
		}
		r.labels = containerLabels(img, sr)
		rs, rec := loadRunState(w), loadExit(w)
		running := r.Mount != statusUnmounted && rs.alive()
		r.dockerState = dockerStatus(r.Mount, running, ranBefore(w))
		if lost := lostRun(w, rs, rec); lost != nil { // killed with its monitor, not settled yet
			rec = lost
		}
		switch {
		case rec != nil:
			r.exitCode = rec.ExitCode
		case r.dockerState == "exited" && noExitRecorded(w, rs, rec):
			r.exitCode = unknownExitCode // no exited=N takes it
		}
		var started, finished time.Time
		if running {
			started = rs.Started
		}
		if rec != nil {
			finished = rec.Finished
		}
		r.Status = statusText(r.dockerState, running, started, finished, r.exitCode, time.Now())
		if size {
			n, err := treeSize(w.upperPath(st))
			if err != nil {
				return nil, nil, fmt.Errorf("container %s: size: %w", w.name, err)
			}
			r.Size = units.HumanSizeWithPrecision(float64(n), 3)
		}
		rows = append(rows, r)
	}
	return rows, imgs, nil
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

// statusText is docker ps's STATUS for a container in docker's state (as
// dockerStatus words it), as moby's State.String: "Up 5 minutes", "Up 5
// minutes (Paused)", "Exited (137) 2 minutes ago", "Created", "Dead". layerfs
// has a state docker has not, a mount no command runs in: "Mounted" ("Mounted
// (Paused)" held at commit's barrier), a word docker's STATUS never shows.
func statusText(state string, running bool, started, finished time.Time, exitCode int, now time.Time) string {
	ago := func(t time.Time) string { return units.HumanDuration(now.Sub(t)) }
	switch state {
	case "running":
		return "Up " + ago(started)
	case statusPaused:
		if running {
			return "Up " + ago(started) + " (Paused)"
		}
		return "Mounted (Paused)"
	case statusMounted:
		return "Mounted"
	case statusDead:
		return "Dead"
	case "exited":
		if finished.IsZero() { // ran before exits were kept
			return fmt.Sprintf("Exited (%d)", exitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", exitCode, ago(finished))
	case statusBroken:
		return "Broken"
	}
	return "Created"
}

// docker ps's names for the fields a docker user's --format uses.

// Names is docker's .Names: the container's name.
func (r psRow) Names() string { return r.Name }

// State is docker's .State: running, exited, created, paused, dead, or
// mounted (a mount no command runs in).
func (r psRow) State() string { return r.dockerState }

// Mounts is docker's .Mounts: here the mountpoint.
func (r psRow) Mounts() string { return r.Mountpoint }

// RunningFor is docker's .RunningFor: how long ago the container was made.
func (r psRow) RunningFor() string { return createdSince(r.Created) }

// CreatedAt is docker's .CreatedAt.
func (r psRow) CreatedAt() string { return r.Created.Format("2006-01-02 15:04:05 -0700 MST") }

// Ports is docker's .Ports: none are published (containers share the host's
// network).
func (r psRow) Ports() string { return "" }

// Networks is docker's .Networks: the host's.
func (r psRow) Networks() string { return "host" }

// Labels is docker's .Labels: KEY=VALUE pairs, comma-separated, sorted.
func (r psRow) Labels() string {
	var out []string
	for k, v := range r.labels {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// Label is docker's .Label "KEY": that label's value.
func (r psRow) Label(k string) string { return r.labels[k] }

// MarshalJSON is ps --format json's line: the fields, and docker's names for
// them (Names, State, CreatedAt, RunningFor, Labels, Ports, Networks) that
// scripts read.
func (r psRow) MarshalJSON() ([]byte, error) {
	type plain psRow
	return marshalJSON(struct {
		plain
		Names      string `json:"Names"`
		State      string `json:"State"`
		CreatedAt  string `json:"CreatedAt"`
		RunningFor string `json:"RunningFor"`
		Labels     string `json:"Labels"`
		Ports      string `json:"Ports"`
		Networks   string `json:"Networks"`
	}{plain(r), r.Names(), r.State(), r.CreatedAt(), r.RunningFor(), r.Labels(), r.Ports(), r.Networks()}, "")
}

// truncate shortens the ID to docker's 12 digits and the command to docker's
// 20 characters (its formatter.Ellipsis, then strconv.Quote).
func (r *psRow) truncate() {
	r.ID = shortID(r.ID)
	if c, err := strconv.Unquote(r.Command); err == nil && len([]rune(c)) > 20 {
		r.Command = strconv.Quote(string([]rune(c)[:19]) + "…")
	}
}

// psTableFormat is docker ps's table (docker/cli's defaultContainerTableFormat):
// NAMES last, so that awk '{print $NF}' finds them; -s adds SIZE after it, as
// docker's. MOUNTPOINT takes the place of docker's PORTS, which is always
// empty here: a working container's mountpoint is what layerfs's ps is for.
const psTableFormat = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Mountpoint}}\t{{.Names}}"

// psHeader is the header row a "table" format prints.
var psHeader = map[string]string{
	"Name": "NAME", "Image": "IMAGE", "ImageID": "IMAGE ID", "Mountpoint": "MOUNTPOINT",
	"Mount": "MOUNT", "Status": "STATUS", "PID": "PID", "ReadOnly": "READ ONLY", "Created": "CREATED",
	"ID": "CONTAINER ID", "Command": "COMMAND", "Size": "SIZE",
	"Names": "NAMES", "State": "STATE", "Mounts": "MOUNTS", "RunningFor": "CREATED", "CreatedAt": "CREATED AT",
	"Ports": "PORTS", "Networks": "NETWORKS", "Labels": "LABELS",
}

func writePs(out io.Writer, o *psOptions, rows []psRow) error {
	switch {
	case o.quiet:
		for _, r := range rows {
			id := r.ID
			if id == "" { // broken: no state to read the ID from, and rm finds it by name
				id = r.Name
			}
			if _, err := fmt.Fprintln(out, id); err != nil {
				return err
			}
		}
		return nil
	case o.format == "json":
		return writeJSONLines(out, rows)
	}
	format := o.format
	if format == "" || format == "table" {
		format = psTableFormat
		if o.size {
			format += "\t{{.Size}}"
		}
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

// active reports whether docker ps would list r without -a: its container is
// in use, mounted (by mount, or for a run's command) or running, paused too.
// Not a dead mount (the server died: docker lists dead containers with -a
// only), nor one whose state cannot be read.
func (r psRow) active() bool {
	switch r.dockerState {
	case "running", statusMounted, statusPaused:
		return true
	}
	return false
}
