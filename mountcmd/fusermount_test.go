package mountcmd

import (
	"os"
	"path/filepath"
	"testing"
)

// A user's mount that fusermount3 refused said only its exit status: why is
// what fusermount3 printed into the server's log (found by a review).
func TestFusermountSays(t *testing.T) {
	p := filepath.Join(t.TempDir(), "server.log")
	log := "2026/11/24 00:01:37.843512 mounting c at /m (lowers 1)\n" +
		"/usr/bin/fusermount3: failed to open /dev/fuse: Permission denied\n" +
		"Error: mount /m: fusermount3: exit status 1\n"
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := fusermountSays(p, 0), "failed to open /dev/fuse: Permission denied"; got != want {
		t.Errorf("fusermountSays = %q, want %q", got, want)
	}
	// Not an earlier mount's reason: only what this one wrote counts.
	if got := fusermountSays(p, int64(len(log))); got != "" {
		t.Errorf("fusermountSays of what comes after an earlier failure = %q, want nothing", got)
	}
	if err := os.WriteFile(p, []byte("mounting c at /m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := fusermountSays(p, 0); got != "" {
		t.Errorf("fusermountSays of a log without fusermount's line = %q, want nothing", got)
	}
}
