package mountcmd

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSeekTail: --tail N starts at the Nth line from the end, a last line with
// or without its newline counting as one, across read-buffer boundaries.
func TestSeekTail(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	for _, tc := range []struct {
		data string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 9, "a\nb\nc\n"},
		{"a\nb\nc\n", 0, ""},
		{"", 3, ""},
		{"\n\n", 1, "\n"},
		{long + "\n" + long + "\nend\n", 2, long + "\nend\n"},
	} {
		p := filepath.Join(t.TempDir(), "log")
		if err := os.WriteFile(p, []byte(tc.data), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := seekTail(f, tc.n); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if string(got) != tc.want {
			t.Errorf("tail %d of %.20q = %.20q (%d bytes), want %.20q (%d bytes)", tc.n, tc.data, got, len(got), tc.want, len(tc.want))
		}
	}
}

// TestParseSignal: names with and without SIG, numbers, and docker's
// real-time names (RTMIN+N, RTMAX-N).
func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"TERM": 15, "sigkill": 9, "SIGUSR1": 10, "2": 2,
		"RTMIN": 34, "SIGRTMIN+3": 37, "RTMAX": 64, "RTMAX-1": 63} {
		if got, err := parseSignal(in); err != nil || int(got) != want {
			t.Errorf("parseSignal(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"NOPE", "RTMIN-1", "RTMAX+1", "RTMIN+31", "RTMINX"} {
		if got, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) = %d, want an error", bad, got)
		}
	}
}
