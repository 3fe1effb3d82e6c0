package mountcmd

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
)

type systemDfOptions struct {
	verbose bool
	format  string
}

func newSystemDfCommand(g *globalOptions) *cobra.Command {
	o := &systemDfOptions{}
	cmd := &cobra.Command{
		Use:   "df [-v] [--format TEMPLATE]",
		Short: "Show disk usage",
		Long: `Show the space images, working containers, their anonymous volumes and the
build cache take, as docker system df: TYPE TOTAL ACTIVE SIZE RECLAIMABLE.

Images: SIZE is their layers' content (each layer once, as images counts it);
active ones have a working container, mounted or not; reclaimable is what the
layers of the others hold. Containers: SIZE is their upper dirs; active ones are
mounted (or paused); reclaimable is the unmounted ones' (dead ones are kept by
prune). Local Volumes: the anonymous volumes run made for images' VOLUMEs, which
go with their container. Build Cache: RUN cache mounts and step cache entries;
active ones are held by a build.

--format takes a Go template over .Type .TotalCount .Active .Size .Reclaimable,
"table TEMPLATE", or "json" (one object per line). With -v, every image,
container, volume and cache record is listed; there --format json prints one
object {Images, Containers, Volumes, BuildCache} and a template runs once on it.`,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			du, err := diskUsageOf(cmd.Context(), g)
			if err != nil {
				return err
			}
			if o.verbose {
				return du.writeVerbose(cmd.OutOrStdout(), o.format)
			}
			return du.writeSummary(cmd.OutOrStdout(), o.format)
		},
	}
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "show detailed information on space usage")
	cmd.Flags().StringVar(&o.format, "format", "", "format output: table, table TEMPLATE, json, or a Go template")
	return cmd
}

// diskUsage is what system df counts.
type diskUsage struct {
	images     []dfImage
	layers     map[digest.Digest]int64 // every image's layers, by diffID: content bytes
	activeLyrs map[digest.Digest]bool  // layers of images a container uses
	containers []dfContainer
	cache      []build.CacheRecord
}

type dfImage struct {
	img        *blobstore.Image
	size       int64 // content of all its layers
	shared     int64 // content of its layers other images have too
	containers int
}

type dfContainer struct {
	row     psRow // name, image, status, created
	size    int64 // upper dir
	volumes []containerVolume
}

// diskUsageOf measures the store under g.root.
func diskUsageOf(ctx context.Context, g *globalOptions) (*diskUsage, error) {
	s, listed, err := openImages(g)
	if err != nil {
		return nil, err
	}
	// One image per ID: the store may list an ID under several tagged
	// manifests (a pull of an image loaded before), docker's one image.
	var imgs []*blobstore.Image
	seenID := map[digest.Digest]bool{}
	for _, img := range listed {
		if !seenID[img.ID] {
			seenID[img.ID] = true
			imgs = append(imgs, img)
		}
	}
	sizes, err := s.LayerSizes(ctx, imgs...)
	if err != nil {
		return nil, err
	}
	du := &diskUsage{layers: map[digest.Digest]int64{}, activeLyrs: map[digest.Digest]bool{}}
	users := map[digest.Digest]int{} // layer -> images that have it
	for _, img := range imgs {
		seen := map[digest.Digest]bool{}
		for i, k := range imageLayerKeys(img) {
			du.layers[k] = img.LayerContentSize(sizes, i)
			if !seen[k] {
				seen[k] = true
				users[k]++
			}
		}
	}
	containers, err := loadContainerImages(g)
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		names := containers.using(img)
		di := dfImage{img: img, size: img.ContentSize(sizes), containers: len(names)}
		for i, k := range imageLayerKeys(img) {
			if users[k] > 1 {
				di.shared += img.LayerContentSize(sizes, i)
			}
			if len(names) > 0 {
				du.activeLyrs[k] = true
			}
		}
		du.images = append(du.images, di)
	}
	rows, _, err := psRows(ctx, g, false)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		w, err := newWorkContainer(g.root, r.Name)
		if err != nil {
			continue
		}
		st, err := w.load()
		if err != nil {
			continue // removed meanwhile
		}
		du.containers = append(du.containers, dfContainer{row: r, size: dirSize(w.upperPath(st)), volumes: containerVolumes(w)})
	}
	if du.cache, err = build.CacheUsage(g.root, s); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	return du, nil
}

