package mountcmd

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestFindContainerByID: a container is found by its name, "/name", its full ID
// or any unique prefix of it; a prefix two IDs share is refused in docker's
// words, and one no ID has is no such container.
func TestFindContainerByID(t *testing.T) {
	root := t.TempDir()
	a := makeContainer(t, root, "a", 0, func(s *workState) { s.ID = "abc1" + strings.Repeat("0", 60) })
	b := makeContainer(t, root, "b", 0, func(s *workState) { s.ID = "abc2" + strings.Repeat("0", 60) })
	for _, tc := range []struct {
		arg  string
		want *workContainer
		err  error
	}{
		{"a", a, nil},
		{"/b", b, nil},
		{"abc1" + strings.Repeat("0", 60), a, nil},
		{"abc2", b, nil},
		{"abc1", a, nil},
		{"abc", nil, errAmbiguousID},
		{"abd", nil, errNoSuchContainer},
	} {
		w, err := findContainer(root, tc.arg)
		if !errors.Is(err, tc.err) || (tc.want != nil && (w == nil || w.name != tc.want.name)) {
			t.Errorf("findContainer(%q) = %v, %v; want %v, %v", tc.arg, w, err, tc.want, tc.err)
		}
	}
	if _, err := findContainer(root, "abc"); err == nil || userError(err) != "multiple IDs found with provided prefix: abc" {
		t.Errorf("ambiguous prefix: %v, want docker's message", err)
	}
}

// TestMissingContainerMessage: every verb that takes a container says docker's
// "No such container: NAME" (capital N: wrappers grep for it), commit and diff
// included.
func TestMissingContainerMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		verb func(g *globalOptions) *cobra.Command
		args []string
	}{
		{"commit", newCommitCommand, []string{"nosuchc"}},
		{"commit-tag", newCommitCommand, []string{"nosuchc", "img:1"}},
		{"diff", newDiffCommand, []string{"nosuchc"}},
		{"top", newTopCommand, []string{"nosuchc"}},
		{"rename", newRenameCommand, []string{"nosuchc", "other"}},
		{"logs", newLogsCommand, []string{"nosuchc"}},
		{"wait", newWaitCommand, []string{"nosuchc"}},
		{"rm", newRmCommand, []string{"nosuchc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &globalOptions{root: t.TempDir()}
			stderr, err := runVerb(t, tc.verb(g), tc.args...)
			if err == nil {
				t.Fatalf("%s %v: no error", tc.name, tc.args)
			}
			if msg := stderr + err.Error(); !strings.Contains(msg, "No such container: nosuchc") {
				t.Errorf("%s %v: stderr %q, err %v; want docker's %q", tc.name, tc.args, stderr, err, "No such container: nosuchc")
			}
		})
	}
}
