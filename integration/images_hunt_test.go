package integration

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
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

// TestPsImageAfterRetag: ps shows the ref a working container was made from only
// while that ref still names the container's image; untagged, or moved to another
// image, the column shows the short image ID, as docker ps does.
func TestPsImageAfterRetag(t *testing.T) {
	testenv.RequireFUSE(t)
	id := importBusybox(t, "app:1")
	other := strings.TrimSpace(mustRun(t, "import", "-q", "-c", "LABEL v=2", busyboxRootfs(t)))
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustRun(t, "mount", "--name", "c1", "app:1", mnt)
	mustRun(t, "umount", mnt)
	image := func() string { return strings.TrimSpace(mustRun(t, "ps", "-a", "--format", "{{.Image}}")) }
	if got := image(); got != "app:1" {
		t.Errorf("ps image = %q, want app:1", got)
	}
	short := strings.TrimPrefix(id, "sha256:")[:12]
	mustRun(t, "tag", other, "app:1")
	if got := image(); got != short {
		t.Errorf("ps image after app:1 moved to another image = %q, want %s", got, short)
	}
	mustRun(t, "rmi", "app:1")
	if got := image(); got != short {
		t.Errorf("ps image after rmi app:1 = %q, want %s", got, short)
	}
	mustRun(t, "tag", id, "app:1")
	if got := image(); got != "app:1" {
		t.Errorf("ps image after app:1 came back = %q, want app:1", got)
	}
	mustRun(t, "rm", "c1")
}
