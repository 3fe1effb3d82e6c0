package mountcmd

import (
	"testing"
)

func TestCreatedSinceAndSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1220000: "1.22MB", 16000000: "16MB", 142560184: "143MB", 7800: "7.8kB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
	if got := createdSince(nowUTC().Add(-3 * 3600e9)); got != "3 hours ago" {
		t.Errorf("createdSince(3h) = %q", got)
	}
}
