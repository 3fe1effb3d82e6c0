package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestImagePruneFilter: image prune takes docker's --filter until= and label=/label!=
// and removes only the dangling images they select; a bad filter is refused before
// anything is asked or removed.
func TestImagePruneFilter(t *testing.T) {
	kept := strings.TrimSpace(mustRun(t, "import", "-q", "-c", "LABEL keep=yes", busyboxRootfs(t)))
	plain := strings.TrimSpace(mustRun(t, "import", "-q", "-c", "LABEL other=1", busyboxRootfs(t)))
	if r := run(t, "image", "prune", "--filter", "bogus=1"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid filter 'bogus'") {
		t.Errorf("image prune --filter bogus=1 = %+v, want invalid filter", r)
	}
	if out := mustRun(t, "image", "prune", "-f", "--filter", "until=1h"); strings.Contains(out, "deleted:") {
		t.Errorf("image prune --filter until=1h removed images created just now:\n%s", out)
	}
	out := mustRun(t, "image", "prune", "-f", "--filter", "label!=keep")
	if !strings.HasPrefix(out, "Deleted Images:\ndeleted: "+plain+"\n\n") {
		t.Errorf("image prune --filter label!=keep =\n%s", out)
	}
	if ids := mustRun(t, "images", "-q", "--no-trunc"); ids != kept+"\n" {
		t.Errorf("images after label!=keep prune = %q, want %s", ids, kept)
	}
	later := strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)
	out = mustRun(t, "image", "prune", "-f", "--filter", "until="+later, "--filter", "label=keep=yes")
	if !strings.HasPrefix(out, "Deleted Images:\ndeleted: "+kept+"\n\n") {
		t.Errorf("image prune --filter until=%s --filter label=keep=yes =\n%s", later, out)
	}
}
