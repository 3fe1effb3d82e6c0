package mountcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// makeContainer creates an unmounted working container named name under root,
// with upperBytes bytes in its upper dir.
func makeContainer(t *testing.T, root, name string, upperBytes int, edit func(*workState)) *workContainer {
	t.Helper()
	w, err := newWorkContainer(root, name)
	if err != nil {
		t.Fatal(err)
	}
	st := &workState{ImageID: digest.Digest("sha256:" + strings.Repeat("a", 64)), Created: time.Now().Add(-time.Hour).UTC()}
	if edit != nil {
		edit(st)
	}
	if err := w.create(st); err != nil {
		t.Fatal(err)
	}
	if upperBytes > 0 {
		if err := os.WriteFile(filepath.Join(w.upperPath(st), "f"), make([]byte, upperBytes), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// idOf is w's container ID (docker's 64 hex digits), which prune prints.
func idOf(t *testing.T, w *workContainer) string {
	t.Helper()
	st, err := w.load()
	if err != nil {
		t.Fatal(err)
	}
	if id := containerID(st); len(id) != 64 || !isHexString(id) {
		t.Fatalf("containerID(%s) = %q, want 64 hex digits", w.name, id)
	}
	return containerID(st)
}

// runPrune runs container prune's command with stdin and args.
func runPrune(t *testing.T, g *globalOptions, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newContainerPruneCommand(g)
	var out bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestContainerPrune: only unmounted containers go, through rm's path; a mounted
// one, one whose command runs (run.json naming a live process) and one still
// being created stay;
// "n", an empty stdin and a newer-than-until container keep theirs.
func TestContainerPrune(t *testing.T) {
	root := t.TempDir()
	g := &globalOptions{root: root}
	oldID := idOf(t, makeContainer(t, root, "old", 1000, nil))
	freshID := idOf(t, makeContainer(t, root, "fresh", 10, func(s *workState) { s.Created = time.Now().UTC() }))
	makeContainer(t, root, "creating", 0, func(s *workState) { s.Incomplete = true })
	running := makeContainer(t, root, "running", 5, nil)
	self := os.Getpid()
	b, _ := json.Marshal(runState{Pid: self, StartTime: procStartTime(self)})
	if err := os.WriteFile(runStatePath(running), b, 0o600); err != nil {
		t.Fatal(err)
	}
	// "mounted": a live server holds its server lock (what status reads).
	mounted := makeContainer(t, root, "mounted", 5, nil)
	lock, err := os.OpenFile(mounted.serverLock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		ws, err := listContainers(root)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range ws {
			out = append(out, w.name)
		}
		return out
	}
	all := []string{"creating", "fresh", "mounted", "old", "running"}

	for _, stdin := range []string{"n\n", ""} {
		out, err := runPrune(t, g, stdin)
		if err != nil || !strings.Contains(out, "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ") {
			t.Errorf("prune with stdin %q = %q, %v; want the prompt", stdin, out, err)
		}
		if got := names(); !slices.Equal(got, all) {
			t.Errorf("after prune answered %q: containers %v, want %v", stdin, got, all)
		}
	}

	out, err := runPrune(t, g, "y\n", "--filter", "until=30m")
	if err != nil {
		t.Fatalf("prune --filter until=30m: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Deleted Containers:\n"+oldID+"\n\nTotal reclaimed space: 1kB\n") {
		t.Errorf("prune --filter until=30m printed %q, want old's ID %s deleted and 1kB", out, oldID)
	}
	if got, want := names(), []string{"creating", "fresh", "mounted", "running"}; !slices.Equal(got, want) {
		t.Errorf("after prune --filter until=30m: containers %v, want %v", got, want)
	}

	out, err = runPrune(t, g, "", "-f")
	if err != nil || strings.Contains(out, "WARNING") || !strings.Contains(out, "Deleted Containers:\n"+freshID+"\n") {
		t.Errorf("prune -f = %q, %v; want fresh's ID %s deleted without a prompt", out, err, freshID)
	}
	if got, want := names(), []string{"creating", "mounted", "running"}; !slices.Equal(got, want) {
		t.Errorf("after prune -f: containers %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(root, "locks", "work-fresh.lock")); !os.IsNotExist(err) {
		t.Errorf("lock of a pruned container: stat = %v, want it removed as rm does", err)
	}

	out, err = runPrune(t, g, "", "-f")
	if err != nil || out != "Total reclaimed space: 0B\n" {
		t.Errorf("prune -f with nothing to do = %q, %v", out, err)
	}
}

func TestContainerPruneFilter(t *testing.T) {
	now := time.Now()
	keep := map[string]string{"keep": "1"}
	for _, tc := range []struct {
		filters []string
		created time.Time
		labels  map[string]string
		want    bool
	}{
		{nil, now, nil, true},
		{nil, time.Time{}, nil, true},
		{[]string{"until=1h"}, now.Add(-2 * time.Hour), nil, true},
		{[]string{"until=1h"}, now, nil, false},
		{[]string{"until=1h"}, time.Time{}, nil, false},
		{[]string{"label=keep"}, now, nil, false},
		{[]string{"label=keep"}, now, keep, true},
		{[]string{"label!=keep"}, now, nil, true},
		{[]string{"label!=keep"}, now, keep, false},
		{[]string{"label!=keep=2"}, now, keep, true},
		// Several label!=: docker keeps only what has all of them.
		{[]string{"label!=keep", "label!=other"}, now, keep, true},
		{[]string{"label!=keep", "label!=other"}, now, map[string]string{"keep": "1", "other": ""}, false},
		{[]string{"label!=keep", "label!=other"}, now, nil, true},
	} {
		f, err := parsePruneFilters(tc.filters, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.keepObject(tc.created, tc.labels); got != tc.want {
			t.Errorf("keepObject(%v, %v) with %v = %v, want %v", tc.created, tc.labels, tc.filters, got, tc.want)
		}
	}
	if _, err := runPrune(t, &globalOptions{root: t.TempDir()}, "", "-f", "--filter", "bogus=1"); err == nil || err.Error() != "invalid filter 'bogus'" {
		t.Errorf("prune --filter bogus=1 = %v, want invalid filter 'bogus'", err)
	}
}

// TestConfirmInterrupted: ^C at a prune's prompt answers no and exits 130 (it
// exited 0, as a typed "n" does, so a script could not tell them apart).
func TestConfirmInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pr, pw := io.Pipe() // a prompt nobody answers
	defer pw.Close()
	cmd := &cobra.Command{}
	cmd.SetContext(ctx)
	cmd.SetIn(pr)
	var out bytes.Buffer
	cmd.SetOut(&out)
	ok, err := confirm(cmd, "WARNING!")
	var ee exitError
	if ok || !errors.As(err, &ee) || ee.code != 130 {
		t.Errorf("confirm after ^C = %v, %v; want false, exit 130", ok, err)
	}
	if ok, err := confirm(cmdWithInput("y\n"), "WARNING!"); !ok || err != nil {
		t.Errorf("confirm answered y = %v, %v", ok, err)
	}
}

func cmdWithInput(in string) *cobra.Command {
	cmd := &cobra.Command{}
	cmd.SetContext(context.Background())
	cmd.SetIn(strings.NewReader(in))
	cmd.SetOut(io.Discard)
	return cmd
}
