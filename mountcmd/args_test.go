package mountcmd

import (
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
