package mountcmd

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestPsDockerFields: a docker user's ps --format templates (.Names, .State,
// .Mounts, .RunningFor, .CreatedAt) work, with docker's table headers.
func TestPsDockerFields(t *testing.T) {
	rows := []psRow{{Name: "w1", Image: "busybox:latest", Mountpoint: "/mnt/w1", Status: "mounted", Created: time.Now().Add(-3 * time.Hour)}}
	var out bytes.Buffer
	if err := writePs(&out, &psOptions{format: "{{.Names}} {{.State}} {{.Mounts}} {{.RunningFor}}"}, rows); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out.String()), "w1 mounted /mnt/w1 3 hours ago"; got != want {
		t.Errorf("ps --format = %q, want %q", got, want)
	}
	out.Reset()
	if err := writePs(&out, &psOptions{format: "table {{.Names}}\t{{.State}}\t{{.CreatedAt}}"}, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAMES STATE CREATED AT" || !strings.HasPrefix(lines[1], "w1") {
		t.Errorf("ps --format table:\n%s", out.String())
	}
}
