package mountcmd

import (
	"fmt"
	"io"
	"path"
	"strings"
	"text/tabwriter"

	"github.com/distribution/reference"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/spf13/cobra"
)

func init() { addVerb(newImagesCommand) }

type imagesOptions struct {
	quiet   bool
	all     bool
	digests bool
	noTrunc bool
	format  string
	filters []string
}

func newImagesCommand(g *globalOptions) *cobra.Command {
	o := &imagesOptions{}
	cmd := &cobra.Command{
		Use:     "images [REPOSITORY[:TAG]]",
		Aliases: []string{"ls"},
		Short:   "List images",
		Long: `List images as docker images does, newest first, one row per tag.

SIZE is the image's uncompressed content (the file bytes its layers add up to, as
docker counts them), not the size of the compressed blobs. DIGEST (--digests) is the
digest a pull or push recorded for the row's repository (for a multi-platform pull,
the index's), <none> for images that never met a registry; a repository with a
recorded digest but no tag gets its own "<repo> <none>" row. An image index in the
store's index.json (skopeo copy --all) lists as its linux/<host arch> image, or the
first of its images the store has. Untagged images with children (intermediate
images) show only with -a.`,
		Args:         maxArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImages(cmd, g, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	f.BoolVarP(&o.all, "all", "a", false, "show all images (default hides intermediate images)")
	f.BoolVar(&o.digests, "digests", false, "show digests")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.StringVar(&o.format, "format", "", "format output: table, table TEMPLATE, json, or a Go template")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "filter output (dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE, label=KEY[=VALUE])")
	return cmd
}

// imageRow is one line of `images`; its fields are the --format names.
type imageRow struct {
	Containers   string
	CreatedAt    string
	CreatedSince string
	Digest       string
	ID           string
	Repository   string
	SharedSize   string
	Size         string
	Tag          string
	UniqueSize   string
	VirtualSize  string
}

var imageRowHeader = imageRow{Containers: "CONTAINERS", CreatedAt: "CREATED AT", CreatedSince: "CREATED", Digest: "DIGEST", ID: "IMAGE ID", Repository: "REPOSITORY", SharedSize: "SHARED SIZE", Size: "SIZE", Tag: "TAG", UniqueSize: "UNIQUE SIZE", VirtualSize: "VIRTUAL SIZE"}

type imageFilter struct {
	dangling   *bool
	references []string
	before     []*blobstore.Image // all must hold, as docker's (its oldest before=)
	since      []*blobstore.Image // all must hold (docker's newest since=)
	labels     []string
}

func parseImageFilters(imgs []*blobstore.Image, fs []string) (*imageFilter, error) {
	f := &imageFilter{}
	for _, s := range fs {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("bad format of filter (expected name=value)")
		}
		switch strings.ToLower(k) {
		case "dangling":
			var b bool
			switch strings.ToLower(v) {
			case "true", "1":
				b = true
			case "false", "0":
			default:
				return nil, fmt.Errorf("invalid filter 'dangling=%s'", v)
			}
			f.dangling = &b
		case "reference":
			f.references = append(f.references, v)
		case "before", "since":
			img, err := blobstore.ResolveIn(imgs, v)
			if err != nil {
				return nil, imageErr(v, err)
			}
			if strings.EqualFold(k, "before") {
				f.before = append(f.before, img)
			} else {
				f.since = append(f.since, img)
			}
		case "label":
			f.labels = append(f.labels, v)
		default:
			return nil, fmt.Errorf("invalid filter '%s'", k)
		}
	}
	return f, nil
}

// matchReference is docker's reference filter (reference.FamiliarMatch): the
// pattern matches the familiar name, or the familiar name:tag or name@digest.
func matchReference(pattern, full string) bool {
	n, err := reference.ParseNormalizedNamed(full)
	if err != nil {
		return false
	}
	if ok, _ := path.Match(pattern, reference.FamiliarName(n)); ok {
		return true
	}
	ok, _ := path.Match(pattern, reference.FamiliarString(n))
	return ok
}

