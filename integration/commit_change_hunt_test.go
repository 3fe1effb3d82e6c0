package integration

// Regressions from a hunt of commit -c, inspect and history against docker's
// documented behaviour (docker commit, moby's BuildFromConfig and image inspect).

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCommitBadChangeWritesNothing: a -c that parses but does not apply (a bad
// signal, a port out of range, an empty VOLUME) fails the commit before anything is
// written, as docker applies the changes before it commits; the layer blob used to
// be stored (and sized) first.
func TestCommitBadChangeWritesNothing(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("bad", "base:1")
	if err := os.WriteFile(filepath.Join(mnt, "new-file"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sizes := filepath.Join(e.root, "store", ".layerfs", "layersizes.json")
	for _, change := range []string{"STOPSIGNAL SIGFOO", "EXPOSE 70000", `VOLUME [""]`, "EXPOSE 80/foo"} {
		before := blobFiles(t, e.root)
		sizesBefore, _ := os.ReadFile(sizes)
		e.fails("invalid change", "commit", "-c", change, "bad", "bad:1")
		if after := blobFiles(t, e.root); !slices.Equal(before, after) {
			t.Errorf("commit -c %q wrote blobs: %v, were %v", change, after, before)
		}
		if after, _ := os.ReadFile(sizes); string(after) != string(sizesBefore) {
			t.Errorf("commit -c %q recorded layer sizes:\n%s", change, after)
		}
		if out, _, _ := e.run("images", "-q", "-a"); strings.Count(out, "\n") != 1 {
			t.Errorf("images after commit -c %q:\n%s", change, out)
		}
	}
}

// TestInspectCommentFromHistory: docker inspect's Comment is the config's comment
// or, when it has none (OCI configs never do), the last history entry's: the -m of
// a commit. It was empty.
func TestInspectCommentFromHistory(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("cm", "base:1")
	if err := os.WriteFile(filepath.Join(mnt, "new-file"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("commit", "-m", "added new-file", "cm", "cm:1")
	if got := e.inspect("cm:1")["Comment"]; got != "added new-file" {
		t.Errorf("inspect cm:1 Comment = %q, want %q", got, "added new-file")
	}
	if got := strings.TrimSpace(e.ok("inspect", "-f", "{{.Comment}}", "cm:1")); got != "added new-file" {
		t.Errorf("inspect -f {{.Comment}} cm:1 = %q", got)
	}
}

// TestCommitRunContainerConfig: docker commit starts from the container's config,
// not its image's (moby's CreateImageFromContainer: Config = container.Config), so
// the command run gave becomes the image's Cmd and history created_by, and -e, -w
// and -u are kept; -c applies on top. Commit used the image's config.
func TestCommitRunContainerConfig(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`, `ENV PATH=/bin KEEP=1`)
	mustRun(t, "run", "--name", "rc1", "-e", "FOO=bar", "-e", "KEEP=2", "-w", "/tmp", "-u", "0:0",
		"busybox", "sh", "-c", "echo hi > /tmp/x")
	mustRun(t, "commit", "-c", "ENV LAST=1", "rc1", "rc:1")
	var cfg struct {
		Cmd, Env   []string
		WorkingDir string
		User       string
	}
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "--format", "{{json .Config}}", "rc:1")), &cfg); err != nil {
		t.Fatal(err)
	}
	if want := []string{"sh", "-c", "echo hi > /tmp/x"}; !slices.Equal(cfg.Cmd, want) {
		t.Errorf("committed Cmd = %q, want %q", cfg.Cmd, want)
	}
	if want := []string{"PATH=/bin", "KEEP=2", "FOO=bar", "LAST=1"}; !slices.Equal(cfg.Env, want) {
		t.Errorf("committed Env = %q, want %q", cfg.Env, want)
	}
	if cfg.WorkingDir != "/tmp" || cfg.User != "0:0" {
		t.Errorf("committed WorkingDir, User = %q, %q, want /tmp, 0:0", cfg.WorkingDir, cfg.User)
	}
	hist := mustRun(t, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "rc:1")
	if first, _, _ := strings.Cut(hist, "\n"); first != "sh -c echo hi > /tmp/x" {
		t.Errorf("history created_by = %q, want the run's command", first)
	}
}
