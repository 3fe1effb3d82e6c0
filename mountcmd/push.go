package mountcmd

import (
	"fmt"
	"io"
	"sort"

	"github.com/distribution/reference"
	"github.com/layerfs/layerfs/registry"
	"github.com/spf13/cobra"
)

func init() { addVerb(newPushCommand) }

type pushOptions struct {
	registryFlags
	quiet   bool
	allTags bool
	// out takes the progress and result lines (nil: stdout); build --push
	// sends them where its own log goes, or nowhere with -q.
	out io.Writer
}

func newPushCommand(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG] [DESTINATION]",
		Short: "Upload an image to a registry",
		Long: "Upload a stored image to a registry, to NAME itself or to DESTINATION (a NAME[:TAG] " +
			"on any registry). Blobs the repository has are not sent again; blobs known to be in " +
			"another repository of the same registry are mounted from there.",
		Args:         rangeArgs(1, 2),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			dest := ""
			if len(args) == 2 {
				dest = args[1]
			}
			if o.allTags {
				if dest != "" {
					return fmt.Errorf("--all-tags pushes NAME's own tags: no DESTINATION")
				}
				return runPushAllTags(cmd, g, o, args[0])
			}
			return runPush(cmd, g, o, args[0], dest)
		},
	}
	o.registryFlags.add(cmd.Flags())
	cmd.Flags().BoolVarP(&o.allTags, "all-tags", "a", false, "push every tag of NAME in the store")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "suppress progress output")
	return cmd
}

func runPush(cmd *cobra.Command, g *globalOptions, o *pushOptions, src, dest string) error {
	out := o.out
	if out == nil {
		out = cmd.OutOrStdout()
	}
	target := dest
	if target == "" {
		target = src
	}
	if n, err := reference.ParseNormalizedNamed(target); err == nil && reference.IsNameOnly(n) && !o.quiet {
		fmt.Fprintln(out, "Using default tag: latest")
	}
	c, err := o.client(g, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	// The blobs stay until they are uploaded (an rmi meanwhile waits to
	// collect them), as save's.
	st, release, err := openLeased(cmd.Context(), g)
	if err != nil {
		return err
	}
	defer release()
	progress, done := newTransferProgress(out, o.quiet)
	res, err := c.Push(cmd.Context(), st, src, dest, registry.PushOptions{Progress: progress})
	done()
	if err != nil {
		return err
	}
	if o.quiet {
		_, err = fmt.Fprintf(out, "%s:%s\n", res.Repository, res.Tag)
		return err
	}
	_, err = fmt.Fprintf(out, "%s: digest: %s size: %d\n", res.Tag, res.Digest, res.Size)
	return err
}

// runPushAllTags is docker push --all-tags: each tag the store has of repo.
func runPushAllTags(cmd *cobra.Command, g *globalOptions, o *pushOptions, repo string) error {
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return err
	}
	if !reference.IsNameOnly(named) {
		return fmt.Errorf("tag can't be used with --all-tags/-a")
	}
	s, err := openStore(g)
	if err != nil {
		return err
	}
	imgs, err := s.Images()
	if err != nil {
		return err
	}
	var tags []string
	for _, img := range imgs {
		for _, t := range img.Tags {
			if n, err := reference.ParseNormalizedNamed(t); err == nil && n.Name() == named.Name() {
				tags = append(tags, t)
			}
		}
	}
	if len(tags) == 0 {
		return fmt.Errorf("An image does not exist locally with the tag: %s", reference.FamiliarString(named)) //nolint:staticcheck // docker's message
	}
	sort.Strings(tags)
	for _, t := range tags {
		if err := runPush(cmd, g, o, t, ""); err != nil {
			return err
		}
	}
	return nil
}
