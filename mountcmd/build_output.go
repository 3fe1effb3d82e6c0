package mountcmd

// build's outputs, as buildx has them: -o/--output type=local|tar (the built
// image's files in a dir or a tar), --push (each tag to its registry), and the
// flags CI scripts pass that have no meaning here (--cache-from, --cache-to,
// --provenance, --sbom), accepted with a warning rather than failing the build.

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/cow"
)

// buildOutput is one --output.
type buildOutput struct {
	typ  string // local, tar, image (the store: what every build does anyway)
	dest string // a dir (local), a file or "-" (tar)
	push bool   // type=image,push=true
}

// parseOutputs parses buildx's --output values: PATH (type=local, "-" is a tar
// on stdout) or type=local|tar|image|docker|registry with dest=, push=.
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
			case "name", "compression", "oci-mediatypes", "unpack", "store":
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
		case "registry":
			o.typ, o.push = "image", true
		case "image", "docker", "oci":
			if o.typ == "oci" && o.dest != "" {
				return nil, fmt.Errorf("invalid --output %q: type=oci,dest=: save the image with layerfs save instead", spec)
			}
			o.typ = "image"
		case "":
			return nil, fmt.Errorf("invalid --output %q: no type=", spec)
		default:
			return nil, fmt.Errorf("invalid --output %q: type %q (local, tar, image or registry)", spec, o.typ)
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

// writeBuildOutputs writes the built image's files where the outputs ask, and
// pushes it with --push (or an output's push=true).
func writeBuildOutputs(cmd *cobra.Command, g *globalOptions, s *blobstore.Store, img *blobstore.Image, outputs []buildOutput, push bool, tags []string) error {
	ctx := cmd.Context()
	for _, o := range outputs {
		push = push || o.push
		switch o.typ {
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
		return fmt.Errorf("--push: the build has no tag (-t) to push to")
	}
	for _, t := range tags {
		if err := runPush(cmd, g, &pushOptions{}, t, ""); err != nil {
			return fmt.Errorf("push %s: %w", t, err)
		}
	}
	return nil
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
