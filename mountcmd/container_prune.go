package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

type containerPruneOptions struct {
	force   bool
	filters []string
}

// newContainerPruneCommand is docker's `container prune`: remove every unmounted
// working container (docker's stopped ones) with its changes. The container
// command group registers it; there is no top-level prune for containers.
func newContainerPruneCommand(g *globalOptions) *cobra.Command {
	o := &containerPruneOptions{}
	cmd := &cobra.Command{
		Use:   "prune [-f] [--filter until=TIMESTAMP]",
		Short: "Remove all unmounted working containers",
		Long: `Remove every unmounted working container (docker's stopped ones): its upper
dir with every change, its anonymous volumes and its state, as rm does. Mounted,
paused and dead containers (umount clears a dead one first) and containers whose
command runs are kept. --filter until= keeps containers created after the time;
containers carry no labels, so label= keeps them all and label!= none.`,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parsePruneFilters(o.filters, time.Now())
			if err != nil {
				return err
			}
			if !o.force && !confirm(cmd, "WARNING! This will remove all stopped containers.") {
				return nil
			}
			res := pruneContainers(cmd.Context(), g, f)
			out := cmd.OutOrStdout()
			printDeletedContainers(out, res.Removed)
			fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSize(res.Freed))
			return res.report(cmd)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&o.filters, "filter", nil, "provide filter values (until=TIMESTAMP|DURATION)")
	return cmd
}

// containerPruneResult is what pruneContainers removed, and what it could not.
type containerPruneResult struct {
	Removed []string // names, sorted
	Freed   int64    // bytes of their upper dirs and volumes
	Failed  []error  // one per container rm refused or failed to remove
}

// report prints each failure as forEachName does and turns any into exit 1.
func (r containerPruneResult) report(cmd *cobra.Command) error {
	for _, err := range r.Failed {
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", userError(err))
	}
	if len(r.Failed) > 0 {
		return exitError{1}
	}
	return nil
}

// pruneContainers removes, through rm's own path (rmOne without -f: under the
// container's lock, refusing one mounted meanwhile), every unmounted container
// f keeps. Containers being created, mounted, paused, dead or running a command
// are left alone; so is one that got mounted or removed by someone else while
// this ran.
func pruneContainers(ctx context.Context, g *globalOptions, f *pruneFilter) containerPruneResult {
	var res containerPruneResult
	ws, err := listContainers(g.root)
	if err != nil {
		res.Failed = append(res.Failed, err)
		return res
	}
	for _, w := range ws {
		st, err := w.load()
		if err != nil || !stoppedContainer(g, w, st) || !f.keepContainer(st.Created) {
			continue
		}
		size := containerSize(w, st)
		if err := rmOne(ctx, g, &rmOptions{}, w.name); err != nil {
			if st, lerr := w.load(); lerr == nil && !stoppedContainer(g, w, st) {
				continue // mounted or being made again meanwhile: not stopped any more
			}
			if errors.Is(err, errNoSuchContainer) {
				continue // removed meanwhile
			}
			res.Failed = append(res.Failed, err)
			continue
		}
		res.Removed = append(res.Removed, w.name)
		res.Freed += size
	}
	return res
}

// stoppedContainer is docker's "stopped" for a working container: unmounted, not
// in the middle of its first mount, and no command of run's alive in it.
func stoppedContainer(g *globalOptions, w *workContainer, st *workState) bool {
	if st.Incomplete || w.status(st) != statusUnmounted {
		return false
	}
	_, _, err := runningContainer(g, w.name)
	return err != nil
}

// keepContainer is pruneFilter.keep for a working container: created before
// until (a container with no creation time never is, as images); containers
// carry no labels, so any label= filter keeps none, label!= keeps them all.
func (f *pruneFilter) keepContainer(created time.Time) bool {
	if !f.until.IsZero() && (created.IsZero() || created.After(f.until)) {
		return false
	}
	return len(f.labels) == 0
}

// containerSize is the bytes removing the container frees: its upper dir (docker's
// SizeRw) and its anonymous volumes.
func containerSize(w *workContainer, st *workState) int64 {
	n := dirSize(w.upperPath(st))
	for _, v := range containerVolumes(w) {
		n += v.size
	}
	return n
}

// containerVolume is one anonymous volume run made for an image's VOLUME.
type containerVolume struct {
	name string // <container>/<dir name>
	size int64
}

// containerVolumes lists the container's anonymous volumes (build_volumes.go).
func containerVolumes(w *workContainer) []containerVolume {
	dir := filepath.Join(w.Dir(), "volumes")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []containerVolume
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, containerVolume{name: w.name + "/" + e.Name(), size: dirSize(filepath.Join(dir, e.Name()))})
		}
	}
	return out
}

// printDeletedContainers prints docker's "Deleted Containers:" block (nothing
// when nothing went).
func printDeletedContainers(out io.Writer, names []string) {
	if len(names) == 0 {
		return
	}
	fmt.Fprintln(out, "Deleted Containers:")
	for _, n := range names {
		fmt.Fprintln(out, n)
	}
	fmt.Fprintln(out)
}
