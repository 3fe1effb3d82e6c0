package mountcmd

import (
	"errors"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/spf13/cobra"
)

func init() { addVerb(newTagCommand) }

func newTagCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:          "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short:        "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:         exactArgs(2),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := blobstore.ParseNewTag(args[1]); errors.Is(err, blobstore.ErrAmbiguousTag) {
				return daemonError(cmd, err) // docker's daemon refuses it
			} else if err != nil {
				return err
			}
			// Hold a lease from resolve to tag, so no GC removes the image's blobs
			// in between; Tag re-checks under the index lock that an rmi did not
			// drop the image meanwhile.
			s, release, err := openLeased(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer release()
			img, err := s.Resolve(args[0])
			if err != nil {
				return daemonError(cmd, imageErr(args[0], err))
			}
			if err := s.Tag(cmd.Context(), img, args[1]); err != nil {
				return daemonError(cmd, imageErr(args[0], err))
			}
			return nil
		},
	}
}
