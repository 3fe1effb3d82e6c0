package mountcmd

import (
	"fmt"

	"github.com/distribution/reference"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
	"github.com/spf13/cobra"
)

func init() { addVerb(newPullCommand) }

type pullOptions struct {
	registryFlags
	platform string
	quiet    bool
	allTags  bool
}

func newPullCommand(g *globalOptions) *cobra.Command {
	o := &pullOptions{}
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Long: "Download an image from a registry into the store. An index (multi-platform image) " +
			"gives the image for --platform (default linux on this machine's architecture). Layers " +
			"already in the store are not downloaded again, and a download that breaks off goes on where it " +
			"stopped (five attempts in all, as docker); every blob is verified against its digest, " +
			"every layer's uncompressed content against the image config's diff_ids, and every layer " +
			"checked as it streams in: an image with a layer that does not match its config, or that " +
			"no mount could unpack (an entry escaping the root, say), is refused and nothing is stored.",
		Args:         exactArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.allTags {
				return runPullAllTags(cmd, g, o, args[0])
			}
			return runPull(cmd, g, o, args[0])
		},
	}
	o.registryFlags.add(cmd.Flags())
	cmd.Flags().BoolVarP(&o.allTags, "all-tags", "a", false, "download every tagged image in the repository")
	cmd.Flags().StringVar(&o.platform, "platform", "", "os/arch[/variant] to pull from a multi-platform image (default "+registry.DefaultPlatform()+")")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "suppress progress output")
	return cmd
}

func runPull(cmd *cobra.Command, g *globalOptions, o *pullOptions, ref string) error {
	out := cmd.OutOrStdout()
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		_, err = blobstore.ParseReference(ref)
		return err
	}
	c, err := o.client(g, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	st, err := openStore(g)
	if err != nil {
		return err
	}
	if reference.IsNameOnly(n) && !o.quiet {
		fmt.Fprintln(out, "Using default tag: latest")
	}
	progress, done := newTransferProgress(out, o.quiet)
	res, err := c.Pull(cmd.Context(), st, ref, registry.PullOptions{Platform: o.platform, Progress: progress, CheckLayer: checkLayer})
	done()
	if err != nil {
		return err
	}
	warnDeep(cmd.ErrOrStderr(), res.Image)
	if !o.quiet {
		fam := blobstore.FamiliarString(res.Ref)
		fmt.Fprintf(out, "Digest: %s\n", res.Digest)
		if res.Updated {
			fmt.Fprintf(out, "Status: Downloaded newer image for %s\n", fam)
		} else {
			fmt.Fprintf(out, "Status: Image is up to date for %s\n", fam)
		}
	}
	_, err = fmt.Fprintln(out, res.Ref)
	return err
}

// runPullAllTags is docker pull --all-tags: every tag of repo, one after the
// other, as pull does each.
func runPullAllTags(cmd *cobra.Command, g *globalOptions, o *pullOptions, repo string) error {
	c, err := o.client(g, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	tags, err := c.Tags(cmd.Context(), repo)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return fmt.Errorf("repository %s has no tags", repo)
	}
	for _, t := range tags {
		if err := runPull(cmd, g, o, repo+":"+t); err != nil {
			return err
		}
	}
	return nil
}
