package mountcmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	units "github.com/docker/go-units"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/cow"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

func init() { addVerb(newGCCommand) }

// pruneLayerDirs removes unpacked layer directories (<root>/layers) whose diffID is
// not in keep, through cow.LayerCache.Prune (which skips layers being unpacked), and
// returns the bytes they held. With dryRun it only measures.
var pruneLayerDirs = func(g *globalOptions, keep map[digest.Digest]bool, dryRun bool) (freed int64, err error) {
	dir := filepath.Join(g.root, "layers")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("prune layers: %w", err)
	}
	sizes := map[string]int64{}
	var inUse map[string]bool
	for _, e := range ents {
		if cow.IsStaleLayerDir(e.Name()) {
			// An older format's unpack, replaced: gone once no mount holds it.
			if inUse == nil {
				inUse = cow.LayerDirsInUse(dir)
			}
			if !inUse[e.Name()] {
				sizes[e.Name()] = dirSize(filepath.Join(dir, e.Name()))
			}
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil || keep[d] {
			continue
		}
		sizes[e.Name()] = dirSize(filepath.Join(dir, e.Name()))
	}
	if !dryRun {
		if err := (&cow.LayerCache{Dir: dir}).Prune(keep); err != nil {
			return 0, err
		}
	}
	for name, n := range sizes {
		if _, err := os.Lstat(filepath.Join(dir, name)); dryRun || errors.Is(err, os.ErrNotExist) {
			freed += n
		}
	}
	return freed, nil
}

// dirSize is the bytes of the regular files under p, each inode once (treeSize).
func dirSize(p string) int64 {
	n, _ := sizeOfTree(p, false) // what it could read
	return n
}

type gcOptions struct {
	dryRun bool
}

func newGCCommand(g *globalOptions) *cobra.Command {
	o := &gcOptions{}
	cmd := &cobra.Command{
		Use:   "gc [--dry-run]",
		Short: "Remove blobs and layer directories nothing references",
		Long: `Remove every blob that no image in the store and no working container
references, leftovers of interrupted loads, working containers that a killed mount or
run left before mounting, and unpacked layers no image uses; print what went and how
much space it freed.`,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openStore(g)
			if err != nil {
				return err
			}
			res, err := reclaim(cmd, g, s, o.dryRun)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			verb := "Deleted"
			if o.dryRun {
				verb = "Would delete"
			}
			for _, d := range res.Removed {
				fmt.Fprintf(out, "%s: %s\n", verb, d)
			}
			if res.TempFiles > 0 {
				fmt.Fprintf(out, "%s: %d leftover temporary file(s)\n", verb, res.TempFiles)
			}
			if res.Abandoned > 0 {
				fmt.Fprintf(out, "%s: %d abandoned working container(s)\n", verb, res.Abandoned)
			}
			if o.dryRun {
				fmt.Fprintf(out, "Total reclaimable space: %s\n", units.HumanSizeWithPrecision(float64(res.Freed), 3))
			} else {
				fmt.Fprintf(out, "Total reclaimed space: %s\n", units.HumanSizeWithPrecision(float64(res.Freed), 3))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "only say what would be removed")
	return cmd
}

// reclaimResult is what reclaim removed (with dryRun, would remove).
type reclaimResult struct {
	blobstore.GCResult
	// Abandoned counts working containers a mount or run created and was killed
	// before mounting (workContainer.abandoned); TempFiles counts the other
	// leftovers of killed commands.
	Abandoned int
}

// reclaim runs the store's GC with the working containers as extra roots, then
// prunes unpacked layers no image or container uses. Both, and the reading of the
// containers' roots, run under the store's GC lock: a mount holds a Lease from
// before it resolves its image until its state.json names it and its layers are
// unpacked, so no container is half made while they run.
func reclaim(cmd *cobra.Command, g *globalOptions, s *blobstore.Store, dryRun bool) (reclaimResult, error) {
	roots := func() ([]digest.Digest, error) {
		r, err := workingContainerRoots(g)
		if err != nil {
			return nil, fmt.Errorf("gc: working containers: %w", err)
		}
		return r, nil
	}
	var freed int64
	errOut := cmd.ErrOrStderr()
	s.OnGCWait = func(pids []int) { fmt.Fprintln(errOut, gcWaitNotice(pids)) }
	gres, err := s.GCWith(cmd.Context(), dryRun, roots, func(keep map[digest.Digest]bool) (err error) {
		used, err := workingContainerLayers(g)
		if err != nil {
			return fmt.Errorf("gc: working containers: %w", err)
		}
		for d := range used {
			keep[d] = true
		}
		freed, err = pruneLayerDirs(g, keep, dryRun)
		return err
	})
	res := reclaimResult{GCResult: gres}
	res.Freed += freed
	if errors.Is(err, blobstore.ErrLockWaitEnded) {
		// ^C while it waited for the store (the blocked wait restarted
		// after signals, so nothing stopped it before).
		fmt.Fprintln(errOut, "Interrupted while waiting for the store: nothing was collected (layerfs gc does it later)")
		return res, exitError{130}
	}
	if err != nil {
		return res, err
	}
	// Leftovers of killed builds and container commands, outside the store.
	lo, err := removeContainerLeftovers(g.root, dryRun)
	res.TempFiles += lo.files
	res.Abandoned += lo.abandoned
	if err != nil {
		return res, err
	}
	n, err := build.RemoveStaleScratch(g.root, dryRun)
	res.TempFiles += n
	return res, err
}

// gcWaitNotice tells a user why a command that collects garbage waits: the
// commands using the store (a build, a save, a push) hold leases on it that the
// collection must wait out.
func gcWaitNotice(pids []int) string { return waitNotice(pids, "collecting garbage") }

// waitNotice tells a user why a command waits before doing what: for the
// commands pids (their command lines), which use the store.
func waitNotice(pids []int, what string) string {
	var who []string
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 0 {
			args[0] = filepath.Base(args[0])
		}
		c := strings.Join(args, " ")
		if len(c) > 60 {
			c = c[:57] + "..."
		}
		who = append(who, fmt.Sprintf("pid %d: %s", pid, c))
	}
	msg := "Waiting for other commands using the store to finish before " + what
	if len(who) > 0 {
		msg += " (" + strings.Join(who, "; ") + ")"
	}
	return msg + "; ^C stops waiting"
}
