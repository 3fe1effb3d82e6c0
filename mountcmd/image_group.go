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
		Args:         groupArgs,
		SilenceUsage: true,
		RunE:         func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	addSubVerbs(group, g, []subVerb{
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
	})
	group.AddCommand(newImagePruneCommand(g))
	return group
}

// subVerb is a verb of a management command (image, container): a top-level
// verb's constructor under docker's sub-command name.
type subVerb struct {
	name    string
	aliases []string
	make    func(*globalOptions) *cobra.Command
}

// addSubVerbs adds each verb to group under its name, keeping its usage's
// arguments.
func addSubVerbs(group *cobra.Command, g *globalOptions, verbs []subVerb) {
	for _, sub := range verbs {
		c := sub.make(g)
		if _, rest, ok := strings.Cut(c.Use, " "); ok {
			c.Use = sub.name + " " + rest
		} else {
			c.Use = sub.name
		}
		c.Aliases = sub.aliases
		group.AddCommand(c)
	}
}
