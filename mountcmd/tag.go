package mountcmd

import (
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
			if _, err := blobstore.ParseTag(args[1]); err != nil {
				return err
			}
			s, img, err := openAndResolve(cmd, g, args[0])
			if err != nil {
				return err
			}
			return s.Tag(cmd.Context(), img, args[1])
		},
	}
}
