package mountcmd

// build's outputs, as buildx has them: -o/--output type=local|tar (the built
// image's files in a dir or a tar), type=docker|oci,dest= (the image as a
// docker-archive or OCI archive, as layerfs save writes them), name= of the image
// outputs (more tags, as -t), --push (each tag to its registry), and the
// flags CI scripts pass that have no meaning here (--cache-from, --cache-to,
// --provenance, --sbom), accepted with a warning rather than failing the build.

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/cow"
)

// buildOutput is one --output.
type buildOutput struct {
	typ   string   // local, tar, image (the store: what every build does anyway), docker or oci (an archive)
	dest  string   // a dir (local), a file or "-" (tar, docker, oci)
	push  bool     // type=image,push=true
	names []string // name=: tags for the image, as -t
}

// parseOutputs parses buildx's --output values: PATH (type=local, "-" is a tar
// on stdout) or type=local|tar|image|docker|oci|registry with dest=, push=,
// name=.
func parseOutputs(specs []string) ([]buildOutput, error) {
	var out []buildOutput
	for _, spec := range specs {
		if !strings.Contains(spec, "=") {
			o := buildOutput{typ: "local", dest: spec}
			if spec == "-" {
				o.typ = "tar"
			}
			out = append(out, o)
			continue
		}
		fields, err := csv.NewReader(strings.NewReader(spec)).Read()
		if err != nil {
			return nil, fmt.Errorf("invalid --output %q: %w", spec, err)
		}
		var o buildOutput
		for _, f := range fields {
			k, v, _ := strings.Cut(f, "=")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "type":
				o.typ = v
			case "dest":
				o.dest = v
			case "push":
				o.push = v == "true" || v == "1"
			case "name":
				// buildx's list: "name=a:1,b:2" (quoted, for the comma)
				for _, n := range strings.Split(v, ",") {
					if _, err := blobstore.ParseNewTag(n); err != nil {
						return nil, fmt.Errorf("invalid --output %q: name %q: %w", spec, n, err)
					}
					o.names = append(o.names, n)
				}
			case "compression", "oci-mediatypes", "unpack", "store":
				// what the store does anyway, or nothing here
			default:
				return nil, fmt.Errorf("invalid --output %q: unknown attribute %q", spec, k)
			}
		}
		switch o.typ {
		case "local", "tar":
			if o.dest == "" {
				return nil, fmt.Errorf("invalid --output %q: type=%s needs dest=", spec, o.typ)
			}
			if len(o.names) > 0 {
				// The files have no name to take: dropping it would leave a
				// build that counts on it untagged.
				return nil, fmt.Errorf("invalid --output %q: name= is for type=image, registry, docker or oci", spec)
			}
		case "registry":
			o.typ, o.push = "image", true
		case "docker", "oci":
			if o.dest == "" {
				o.typ = "image" // buildx loads it into the image store: here, the store
			}
		case "image":
		case "":
			return nil, fmt.Errorf("invalid --output %q: no type=", spec)
		default:
			return nil, fmt.Errorf("invalid --output %q: type %q (local, tar, image, registry, docker or oci)", spec, o.typ)
		}
		out = append(out, o)
	}
	return out, nil
}

// addIgnoredBuildFlags registers the buildx flags that mean nothing here.
func addIgnoredBuildFlags(cmd *cobra.Command, o *buildOptions) {
	f := cmd.Flags()
	f.StringArrayVar(&o.ignored, "cache-from", nil, "accepted for compatibility; ignored: builds use the local cache only")
	f.StringArrayVar(&o.ignored, "cache-to", nil, "accepted for compatibility; ignored: builds use the local cache only")
	f.StringVar(&o.ignoredValue, "provenance", "", "accepted for compatibility; ignored: no attestations are made")
	f.StringVar(&o.ignoredValue, "sbom", "", "accepted for compatibility; ignored: no attestations are made")
	f.StringArrayVar(&o.ignored, "attest", nil, "accepted for compatibility; ignored: no attestations are made")
}

// warnIgnoredBuildFlags names the ignored flags a build was given, once each.
func warnIgnoredBuildFlags(cmd *cobra.Command) {
	for _, name := range []string{"cache-from", "cache-to", "provenance", "sbom", "attest"} {
		if cmd.Flags().Changed(name) {
			fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: --%s is ignored: layerfs builds use their local cache and make no attestations\n", name)
		}
	}
}

