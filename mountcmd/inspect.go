package mountcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/layerfs/layerfs/blobstore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func init() { addVerb(newInspectCommand) }

type inspectOptions struct {
	format string
	typ    string // --type: "" (any), "container" or "image"
	size   bool   // -s: containers' SizeRw and SizeRootFs
	// object: the top-level verb, docker inspect, which names what it misses an
	// object ("No such object: X"); `image inspect` says "No such image",
	// `container inspect` "No such container".
	object bool
}

// newInspectCommand is the top-level `inspect` (docker inspect): working
// containers first, then images, as docker looks a name up.
func newInspectCommand(g *globalOptions) *cobra.Command {
	o := &inspectOptions{object: true}
	cmd := inspectCommand(g, o)
	cmd.Use = "inspect [--format TEMPLATE] [--type container|image] [-s] NAME|ID..."
	cmd.Short = "Show detailed information on containers and images, as docker inspect does"
	cmd.Flags().StringVar(&o.typ, "type", "", "only inspect objects of the given type (container or image)")
	cmd.Flags().BoolVarP(&o.size, "size", "s", false, "display total file sizes if the type is container")
	return cmd
}

// newImageInspectCommand is `image inspect` (docker image inspect).
func newImageInspectCommand(g *globalOptions) *cobra.Command {
	return inspectCommand(g, &inspectOptions{typ: "image"})
}

// newContainerInspectCommand is `container inspect` (docker container inspect).
func newContainerInspectCommand(g *globalOptions) *cobra.Command {
	o := &inspectOptions{typ: "container"}
	cmd := inspectCommand(g, o)
	cmd.Use = "inspect [--format TEMPLATE] [-s] CONTAINER..."
	cmd.Short = "Show detailed information on working containers, as docker container inspect does"
	cmd.Flags().BoolVarP(&o.size, "size", "s", false, "display total file sizes")
	return cmd
}

func inspectCommand(g *globalOptions, o *inspectOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:          "inspect [--format TEMPLATE] IMAGE...",
		Short:        "Show detailed information on images, as docker image inspect does",
		Args:         minArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.typ {
			case "", "image", "container":
			default:
				return fmt.Errorf("%q is not a valid value for --type (container or image)", o.typ)
			}
			if o.typ != "" {
				o.object = false // docker inspect --type T words misses as T inspect
			}
			return runInspect(cmd, g, o, args)
		},
	}
	cmd.Flags().StringVarP(&o.format, "format", "f", "", "format the output using a Go template (or json)")
	return cmd
}

// inspectConfig is the "Config" object in docker's shape.
type inspectConfig struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
	StopSignal   string                        `json:",omitempty"`
	StopTimeout  *int                          `json:",omitempty"`
	Healthcheck  *dockerspec.HealthcheckConfig `json:",omitempty"`
	Shell        []string                      `json:",omitempty"`
}

// inspectImage is one element of inspect's JSON array, shaped like docker's.
type inspectImage struct {
	Id            string //nolint:revive // docker's field name
	RepoTags      []string
	RepoDigests   []string
	Parent        string
	Comment       string
	Created       string
	DockerVersion string
	Author        string
	Config        inspectConfig
	Architecture  string
	Variant       string `json:",omitempty"`
	Os            string
	Size          int64
	GraphDriver   struct {
		Data map[string]string
		Name string
	}
	RootFS struct {
		Type   string
		Layers []string
	}
	Metadata struct {
		LastTagTime string
	}
	// Descriptor is the image's manifest, as docker's containerd image store shows it.
	Descriptor ocispec.Descriptor
}

func newInspectImage(ctx context.Context, g *globalOptions, s *blobstore.Store, imgs []*blobstore.Image, img *blobstore.Image) (inspectImage, error) {
	var raw struct {
		Comment       string                          `json:"comment"`
		DockerVersion string                          `json:"docker_version"`
		Config        dockerspec.DockerOCIImageConfig `json:"config"`
	}
	json.Unmarshal(img.RawConfig, &raw)
	c := img.Config
	out := inspectImage{
		Id: img.ID.String(), RepoTags: []string{}, RepoDigests: []string{},
		Comment: raw.Comment, DockerVersion: raw.DockerVersion, Author: c.Author,
		Architecture: c.Architecture, Variant: c.Variant, Os: c.OS,
	}
	// As docker inspect: a config without a comment of its own (OCI configs have no
	// place for one) shows its last history entry's, a commit's -m.
	if h := c.History; out.Comment == "" && len(h) > 0 {
		out.Comment = h[len(h)-1].Comment
	}
	sizes, err := s.LayerSizes(ctx, img)
	if err != nil {
		return out, err
	}
	out.Size = img.ContentSize(sizes)
	// The tags and digests of every manifest the store lists of the ID: one image
	// (blobstore's "One image per ID"), as docker shows it.
	for _, x := range append([]*blobstore.Image{img}, imgs...) {
		if x != img && x.ID != img.ID {
			continue
		}
		for _, t := range x.Tags {
			if f := blobstore.FamiliarString(t); !slices.Contains(out.RepoTags, f) {
				out.RepoTags = append(out.RepoTags, f)
			}
		}
		// As docker (and images --digests): only digests a registry gave, none for
		// an image built, imported or loaded here.
		for _, d := range x.PulledDigests {
			if f := blobstore.FamiliarString(d); !slices.Contains(out.RepoDigests, f) {
				out.RepoDigests = append(out.RepoDigests, f)
			}
		}
	}
	if img.Parent != "" {
		for _, p := range imgs {
			if p.ManifestDigest == img.Parent {
				out.Parent = p.ID.String()
			}
		}
	}
	if t := img.Created(); !t.IsZero() {
		out.Created = t.UTC().Format(time.RFC3339Nano)
	}
	out.Config = dockerConfig(raw.Config)
	var lowers []string
	for i := len(c.RootFS.DiffIDs) - 1; i >= 0; i-- {
		lowers = append(lowers, filepath.Join(g.root, "layers", c.RootFS.DiffIDs[i].Encoded()))
	}
	out.GraphDriver.Name = "layerfs"
	out.GraphDriver.Data = map[string]string{"LowerDir": strings.Join(lowers, ":")}
	out.RootFS.Type = c.RootFS.Type
	out.RootFS.Layers = []string{}
	for _, d := range c.RootFS.DiffIDs {
		out.RootFS.Layers = append(out.RootFS.Layers, d.String())
	}
	out.Metadata.LastTagTime = "0001-01-01T00:00:00Z"
	out.Descriptor = img.Descriptor
	return out, nil
}

