package mountcmd

import (
	"errors"
	"strings"
	"testing"
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
