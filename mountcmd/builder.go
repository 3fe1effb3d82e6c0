package mountcmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/build"
)

func init() { addVerb(newBuilderCommand) }

// newBuilderCommand is docker's `builder` management command; prune is its verb
// that matters here.
func newBuilderCommand(g *globalOptions) *cobra.Command {
	group := &cobra.Command{
		Use:          "builder",
		Short:        "Manage builds (docker builder ...)",
		Args:         groupArgs,
		SilenceUsage: true,
		RunE:         func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var all, force bool
	prune := &cobra.Command{
		Use:   "prune [-a] [-f]",
		Short: "Remove build cache",
		Long: `Remove build cache: RUN --mount=type=cache dirs no build is using, and step
cache entries whose layer is gone; with -a, every step cache entry (the next
build reruns every step).`,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if !force {
				warning := "WARNING! This will remove all dangling build cache."
				if all {
					warning = "WARNING! This will remove all build cache."
				}
				if ok, err := confirm(cmd, warning); !ok {
					return err
				}
			}
			s, err := openStore(g)
			if err != nil {
				return err
			}
			res, err := build.PruneCache(g.root, s, all)
			if len(res.Removed) > 0 {
				fmt.Fprintln(out, "Deleted build cache objects:")
				for _, r := range res.Removed {
					fmt.Fprintln(out, r)
				}
				fmt.Fprintln(out)
			}
			if err != nil {
				return fmt.Errorf("builder prune: %w", err)
			}
			fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSize(res.Freed))
			return nil
		},
	}
	prune.Flags().BoolVarP(&all, "all", "a", false, "remove all build cache, not just dangling")
	prune.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	group.AddCommand(prune)
	return group
}
