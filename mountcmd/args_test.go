package mountcmd

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestArgsWording(t *testing.T) {
	root := &cobra.Command{Use: "layerfs"}
	sub := &cobra.Command{Use: "tag"}
	root.AddCommand(sub)
	for _, tc := range []struct {
		v    cobra.PositionalArgs
		n    int
		want string // "" = accepted
	}{
		{exactArgs(2), 1, `"layerfs tag" requires exactly 2 arguments. See 'layerfs tag --help'.`},
		{exactArgs(2), 2, ""},
		{minArgs(1), 0, `"layerfs tag" requires at least 1 argument. See 'layerfs tag --help'.`},
		{minArgs(1), 5, ""},
		{maxArgs(1), 2, `"layerfs tag" requires at most 1 argument. See 'layerfs tag --help'.`},
		{rangeArgs(1, 2), 3, `"layerfs tag" requires at most 2 arguments. See 'layerfs tag --help'.`},
		{rangeArgs(1, 2), 0, `"layerfs tag" requires at least 1 argument. See 'layerfs tag --help'.`},
		{noArgs, 1, `"layerfs tag" accepts no arguments. See 'layerfs tag --help'.`},
		{noArgs, 0, ""},
	} {
		err := tc.v(sub, make([]string, tc.n))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want || strings.Contains(got, "\n") {
			t.Errorf("validator with %d args = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestGroupUnknownCommand: every command group of the tree (image, container,
// system, builder, completion ...) says a mistyped command is an unknown
// command, in docker's words, even with a flag after it that the group lacks;
// the group alone prints its help.
func TestGroupUnknownCommand(t *testing.T) {
	var groups []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.HasSubCommands() {
				groups = append(groups, sub.Name())
				walk(sub)
			}
		}
	}
	walk(NewRootCommand())
	for _, want := range []string{"image", "container", "system", "builder", "completion"} {
		if !slices.Contains(groups, want) {
			t.Errorf("groups = %q, want %s among them", groups, want)
		}
	}
	for _, group := range groups {
		for _, args := range [][]string{{group, "bogus"}, {group, "bogus", "x"}, {group, "bogus", "-o", "x"}, {group, "bogus", "--nosuchflag"}} {
			root := NewRootCommand()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append([]string{"--root", t.TempDir()}, args...))
			err := root.Execute()
			want := "unknown command: layerfs " + group + " bogus\nSee 'layerfs " + group + " --help'."
			if err == nil || err.Error() != want || errors.As(err, new(flagError)) {
				t.Errorf("layerfs %q: %v; want %q (exit 1, not a flag error)", args, err, want)
			}
		}
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"--root", t.TempDir(), group})
		if err := root.Execute(); err != nil || !strings.Contains(out.String(), "Available Commands:") {
			t.Errorf("layerfs %s = %v, output %q; want its help", group, err, out.String())
		}
	}
}
