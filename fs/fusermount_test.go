package fs

import (
	"errors"
	"testing"
)

// A user's failed mount said go-fuse's "fusermount exited with code 256" and a
// newline: a wait status, not fusermount3's exit status (found by a review).
func TestFusermountError(t *testing.T) {
	for in, want := range map[string]string{
		"fusermount exited with code 256\n": "fusermount3: exit status 1",
		"fusermount exited with code 9\n":   "fusermount3: killed",
		"no such file or directory":         "no such file or directory",
	} {
		if got := fusermountError(errors.New(in)).Error(); got != want {
			t.Errorf("fusermountError(%q) = %q, want %q", in, got, want)
		}
	}
}
