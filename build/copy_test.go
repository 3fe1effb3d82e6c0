package build

import (
	"io/fs"
	"testing"
)

func TestParseChmod(t *testing.T) {
	tests := []struct {
		flag string
		in   fs.FileMode // the source entry's mode
		want fs.FileMode
	}{
		{"755", 0o600, 0o755},
		{"0600", fs.ModeDir | 0o755, 0o600},
		{"4755", 0o644, fs.ModeSetuid | 0o755},
		{"1777", fs.ModeDir | 0o755, fs.ModeSticky | 0o777},
		{"u+x", 0o640, 0o740},
		{"+x", 0o640, 0o751}, // no who: all, with a umask of 0 (buildkit's)
		{"go-rwx,u=rw", 0o755, 0o600},
		{"a=rX", 0o640, 0o444},
		{"a=rX", 0o744, 0o555},
		{"a=rX", fs.ModeDir | 0o700, 0o555},
		{"g+s", fs.ModeDir | 0o755, fs.ModeSetgid | 0o755},
		{"u+s", fs.ModeSetgid | 0o755, fs.ModeSetuid | fs.ModeSetgid | 0o755},
	}
	for _, tt := range tests {
		c, err := parseChmod(tt.flag)
		if err != nil {
			t.Errorf("parseChmod(%q) = %v", tt.flag, err)
			continue
		}
		if got := c.apply(tt.in); got != tt.want {
			t.Errorf("parseChmod(%q).apply(%v) = %v, want %v", tt.flag, tt.in, got, tt.want)
		}
	}
	if c, err := parseChmod(""); c != nil || err != nil {
		t.Errorf(`parseChmod("") = %v, %v, want nil, nil`, c, err)
	}
	for _, bad := range []string{"u+q", "0999", "8", "77777", "x+u", "rwx"} {
		if _, err := parseChmod(bad); err == nil {
			t.Errorf("parseChmod(%q) succeeded, want an error", bad)
		}
	}
}
