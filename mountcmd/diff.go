package mountcmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/layerfs/layerfs/cow"
	"github.com/spf13/cobra"
)

func init() { addVerb(newDiffCommand) }

func newDiffCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "diff NAME|DIR",
		Short: "Inspect changes to files or directories on a working container's filesystem",
		Long: `List the files and directories changed in a working container since it was made
from its image, one per line, sorted, as docker diff does:

  A  added
  C  changed (content or metadata)
  D  deleted (the children of a deleted directory are not listed)`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd, g, args[0], cmd.OutOrStdout())
		},
	}
}

func runDiff(cmd *cobra.Command, g *globalOptions, arg string, out io.Writer) error {
	w, err := findContainer(g.root, arg)
	if err != nil {
		return errors.New(userError(err))
	}
	st, err := w.load()
	if err != nil {
		return errors.New(userError(err))
	}
	store, err := openStore(g)
	if err != nil {
		return err
	}
	lowers, err := readableLowers(cmd.Context(), g, store, w, st)
	if err != nil {
		return err
	}
	upper := w.upperPath(st)
	// Not the runtime's mountpoints of a running container (run_stubs.go).
	exclude := excludeStubs(runtimeStubs(w, upper))
	changes, err := cow.Changes(upper, cow.DiffOptions{Format: cow.FormatOCI, Lowers: lowers, Exclude: exclude})
	if err != nil {
		return fmt.Errorf("diff %s: %w", w.name, err)
	}
	var b strings.Builder
	for _, c := range changes {
		p := c.Path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		fmt.Fprintf(&b, "%c %s\n", rune(c.Kind), p)
	}
	_, err = io.WriteString(out, b.String())
	return err
}