// imageLayerKeys names each layer of img by diffID (the manifest's digest past
// the config's list), so layers that images share count once.
func imageLayerKeys(img *blobstore.Image) []digest.Digest {
	keys := make([]digest.Digest, len(img.Manifest.Layers))
	for i, l := range img.Manifest.Layers {
		keys[i] = l.Digest
		if i < len(img.Config.RootFS.DiffIDs) {
			keys[i] = img.Config.RootFS.DiffIDs[i]
		}
	}
	return keys
}

// containerActive: docker's running, for df's ACTIVE.
func containerActive(status string) bool {
	return status == statusMounted || status == statusPaused
}

// dfRow is one line of system df; its fields are docker's --format names (all
// strings, as docker's JSON has them).
type dfRow struct {
	Type        string
	TotalCount  string
	Active      string
	Size        string
	Reclaimable string
}

var dfHeader = dfRow{Type: "TYPE", TotalCount: "TOTAL", Active: "ACTIVE", Size: "SIZE", Reclaimable: "RECLAIMABLE"}

// withPercent is docker's RECLAIMABLE: the size, and its share of total.
func withPercent(reclaimable, total int64) string {
	if total <= 0 {
		return humanSize4(reclaimable)
	}
	return fmt.Sprintf("%s (%d%%)", humanSize4(reclaimable), reclaimable*100/total)
}

// summary is df's four rows.
func (du *diskUsage) summary() []dfRow {
	var total, used int64
	for k, n := range du.layers {
		total += n
		if du.activeLyrs[k] {
			used += n
		}
	}
	activeImgs := 0
	for _, di := range du.images {
		if di.containers > 0 {
			activeImgs++
		}
	}
	images := dfRow{Type: "Images", TotalCount: strconv.Itoa(len(du.images)), Active: strconv.Itoa(activeImgs),
		Size: humanSize4(total), Reclaimable: withPercent(total-used, total)}

	var cSize, cFree, vSize, vFree int64
	cActive, nVols, vActive := 0, 0, 0
	for _, c := range du.containers {
		cSize += c.size
		active := containerActive(c.row.Mount)
		if active {
			cActive++
		} else if c.row.Mount == statusUnmounted {
			cFree += c.size
		}
		for _, v := range c.volumes {
			nVols++
			vSize += v.size
			if active {
				vActive++
			} else if c.row.Mount == statusUnmounted {
				vFree += v.size
			}
		}
	}
	containers := dfRow{Type: "Containers", TotalCount: strconv.Itoa(len(du.containers)), Active: strconv.Itoa(cActive),
		Size: humanSize4(cSize), Reclaimable: withPercent(cFree, cSize)}
	volumes := dfRow{Type: "Local Volumes", TotalCount: strconv.Itoa(nVols), Active: strconv.Itoa(vActive),
		Size: humanSize4(vSize), Reclaimable: withPercent(vFree, vSize)}

	var bSize, bFree int64
	bActive := 0
	for _, r := range du.cache {
		bSize += r.Size
		if r.InUse {
			bActive++
		} else {
			bFree += r.Size
		}
	}
	cache := dfRow{Type: "Build Cache", TotalCount: strconv.Itoa(len(du.cache)), Active: strconv.Itoa(bActive),
		Size: humanSize4(bSize), Reclaimable: humanSize4(bFree)}
	return []dfRow{images, containers, volumes, cache}
}

func (du *diskUsage) writeSummary(w io.Writer, format string) error {
	rows := du.summary()
	switch format {
	case "json":
		return writeJSONLines(w, rows)
	case "", "table":
		format = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
	}
	return renderRows(w, format, rows, dfHeader)
}

// dfContainerRow is one container of df -v, docker's columns less COMMAND.
type dfContainerRow struct {
	ID           string // docker's 12 hex digits
	Names        string
	Image        string
	LocalVolumes string
	Size         string
	RunningFor   string
	Status       string
}

// dfVolumeRow is one anonymous volume of df -v: <container>/<dir>.
type dfVolumeRow struct {
	Name  string
	Links string
	Size  string
}

