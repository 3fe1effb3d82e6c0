package mountcmd

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestParseLogTime: docker's --since/--until forms (api/types/time's
// GetTimestamp): "0" is the epoch, not a zero duration.
func TestParseLogTime(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	local := func(s string) time.Time {
		t.Helper()
		for _, l := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02T15", "2006-01-02"} {
			if v, err := time.ParseInLocation(l, s, time.Local); err == nil {
				return v
			}
		}
		t.Fatalf("bad case %q", s)
		return time.Time{}
	}
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"0", time.Unix(0, 0)},
		{"10m", now.Add(-10 * time.Minute)},
		{"1700000000", time.Unix(1700000000, 0)},
		{"1700000000.5", time.Unix(1700000000, 5e8)},
		{"2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"2026-01-02T15:04Z", time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC)},
		{"2026-01-02T15+01:00", time.Date(2026, 1, 2, 14, 0, 0, 0, time.UTC)},
		{"2026-01-02Z", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"2026-01-02T15:04:05", local("2026-01-02T15:04:05")},
		{"2026-01-02T15", local("2026-01-02T15")},
		{"2026-01-02", local("2026-01-02")},
	} {
		got, err := parseLogTime(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseLogTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"yesterday", "-1", "2026-13-01"} {
		if _, err := parseLogTime(bad, now); err == nil {
			t.Errorf("parseLogTime(%q) accepted", bad)
		}
	}
}

// TestLogStreamLines: a record per line; a line longer than 16 KiB is split
// (docker's), written whole or in pieces; a line without its newline waits for
// it, or for flush.
func TestLogStreamLines(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	l := &containerLog{f: f}
	s := &logStream{log: l, name: "stderr"}
	long := strings.Repeat("x", 40<<10)
	s.Write([]byte("a\nb"))
	s.Write([]byte("c\n" + long + "\n"))
	s.Write([]byte(long[:20<<10]))
	s.Write([]byte(long[20<<10:] + "\nend"))
	s.flush()
	l.close()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var r logRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Stream != "stderr" {
			t.Fatalf("record %q: %v", line, err)
		}
		got = append(got, fmt.Sprintf("%d", len(r.Log)))
	}
	// a, bc, 16K+16K+8K(+\n) twice, end
	if g, w := strings.Join(got, " "), "2 3 16384 16384 8193 16384 16384 8193 3"; g != w {
		t.Errorf("record lengths %s, want %s", g, w)
	}
}
