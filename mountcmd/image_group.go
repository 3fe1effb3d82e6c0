package mountcmd

import (
	"strings"

	"github.com/spf13/cobra"
)

func init() { addVerb(newImageGroupCommand) }

// newImageGroupCommand is docker's management command `image`: `layerfs image ls`,
// `image rm`, `image inspect` ... are the top-level image verbs under docker's
// sub-command names, built by the same constructors (so they cannot drift).
func newImageGroupCommand(g *globalOptions) *cobra.Command {
	group := &cobra.Command{
		Use:          "image",
		Short:        "Manage images (docker image ...)",
		Args:         noArgs,
		SilenceUsage: true,
		RunE:         func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, sub := range []struct {
		name    string
		aliases []string
		make    func(*globalOptions) *cobra.Command
	}{
		{"ls", []string{"list"}, newImagesCommand},
		{"rm", []string{"remove"}, newRmiCommand},
		{"inspect", nil, newImageInspectCommand},
		{"history", nil, newHistoryCommand},
		{"tag", nil, newTagCommand},
		{"save", nil, newSaveCommand},
		{"load", nil, newLoadCommand},
		{"import", nil, newImportCommand},
		{"pull", nil, newPullCommand},
		{"push", nil, newPushCommand},
	} {
		c := sub.make(g)
		if _, rest, ok := strings.Cut(c.Use, " "); ok {
			c.Use = sub.name + " " + rest
		} else {
			c.Use = sub.name
		}
		c.Aliases = sub.aliases
		group.AddCommand(c)
	}
	group.AddCommand(newImagePruneCommand(g))
	return group
}
