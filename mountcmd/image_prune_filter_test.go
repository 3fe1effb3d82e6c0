package mountcmd

import (
	"testing"
	"time"
)

func TestParseTimestamp(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"24h", now.Add(-24 * time.Hour)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"1700000000", time.Unix(1700000000, 0)},
		{"1700000000.5", time.Unix(1700000000, 5e8)},
		{"2024-01-02T03:04:05Z", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"2024-01-02", time.Date(2024, 1, 2, 0, 0, 0, 0, time.Local)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseTimestamp(tc.in, now)
			if err != nil || !got.Equal(tc.want) {
				t.Errorf("parseTimestamp(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
			}
		})
	}
	if _, err := parseTimestamp("soon", now); err == nil {
		t.Errorf("parseTimestamp(soon) = nil error, want one")
	}
}
