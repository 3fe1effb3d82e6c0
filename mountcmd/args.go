package mountcmd

import (
	"fmt"

	"github.com/spf13/cobra"
)

// Argument-count validators that word the error as docker does, on one line:
// `"layerfs tag" requires exactly 2 arguments. See 'layerfs tag --help'.`

func exactArgs(n int) cobra.PositionalArgs { return rangeArgs(n, n) }

func minArgs(n int) cobra.PositionalArgs { return rangeArgs(n, -1) }

func maxArgs(n int) cobra.PositionalArgs { return rangeArgs(0, n) }

// groupArgs is the Args of a command group (image, container, system ...):
// alone it prints its help; a first word that names none of its commands is
// an unknown command, as docker's cli.NoArgs says it for a command with
// subcommands (exit 1), not "accepts no arguments".
func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return errUnknownCommand(cmd, args[0])
}

// errUnknownCommand is docker's error for a word that names no command of the
// group cmd: `unknown command: layerfs image bogus`, with the help hint.
func errUnknownCommand(cmd *cobra.Command, name string) error {
	return fmt.Errorf("unknown command: %s %s\nSee '%s --help'.", cmd.CommandPath(), name, cmd.CommandPath())
}

// noArgs refuses any argument.
func noArgs(cmd *cobra.Command, args []string) error { return rangeArgs(0, 0)(cmd, args) }

// rangeArgs accepts lo..hi arguments (hi < 0: no upper bound).
func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		n := len(args)
		if n >= lo && (hi < 0 || n <= hi) {
			return nil
		}
		var want string
		switch {
		case lo == hi && lo == 0:
			want = "accepts no arguments"
		case lo == hi:
			want = "requires exactly " + plural(lo, "argument")
		case hi < 0:
			want = "requires at least " + plural(lo, "argument")
		case n < lo:
			want = "requires at least " + plural(lo, "argument")
		default:
			want = "requires at most " + plural(hi, "argument")
		}
		return fmt.Errorf("%q %s. See '%s --help'.", cmd.CommandPath(), want, cmd.CommandPath())
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
