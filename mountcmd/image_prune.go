package mountcmd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/spf13/cobra"
)

type imagePruneOptions struct {
	all     bool
	force   bool
	filters []string
}

// newImagePruneCommand is docker's `image prune`: remove dangling images (with -a,
// every image no working container uses), then the blobs and layer dirs nothing
// references, and say how much space that freed.
func newImagePruneCommand(g *globalOptions) *cobra.Command {
	o := &imagePruneOptions{}
	cmd := &cobra.Command{
		Use:          "prune [-a] [-f]",
		Short:        "Remove unused images",
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runImagePrune(cmd, g, o)
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "remove all images no working container uses, not just dangling ones")
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&o.filters, "filter", nil, "provide filter values (until=TIMESTAMP|DURATION, label=KEY[=VALUE], label!=KEY[=VALUE])")
	return cmd
}

func runImagePrune(cmd *cobra.Command, g *globalOptions, o *imagePruneOptions) error {
	f, err := parsePruneFilters(o.filters, time.Now())
	if err != nil {
		return err
	}
	if !o.force {
		warning := "WARNING! This will remove all dangling images."
		if o.all {
			warning = "WARNING! This will remove all images without at least one container associated to them."
		}
		if ok, err := confirm(cmd, warning); !ok {
			return err
		}
	}
	s, lines, err := pruneImages(cmd, g, o.all, f)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	printDeletedImages(out, lines)
	res, err := reclaim(cmd, g, s, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSize(res.Freed))
	return nil
}

// pruneImages removes the dangling images (with all, every image no working
// container uses) that f keeps, as image prune does, and returns the store and
// rmi's lines for what went; the blobs they held stay until reclaim. Shared by
// image prune and system prune.
func pruneImages(cmd *cobra.Command, g *globalOptions, all bool, f *pruneFilter) (*blobstore.Store, []blobstore.RemoveLine, error) {
	s, imgs, err := openImages(g)
	if err != nil {
		return nil, nil, err
	}
	s.OnRemoveWait = removeWaitNotice(cmd.ErrOrStderr())
	opts := imageRemoveOptions(g)
	containers, err := loadContainerImages(g)
	if err != nil {
		return nil, nil, err
	}
	var lines []blobstore.RemoveLine
	for _, img := range imgs { // newest first: children go before their parents
		if err := cmd.Context().Err(); err != nil {
			return s, lines, err // ^C: what went stays gone, the rest stays
		}
		// A repo digest is a reference too, as in docker: an image with one
		// is not dangling, and -a removes it with its tags.
		// So is a name another tool gave it that is no docker reference
		// (skopeo's or umoci's OCI tag "Stable"): docker prunes no named image.
		if (!all && (len(img.Tags)+len(img.PulledDigests)+len(img.OtherNames) > 0)) || !f.keep(img) {
			continue
		}
		if len(containers.using(img)) > 0 {
			continue // Remove asks again, under its lock, before it deletes
		}
		refs := append(append([]string(nil), img.Tags...), img.PulledDigests...)
		if len(refs) == 0 {
			refs = []string{img.ID.String()}
		}
		for _, ref := range refs {
			l, err := s.Remove(cmd.Context(), ref, opts)
			lines = append(lines, l...)
			var conflict *blobstore.ConflictError
			if errors.As(err, &conflict) || errors.Is(err, blobstore.ErrNotFound) {
				break // kept (children, a container), or gone with a child already
			}
			if err != nil {
				return s, lines, err
			}
		}
	}
	return s, lines, nil
}

// printDeletedImages prints docker's "Deleted Images:" block (nothing when
// nothing went).
func printDeletedImages(out io.Writer, lines []blobstore.RemoveLine) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(out, "Deleted Images:")
	for _, l := range lines {
		if l.Untagged != "" {
			fmt.Fprintf(out, "untagged: %s\n", l.Untagged)
		} else {
			fmt.Fprintf(out, "deleted: %s\n", l.Deleted)
		}
	}
	fmt.Fprintln(out)
}

// confirm is docker's prune prompt: warning, then a y/N question read from
// stdin; anything but y or yes (EOF too) is no. ^C at the prompt is no too, and
// an error (exit 130, as the shell reports a command SIGINT ended), so a script
// can tell it from an answer.
func confirm(cmd *cobra.Command, warning string) (bool, error) {
	fmt.Fprintf(cmd.OutOrStdout(), "%s\nAre you sure you want to continue? [y/N] ", warning)
	answers := make(chan string, 1)
	go func() {
		answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		answers <- answer
	}()
	select {
	case answer := <-answers:
		a := strings.ToLower(strings.TrimSpace(answer))
		return a == "y" || a == "yes", nil
	case <-cmd.Context().Done(): // ^C at the prompt: no
		fmt.Fprintln(cmd.OutOrStdout())
		return false, exitError{130}
	}
}
