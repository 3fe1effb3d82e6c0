package mountcmd

import (
	"errors"
	"fmt"
	"io"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/spf13/cobra"
)

func init() { addVerb(newRmiCommand) }

type rmiOptions struct {
	force   bool
	noPrune bool
}

func newRmiCommand(g *globalOptions) *cobra.Command {
	o := &rmiOptions{}
	cmd := &cobra.Command{
		Use:   "rmi [-f] [--no-prune] IMAGE...",
		Short: "Remove one or more images",
		Long: `Remove images as docker does: a tag, or a repo digest a pull or push recorded
(NAME@sha256:...), only untags while other tags or digests remain, and a
repository's last tag takes its digests along; an ID with several tags needs -f;
an image with child images or one a working container uses is refused. Blobs
nothing references any more are removed afterwards.`,
		Args:         minArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRmi(cmd, g, o, args)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "force removal of the image")
	cmd.Flags().BoolVar(&o.noPrune, "no-prune", false, "do not delete untagged parents")
	return cmd
}

func runRmi(cmd *cobra.Command, g *globalOptions, o *rmiOptions, args []string) error {
	s, err := openStore(g)
	if err != nil {
		return err
	}
	s.OnRemoveWait = removeWaitNotice(cmd.ErrOrStderr())
	opts := imageRemoveOptions(g)
	opts.Force, opts.NoPrune = o.force, o.noPrune
	out, failed, deleted := cmd.OutOrStdout(), false, false
	for _, a := range args {
		lines, err := s.Remove(cmd.Context(), a, opts)
		for _, l := range lines {
			fmt.Fprintln(out, l)
			if l.Deleted != "" {
				deleted = true
			}
		}
		if err != nil {
			// docker's CLI prints a missing image under -f but does not fail on it
			if !o.force || !errors.Is(err, blobstore.ErrNotFound) {
				failed = true
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Error response from daemon: %v\n", imageErr(a, err))
		}
	}
	if deleted {
		if _, err := reclaim(cmd, g, s, false); err != nil {
			return err
		}
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// removeWaitNotice says once, on w, that an image removal waits for other
// commands (a mount, a tag, a pull recording its image) and which.
func removeWaitNotice(w io.Writer) func(pids []int) {
	return func(pids []int) { fmt.Fprintln(w, waitNotice(pids, "removing images")) }
}
