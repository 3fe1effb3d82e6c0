package mountcmd

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/cow"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

func init() { addVerb(newLoadCommand) }

type loadOptions struct {
	input string
	quiet bool
	tag   string
}

func newLoadCommand(g *globalOptions) *cobra.Command {
	o := &loadOptions{}
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a docker-archive or OCI archive (stdin by default)",
		Long: `Load images from a tar archive written by docker save, podman save, skopeo or
layerfs save: docker-archive (classic or with an embedded OCI layout) or an OCI
archive, either possibly gzip-, zstd-, bzip2- or xz-compressed (xz through xz(1),
as docker does). Nothing is recorded unless the whole archive checks out.`,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLoad(cmd, g, o)
		},
	}
	cmd.Flags().StringVarP(&o.input, "input", "i", "", "read from a tar archive file instead of stdin")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "suppress the load progress")
	cmd.Flags().StringVar(&o.tag, "tag", "", "tag for an image the archive leaves untagged")
	return cmd
}

func runLoad(cmd *cobra.Command, g *globalOptions, o *loadOptions) error {
	var in io.Reader = cmd.InOrStdin()
	name := ""
	if o.input != "" && o.input != "-" {
		name = o.input
		f, err := os.Open(o.input)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		defer f.Close()
		in = f
	} else if f, ok := in.(*os.File); ok && isTerminal(f) {
		return errors.New("requested load from stdin, but stdin is empty")
	}
	s, err := openStore(g)
	if err != nil {
		return err
	}
	pr := newProgress("Loading", cmd.ErrOrStderr(), o.quiet)
	loaded, err := s.Load(cmd.Context(), in, blobstore.LoadOptions{Tag: o.tag, Progress: pr.progress(), CheckLayer: checkLayer, Name: name,
		Roots: func() ([]digest.Digest, error) { return workingContainerRoots(g) }})
	pr.Finish()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	for _, l := range loaded {
		warnDeep(cmd.ErrOrStderr(), l.Image)
		if len(l.Tags) == 0 {
			fmt.Fprintf(out, "Loaded image ID: %s\n", l.Image.ID)
			continue
		}
		for _, t := range l.Tags {
			if prev, ok := l.Moved[t]; ok {
				fmt.Fprintf(out, "The image %s already exists, renaming the old one with ID %s to empty string\n", blobstore.FamiliarString(t), prev)
			}
			fmt.Fprintf(out, "Loaded image: %s\n", blobstore.FamiliarString(t))
		}
	}
	return nil
}

// warnDeep warns of an image too deep to commit or build on: docker refuses to
// load or pull it (moby's maxLayerDepth); it mounts, runs, saves and exports
// here, as in podman.
func warnDeep(w io.Writer, img *blobstore.Image) {
	if img == nil {
		return
	}
	if n := len(img.Manifest.Layers); n >= build.MaxLayers {
		fmt.Fprintf(w, "WARNING: image %s has %d layers: commit and build on it are refused (an image may have %d; docker refuses to load or pull it)\n", blobstore.ShortID(img.ID), n, build.MaxLayers)
	}
}

// checkLayer refuses a layer no mount could unpack (cow.CheckLayer): load and pull
// run it on every layer they store.
func checkLayer(r io.Reader) error {
	_, err := cow.CheckLayer(r)
	return err
}