// keepReferences are those of refs (tags or repo digests, full references) the
// reference filters match. As docker, each reference is matched on its own and the
// rows are made of those that match: `images REPO@sha256:...` shows the REPO
// <none> row of that digest, `images REPO:TAG` the tag without its digest.
func (f *imageFilter) keepReferences(refs []string) []string {
	if len(f.references) == 0 {
		return refs
	}
	var out []string
	for _, r := range refs {
		for _, p := range f.references {
			if matchReference(p, r) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// refRow is one row of `images` with the reference it shows.
type refRow struct {
	imageRow
	full string
}

// imageRefRows are docker's rows for one image: one per tag; one per repository
// that has a recorded repo digest (a pull or push) but no tag on the image, with
// TAG <none>; "<none> <none>" when it has neither. DIGEST is the repository's
// recorded digest, <none> when there is none (a local build, import or load).
// With allDigests (images --digests) a repository with several recorded digests
// gets a row for each, as docker's (its first digest otherwise).
func imageRefRows(base imageRow, tags, repoDigests []string, allDigests bool) []refRow {
	digestsOf := map[string][]string{} // repository name -> digests
	var digestRepos []string
	for _, rd := range repoDigests {
		n, err := reference.ParseNormalizedNamed(rd)
		if err != nil {
			continue
		}
		if c, ok := n.(reference.Canonical); ok {
			if _, seen := digestsOf[n.Name()]; !seen {
				digestRepos = append(digestRepos, n.Name())
			}
			if allDigests || len(digestsOf[n.Name()]) == 0 {
				digestsOf[n.Name()] = append(digestsOf[n.Name()], c.Digest().String())
			}
		}
	}
	var rows []refRow
	tagged := map[string]bool{}
	for _, t := range tags {
		n, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			continue
		}
		r := refRow{imageRow: base, full: t}
		r.Repository = reference.FamiliarName(n)
		if tg, ok := n.(reference.Tagged); ok {
			r.Tag = tg.Tag()
		}
		tagged[n.Name()] = true
		if len(digestsOf[n.Name()]) == 0 {
			rows = append(rows, r)
		}
		for _, d := range digestsOf[n.Name()] {
			r.Digest = d
			rows = append(rows, r)
		}
	}
	for _, name := range digestRepos {
		if tagged[name] {
			continue
		}
		n, _ := reference.ParseNormalizedNamed(name)
		for _, d := range digestsOf[name] {
			r := refRow{imageRow: base, full: name}
			r.Repository, r.Digest = reference.FamiliarName(n), d
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		rows = append(rows, refRow{imageRow: base})
	}
	return rows
}

// keepImage applies the filters on the image itself. dangling=true keeps only
// untagged images without children (docker lists imageStore.Heads() then, -a or
// not), so that `rmi $(images -qa -f dangling=true)` never meets a parent; an
// image pulled by digest (a repo digest, no tag) is among them, as in moby's
// graphdriver store. dangling=false drops only images with neither a tag nor a
// repo digest, as moby's image_list.go.
func (f *imageFilter) keepImage(imgs []*blobstore.Image, img *blobstore.Image) bool {
	if f.dangling != nil && *f.dangling && len(img.Tags) > 0 {
		return false
	}
	if f.dangling != nil && !*f.dangling && len(img.Tags) == 0 && len(img.PulledDigests) == 0 {
		return false
	}
	if f.dangling != nil && *f.dangling && len(blobstore.Children(imgs, img)) > 0 {
		return false
	}
	for _, b := range f.before {
		if !img.Created().Before(b.Created()) {
			return false
		}
	}
	for _, s := range f.since {
		if !img.Created().After(s.Created()) {
			return false
		}
	}
	for _, l := range f.labels {
		k, v, hasV := strings.Cut(l, "=")
		got, ok := img.Config.Config.Labels[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	return true
}

func runImages(cmd *cobra.Command, g *globalOptions, o *imagesOptions, args []string) error {
	s, err := openStore(g)
	if err != nil {
		return err
	}
	imgs, broken, err := s.ImagesAndBroken()
	if err != nil {
		return err
	}
	// Unreadable entries are left out of the list (and of every other verb's
	// view); say so here, where images are listed, once each.
	for _, b := range broken {
		if b.Artifact {
			continue // another tool's, not an image: not listed, and nothing wrong
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: skipping unreadable image %s (rmi %s removes it): %v\n", b.Name(), b.Name(), b.Err)
	}
	filters := o.filters
	if len(args) == 1 {
		filters = append(filters, "reference="+args[0])
	}
	f, err := parseImageFilters(imgs, filters)
	if err != nil {
		return err
	}
	sizes, err := s.LayerSizes(cmd.Context(), imgs...)
	if err != nil {
		return err
	}
	var rows []imageRow
	for _, img := range imgs {
		if !f.keepImage(imgs, img) {
			continue
		}
		if len(img.Tags) == 0 && !o.all && len(blobstore.Children(imgs, img)) > 0 {
			continue // intermediate image
		}
		tags, digests := f.keepReferences(img.Tags), f.keepReferences(img.PulledDigests)
		if len(f.references) > 0 && len(tags) == 0 && len(digests) == 0 {
			continue
		}
		base := imageRow{
			Containers: "N/A", SharedSize: "N/A", UniqueSize: "N/A",
			CreatedSince: createdSince(img.Created()),
			Size:         humanSize(img.ContentSize(sizes)), VirtualSize: humanSize4(img.ContentSize(sizes)),
			ID: blobstore.ShortID(img.ID), Digest: "<none>",
			Repository: "<none>", Tag: "<none>",
		}
		if c := img.Created(); !c.IsZero() {
			base.CreatedAt = c.Local().Format("2006-01-02 15:04:05 -0700 MST")
		}
		if o.noTrunc {
			base.ID = img.ID.String()
		}
		for _, r := range imageRefRows(base, tags, digests, o.digests) {
			rows = append(rows, r.imageRow)
		}
	}
	return printImageRows(cmd.OutOrStdout(), rows, o)
}

func printImageRows(w io.Writer, rows []imageRow, o *imagesOptions) error {
	if o.quiet {
		for _, r := range rows {
			fmt.Fprintln(w, r.ID)
		}
		return nil
	}
	switch o.format {
	case "json":
		return writeJSONLines(w, rows)
	case "", "table":
		f := "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
		if o.digests {
			f = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
		}
		return renderRows(w, f, rows)
	}
	return renderRows(w, o.format, rows)
}

// renderRows runs a --format template over rows (with a header for "table").
func renderRows[T any](w io.Writer, format string, rows []T, header ...T) error {
	tmpl, table, err := parseFormat(format)
	if err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	out := w
	var tw *tabwriter.Writer
	if table {
		tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
		out = tw
		var h any = imageRowHeader
		if len(header) > 0 {
			h = header[0]
		}
		htmpl, err := parseHeader(format)
		if err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		if err := htmpl.Execute(out, h); err != nil {
			return err
		}
		fmt.Fprintln(out)
	}
	for _, r := range rows {
		if err := tmpl.Execute(out, r); err != nil {
			return err
		}
		fmt.Fprintln(out)
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}