// dockerConfig shapes a config as docker inspect does; the docker extensions
// (OnBuild, Healthcheck, Shell) come from the raw config, which ocispec.Image drops.
func dockerConfig(c dockerspec.DockerOCIImageConfig) inspectConfig {
	return inspectConfig{
		User: c.User, ExposedPorts: c.ExposedPorts, Env: c.Env, Cmd: c.Cmd,
		Volumes: c.Volumes, WorkingDir: c.WorkingDir, Entrypoint: c.Entrypoint,
		Labels: c.Labels, StopSignal: c.StopSignal, OnBuild: c.OnBuild,
		Healthcheck: c.Healthcheck, Shell: c.Shell,
	}
}

func runInspect(cmd *cobra.Command, g *globalOptions, o *inspectOptions, args []string) error {
	// As docker: a bad template is refused before any lookup.
	var tmpl *inspectTemplate
	if o.format != "" && o.format != "json" {
		var err error
		if tmpl, err = parseInspectFormat(o.format); err != nil {
			return err
		}
	}
	s, imgs, err := openImages(g)
	if err != nil {
		return err
	}
	var found []any
	var out bytes.Buffer // the template's lines, written once all names are done
	var errs []string    // stderr's lines, in the names' order
	for _, a := range args {
		obj, miss, err := inspectObject(cmd, g, o, s, imgs, a)
		switch {
		case err != nil:
			return err
		case miss != "":
			errs = append(errs, "Error: "+miss)
		case tmpl == nil:
			found = append(found, obj)
		default:
			// docker goes on with the next name after a template error
			if err := tmpl.execute(&out, obj); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	w := cmd.OutOrStdout()
	switch {
	case tmpl != nil && out.Len() == 0:
		fmt.Fprintln(w) // docker's TemplateInspector prints an empty line then
	case tmpl != nil:
		w.Write(out.Bytes())
	default:
		// docker: indented by default, one compact line with --format json
		indent := "    "
		if o.format == "json" {
			indent = ""
		}
		if found == nil {
			found = []any{}
		}
		if err := writeJSON(w, found, indent); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(cmd.ErrOrStderr(), e)
		}
		return exitError{1}
	}
	return nil
}

// inspectObject looks a name up as inspect does: a working container first
// (unless --type image), then an image. miss is the name's own error line (a
// name not found, an image that cannot be read), which does not stop the names
// after it; err is one that ends the command.
func inspectObject(cmd *cobra.Command, g *globalOptions, o *inspectOptions, s *blobstore.Store, imgs []*blobstore.Image, a string) (obj any, miss string, err error) {
	if o.typ != "image" {
		w, err := findContainer(g.root, a)
		if err == nil {
			settleLostRun(w) // a run --rm's container goes: then no such container
			st, lerr := w.load()
			if lerr == nil {
				ic, err := newInspectContainer(cmd.Context(), g, s, imgs, w, st, o.size)
				return ic, "", err
			}
			err = lerr
		}
		if !errors.Is(err, errNoSuchContainer) {
			return nil, err.Error(), nil
		}
		if o.typ == "container" {
			return nil, "No such container: " + a, nil
		}
	}
	img, err := resolveListed(s, imgs, a)
	if err != nil {
		if errors.Is(err, blobstore.ErrNotFound) && !errors.Is(err, blobstore.ErrMissingBlob) {
			// docker's client names the argument as given ("nosuch", not
			// "nosuch:latest")
			what := "image"
			if o.object {
				what = "object"
			}
			return nil, "No such " + what + ": " + a, nil
		}
		return nil, imageErr(a, err).Error(), nil
	}
	ii, err := newInspectImage(cmd.Context(), g, s, imgs, img)
	return ii, "", err
}
