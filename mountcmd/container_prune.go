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

	"github.com/layerfs/layerfs/blobstore"
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
		Use:   "prune [-f] [--filter until=TIMESTAMP|label=KEY[=VALUE]|label!=KEY[=VALUE]]",
		Short: "Remove all unmounted working containers",
		Long: `Remove every unmounted working container (docker's stopped ones): its upper
dir with every change, its anonymous volumes and its state, as rm does. Mounted,
paused and dead containers (umount clears a dead one first) and containers whose
command runs are kept. --filter until= spares containers created after the
time; label=KEY[=VALUE] removes only containers with the label (the image's or
run's --label), label!= only those without.`,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parsePruneFilters(o.filters, time.Now())
			if err != nil {
				return err
			}
			if !o.force {
				if ok, err := confirm(cmd, "WARNING! This will remove all stopped containers."); !ok {
					return err
				}
			}
			res := pruneContainers(cmd.Context(), g, f)
			out := cmd.OutOrStdout()
			printDeletedContainers(out, res.Removed)
			fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSize(res.Freed))
			return res.report(cmd)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&o.filters, "filter", nil, "provide filter values (until=TIMESTAMP|DURATION, label=KEY[=VALUE], label!=KEY[=VALUE])")
	return cmd
}

// containerPruneResult is what pruneContainers removed, and what it could not.
type containerPruneResult struct {
	Removed []string // their IDs (docker prints those), in name order
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
	s, _ := openStore(g) // nil: label filters keep every container
	for _, w := range ws {
		if ctx.Err() != nil {
			res.Failed = append(res.Failed, ctx.Err())
			return res // ^C: what is removed stays removed, the rest stays
		}
		id, size, err := pruneOne(ctx, g, w, f, s)
		if err != nil {
			res.Failed = append(res.Failed, err)
			continue
		}
		if id != "" {
			res.Removed = append(res.Removed, id)
			res.Freed += size
		}
	}
	return res
}

// pruneOne removes w if it is stopped and f keeps it, both decided under its
// lock on the state read then (a container mounted, restarted or made again
// meanwhile is not stopped any more); the exact container, never another by
// the same name. It returns the ID of the container removed ("" if it was kept)
// and the bytes that freed.
func pruneOne(ctx context.Context, g *globalOptions, w *workContainer, f *pruneFilter, s *blobstore.Store) (string, int64, error) {
	if st, err := w.load(); err != nil || !stoppedContainer(g, w, st) {
		return "", 0, nil // cheap test first, without the lock
	}
	st, unlock, err := lockAndLoad(ctx, w)
	if err != nil {
		if errors.Is(err, errNoSuchContainer) {
			return "", 0, nil // removed meanwhile
		}
		return "", 0, err
	}
	defer unlock()
	if !stoppedContainer(g, w, st) {
		return "", 0, nil
	}
	labels, ok := containerLabelsOf(s, w, st)
	if !ok && (len(f.labels) > 0 || len(f.notLabels) > 0) {
		return "", 0, nil // labels unknown: a label filter removes nothing
	}
	if !f.keepObject(st.Created, labels) {
		return "", 0, nil
	}
	size := containerSize(w, st)
	if err := w.remove(); err != nil {
		return "", 0, err
	}
	return containerID(st), size, nil
}

// stoppedContainer is docker's "stopped" for a working container: unmounted, not
// in the middle of its first mount, and no command of run's alive in it.
func stoppedContainer(g *globalOptions, w *workContainer, st *workState) bool {
	if st.Incomplete || w.status(st) != statusUnmounted {
		return false
	}
	// A restart in progress (stopped, about to start again): not stopped, for
	// a while; a mark a killed restart left goes stale.
	if fi, err := os.Stat(restartingPath(w)); err == nil && time.Since(fi.ModTime()) < 2*time.Minute {
		return false
	}
	_, _, err := runningContainer(g, w.name)
	return err != nil
}

// containerLabelsOf are w's labels (its image's, read from the store's blobs
// even once untagged, and run's --label), for prune's label= and label!=
// filters; ok=false if its image cannot be read.
func containerLabelsOf(s *blobstore.Store, w *workContainer, st *workState) (labels map[string]string, ok bool) {
	if s == nil {
		return nil, false
	}
	img, err := imageOfContainer(s, w, st)
	if err != nil {
		return nil, false
	}
	return containerLabels(img, loadSavedRun(w)), true
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

// printDeletedContainers prints docker's "Deleted Containers:" block of IDs
// (nothing when nothing went).
func printDeletedContainers(out io.Writer, ids []string) {
	if len(ids) == 0 {
		return
	}
	fmt.Fprintln(out, "Deleted Containers:")
	for _, id := range ids {
		fmt.Fprintln(out, id)
	}
	fmt.Fprintln(out)
}
