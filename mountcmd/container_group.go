package mountcmd

import "github.com/spf13/cobra"

func init() { addVerb(newContainerGroupCommand) }

// newContainerGroupCommand is docker's management command `container`:
// `layerfs container ls`, `container rm`, `container inspect` ... are the
// container verbs under docker's sub-command names, built by the same
// constructors as the top-level ones (so they cannot drift), plus podman's
// `container mount` and `container umount`.
func newContainerGroupCommand(g *globalOptions) *cobra.Command {
	group := &cobra.Command{
		Use:          "container",
		Short:        "Manage working containers (docker container ...)",
		Args:         groupArgs,
		SilenceUsage: true,
		RunE:         func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	addSubVerbs(group, g, []subVerb{
		{"ls", []string{"list", "ps"}, newPsCommand},
		{"rm", []string{"remove"}, newRmCommand},
		{"inspect", nil, newContainerInspectCommand},
		{"run", nil, newRunCommand},
		{"start", nil, newStartCommand},
		{"stop", nil, newStopCommand},
		{"restart", nil, newRestartCommand},
		{"kill", nil, newKillCommand},
		{"wait", nil, newWaitCommand},
		{"rename", nil, newRenameCommand},
		{"logs", nil, newLogsCommand},
		{"exec", nil, newExecCommand},
		{"commit", nil, newCommitCommand},
		{"diff", nil, newDiffCommand},
		{"export", nil, newExportCommand},
		{"mount", nil, newMountCommand},
		{"umount", []string{"unmount"}, newUmountCommand},
		{"prune", nil, newContainerPruneCommand},
		{"cp", nil, newCpCommand},
		{"top", nil, newTopCommand},
		{"create", nil, newCreateCommand},
	})
	return group
}