// outputTags are the tags a build gives its image: -t, then each output's name=.
func outputTags(tags []string, outputs []buildOutput) []string {
	out := append([]string(nil), tags...)
	for _, o := range outputs {
		for _, n := range o.names {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// writesStdout reports whether an output is written to stdout (dest=-), which
// the build log then leaves for stderr.
func writesStdout(outputs []buildOutput) bool {
	return slices.ContainsFunc(outputs, func(o buildOutput) bool { return o.dest == "-" && o.typ != "local" })
}

// writeBuildOutputs writes the built image's files or archive where the outputs
// ask, and pushes it with --push (or an output's push=true). tags are all the
// image's (outputTags).
// The push's progress goes to log, the build's own log (stderr when stdout
// carries an archive; io.Discard with -q, as buildx's -q prints only the ID).
func writeBuildOutputs(cmd *cobra.Command, g *globalOptions, s *blobstore.Store, img *blobstore.Image, outputs []buildOutput, push bool, tags []string, log io.Writer) error {
	ctx := cmd.Context()
	for _, o := range outputs {
		push = push || o.push
		switch o.typ {
		case "docker", "oci":
			if err := saveBuildArchive(cmd, s, img, o.typ, o.dest, tags); err != nil {
				return fmt.Errorf("output to %s: %w", o.dest, err)
			}
		case "local":
			if err := exportToDir(ctx, g, s, img, o.dest); err != nil {
				return fmt.Errorf("output to %s: %w", o.dest, err)
			}
		case "tar":
			if err := exportToTar(ctx, g, s, img, o.dest, cmd.OutOrStdout()); err != nil {
				return fmt.Errorf("output to %s: %w", o.dest, err)
			}
		}
	}
	if !push {
		return nil
	}
	if len(tags) == 0 {
		return fmt.Errorf("--push: the build has no tag (-t or an output's name=) to push to")
	}
	for _, t := range tags {
		if err := runPush(cmd, g, &pushOptions{out: log}, t, ""); err != nil {
			return err // it names what it pushed
		}
	}
	return nil
}

// saveBuildArchive writes img, named by tags, as layerfs save does: a
// docker-archive (type=docker) or an OCI archive (type=oci), to dest ("-":
// stdout, never a terminal).
func saveBuildArchive(cmd *cobra.Command, s *blobstore.Store, img *blobstore.Image, typ, dest string, tags []string) error {
	ctx := cmd.Context()
	// An untagged image's blobs stay until the archive is written.
	release, err := s.Lease(ctx)
	if err != nil {
		return err
	}
	defer release()
	item := blobstore.SaveItem{Image: img}
	for _, t := range tags {
		n, err := blobstore.ParseTag(t)
		if err != nil {
			return err
		}
		item.Tags = append(item.Tags, n.String())
	}
	opts := blobstore.SaveOptions{Format: blobstore.FormatDocker}
	if typ == "oci" {
		opts.Format = blobstore.FormatOCI
	}
	if dest != "-" {
		return saveToFile(cmd, s, filepath.Clean(dest), []blobstore.SaveItem{item}, opts)
	}
	out := cmd.OutOrStdout()
	if writerIsTerminal(out) {
		return errExportTerminal
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	if err := s.Save(ctx, bw, []blobstore.SaveItem{item}, opts); err != nil {
		return err
	}
	return bw.Flush()
}

// imageTree is the flat tree of img as a tar stream (export's).
func imageTree(ctx context.Context, g *globalOptions, s *blobstore.Store, img *blobstore.Image) (io.ReadCloser, error) {
	lowers, err := ensureLayers(ctx, g, s, img)
	if err != nil {
		return nil, err
	}
	return cow.Export(ctx, lowers, "", cow.FormatOCI), nil
}

// exportToDir writes img's files into dir (made if missing), every path inside
// it: an image's symlinks never lead the writes out. Files are the caller's,
// as buildx's local exporter makes them.
func exportToDir(ctx context.Context, g *globalOptions, s *blobstore.Store, img *blobstore.Image, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	rc, err := imageTree(ctx, g, s, img)
	if err != nil {
		return err
	}
	defer rc.Close()
	return build.ExtractInRoot(root, "/", rc, os.Getuid(), os.Getgid())
}

// exportToTar writes img's files as one tar to dest ("-": stdout, never a
// terminal), through a temp file renamed into place.
func exportToTar(ctx context.Context, g *globalOptions, s *blobstore.Store, img *blobstore.Image, dest string, stdout io.Writer) error {
	var out io.Writer = stdout
	var f *outputFile
	if dest != "-" {
		var err error
		if f, err = createOutput("output", filepath.Clean(dest)); err != nil {
			return err
		}
		defer f.Abort()
		out = f
	} else if writerIsTerminal(stdout) {
		return errExportTerminal
	}
	rc, err := imageTree(ctx, g, s, img)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if f != nil {
		return f.Commit()
	}
	return nil
}

// writeBuildMetadata is buildx's --metadata-file: the image's digests and names
// under buildx's keys, which CI actions read.
func writeBuildMetadata(file string, img *blobstore.Image, tags []string) error {
	m := map[string]any{
		"containerimage.digest":        img.ManifestDigest.String(),
		"containerimage.config.digest": img.ID.String(),
		"containerimage.descriptor":    img.Descriptor,
	}
	if len(tags) > 0 {
		names := make([]string, len(tags))
		for i, t := range tags {
			names[i] = blobstore.FamiliarString(t)
			if n, err := blobstore.ParseTag(t); err == nil {
				names[i] = n.String()
			}
		}
		m["image.name"] = strings.Join(names, ",")
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write metadata file: %w", err)
	}
	return nil
}