// dfCacheRow is one build cache record of df -v.
type dfCacheRow struct {
	ID        string
	CacheType string
	Size      string
	LastUsed  string
	InUse     string
}

// dfVerbose is df -v's listing; --format json prints it as one object.
type dfVerbose struct {
	Images     []imageRow
	Containers []dfContainerRow
	Volumes    []dfVolumeRow
	BuildCache []dfCacheRow
}

func (du *diskUsage) verbose() dfVerbose {
	v := dfVerbose{Images: []imageRow{}, Containers: []dfContainerRow{}, Volumes: []dfVolumeRow{}, BuildCache: []dfCacheRow{}}
	for _, di := range du.images {
		base := imageRow{
			ID: blobstore.ShortID(di.img.ID), CreatedSince: createdSince(di.img.Created()),
			Size: humanSize(di.size), VirtualSize: humanSize4(di.size),
			SharedSize: humanSize4(di.shared), UniqueSize: humanSize4(di.size - di.shared),
			Containers: strconv.Itoa(di.containers), Repository: "<none>", Tag: "<none>", Digest: "<none>",
		}
		if c := di.img.Created(); !c.IsZero() {
			base.CreatedAt = c.Local().Format("2006-01-02 15:04:05 -0700 MST")
		}
		// One row an image, as docker's ("Only show the first tag"), so that
		// sums over the rows count each image once.
		v.Images = append(v.Images, imageRefRows(base, di.img.Tags[:min(1, len(di.img.Tags))], nil, false)[0].imageRow)
	}
	for _, c := range du.containers {
		v.Containers = append(v.Containers, dfContainerRow{ID: shortID(c.row.ID), Names: c.row.Name, Image: c.row.Image,
			LocalVolumes: strconv.Itoa(len(c.volumes)), Size: humanSize(c.size),
			RunningFor: createdSince(c.row.Created), Status: c.row.Status})
		for _, vol := range c.volumes {
			v.Volumes = append(v.Volumes, dfVolumeRow{Name: vol.name, Links: "1", Size: humanSize4(vol.size)})
		}
	}
	for _, r := range du.cache {
		last := "N/A"
		if !r.LastUsed.IsZero() {
			last = createdSince(r.LastUsed)
		}
		v.BuildCache = append(v.BuildCache, dfCacheRow{ID: r.ID, CacheType: r.Type, Size: humanSize(r.Size),
			LastUsed: last, InUse: strconv.FormatBool(r.InUse)})
	}
	return v
}

func (du *diskUsage) writeVerbose(w io.Writer, format string) error {
	v := du.verbose()
	switch format {
	case "json":
		return writeJSON(w, v, "")
	case "", "table":
	default:
		tmpl, _, err := parseFormat(format)
		if err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		if err := tmpl.Execute(w, v); err != nil {
			return err
		}
		_, err = fmt.Fprintln(w)
		return err
	}
	var cacheSize int64
	for _, r := range du.cache {
		cacheSize += r.Size
	}
	sections := []func() error{
		func() error {
			fmt.Fprint(w, "Images space usage:\n\n")
			return renderRows(w, "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}", v.Images)
		},
		func() error {
			fmt.Fprint(w, "\nContainers space usage:\n\n")
			return renderRows(w, "table {{.ID}}\t{{.Image}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}", v.Containers,
				dfContainerRow{ID: "CONTAINER ID", Names: "NAMES", Image: "IMAGE", LocalVolumes: "LOCAL VOLUMES", Size: "SIZE", RunningFor: "CREATED", Status: "STATUS"})
		},
		func() error {
			fmt.Fprint(w, "\nLocal Volumes space usage:\n\n")
			return renderRows(w, "table {{.Name}}\t{{.Links}}\t{{.Size}}", v.Volumes,
				dfVolumeRow{Name: "VOLUME NAME", Links: "LINKS", Size: "SIZE"})
		},
		func() error {
			fmt.Fprintf(w, "\nBuild cache usage: %s\n\n", humanSize4(cacheSize))
			return renderRows(w, "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.LastUsed}}\t{{.InUse}}", v.BuildCache,
				dfCacheRow{ID: "CACHE ID", CacheType: "CACHE TYPE", Size: "SIZE", LastUsed: "LAST USED", InUse: "IN USE"})
		},
	}
	for _, s := range sections {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}
