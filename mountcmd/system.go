package mountcmd

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/build"
)

func init() { addVerb(newSystemCommand) }

// newSystemCommand is docker's `system` management command: info, df, prune.
func newSystemCommand(g *globalOptions) *cobra.Command {
	group := &cobra.Command{
		Use:          "system",
		Short:        "Manage the store (docker system ...)",
		Args:         groupArgs,
		SilenceUsage: true,
		RunE:         func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	group.AddCommand(newInfoCommand(g), newSystemDfCommand(g), newSystemPruneCommand(g))
	return group
}

type systemPruneOptions struct {
	all     bool
	force   bool
	volumes bool
	filters []string
}

func newSystemPruneCommand(g *globalOptions) *cobra.Command {
	o := &systemPruneOptions{}
	cmd := &cobra.Command{
		Use:   "prune [-a] [-f] [--volumes] [--filter until=TIMESTAMP|label=KEY[=VALUE]|label!=...]",
		Short: "Remove unmounted containers, unused images and build cache",
		Long: `Remove, as docker system prune does: every unmounted working container (as
container prune), dangling images (with -a, every image no remaining container
uses; as image prune), unused build cache (with -a, all of it; as builder prune),
then the blobs and layer dirs nothing references any more (as gc). Mounted,
paused and dead containers and the images they use stay. Anonymous volumes live
in their container and go with it, so --volumes is accepted and changes nothing.
--filter (until=, label=, label!=) selects the containers and images as their own
prunes do; build cache cannot be selected so, and is kept when a filter is given.`,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSystemPrune(cmd, g, o)
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "remove all unused images and build cache, not just dangling ones")
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().BoolVar(&o.volumes, "volumes", false, "prune anonymous volumes (they go with their container anyway)")
	cmd.Flags().StringArrayVar(&o.filters, "filter", nil, "provide filter values (until=, label=, label!=)")
	return cmd
}

// systemPruneWarning is docker's prompt, less what layerfs has none of (networks).
func systemPruneWarning(all, filtered bool) string {
	items := []string{"all stopped containers", "all dangling images", "unused build cache"}
	if all {
		items = []string{"all stopped containers", "all images without at least one container associated to them", "all build cache"}
	}
	if filtered { // a filter keeps the build cache
		items = items[:2]
	}
	var b strings.Builder
	b.WriteString("WARNING! This will remove:\n")
	for _, it := range items {
		fmt.Fprintf(&b, "  - %s\n", it)
	}
	return b.String()
}

// runSystemPrune calls each prune in docker's order, the way its own verb does:
// containers first, so that the images only they used become unused, then
// images, build cache and last the store's gc. A step that fails does not stop
// the later ones; its error is reported at the end.
func runSystemPrune(cmd *cobra.Command, g *globalOptions, o *systemPruneOptions) error {
	f, err := parsePruneFilters(o.filters, time.Now())
	if err != nil {
		return err
	}
	warning := systemPruneWarning(o.all, len(o.filters) > 0)
	if len(o.filters) > 0 {
		warning += "\nItems to be pruned will be filtered with:\n  - " + strings.Join(o.filters, "\n  - ") + "\n"
	}
	if !o.force {
		if ok, err := confirm(cmd, warning); !ok {
			return err
		}
	}
	out := cmd.OutOrStdout()
	cres := pruneContainers(cmd.Context(), g, f)
	printDeletedContainers(out, cres.Removed)
	freed := cres.Freed

	var errs []error
	s, lines, err := pruneImages(cmd, g, o.all, f)
	printDeletedImages(out, lines)
	if err != nil {
		errs = append(errs, err)
	}
	if s == nil {
		if s, err = openStore(g); err != nil {
			return err
		}
	}
	var bres build.PruneResult
	if len(o.filters) == 0 { // build cache cannot be filtered: kept then
		bres, err = build.PruneCache(g.root, s, o.all)
	}
	if len(bres.Removed) > 0 {
		fmt.Fprintln(out, "Deleted build cache objects:")
		for _, r := range bres.Removed {
			fmt.Fprintln(out, r)
		}
		fmt.Fprintln(out)
	}
	freed += bres.Freed
	if err != nil {
		errs = append(errs, fmt.Errorf("builder prune: %w", err))
	}
	rres, err := reclaim(cmd, g, s, false)
	freed += rres.Freed
	if err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSize(freed))
	failed := cres.report(cmd) != nil
	for i, err := range errs {
		if i == len(errs)-1 {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
	}
	if failed {
		return exitError{1}
	}
	return nil
}
