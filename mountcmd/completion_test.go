package mountcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// complete runs `layerfs __complete --root root args...` through the root
// command and returns the offered words, the directive and what went to
// stderr other than cobra's own directive line.
func complete(t *testing.T, root string, args ...string) ([]string, cobra.ShellCompDirective, string) {
	t.Helper()
	cmd := NewRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append([]string{cobra.ShellCompRequestCmd, "--root", root}, args...))
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("__complete %q: %v", args, err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, ":") {
		t.Fatalf("__complete %q: no directive line in %q", args, out.String())
	}
	d, err := strconv.Atoi(last[1:])
	if err != nil {
		t.Fatal(err)
	}
	var stderr []string
	for _, l := range strings.Split(errOut.String(), "\n") {
		if l != "" && !strings.HasPrefix(l, "Completion ended with directive") {
			stderr = append(stderr, l)
		}
	}
	return lines[:len(lines)-1], cobra.ShellCompDirective(d), strings.Join(stderr, "\n")
}

// treeOf lists every path under root with its size and mtime: completion must
// leave the store as it found it.
func treeOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, p+" "+strconv.FormatInt(fi.Size(), 10)+" "+fi.ModTime().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// completionStore makes a store with images a:1 and reg.example:5000/x/y:2 and
// containers: idle (created, never run), web (its command runs: run.json names
// this test's live process) and half (still being created).
func completionStore(t *testing.T) string {
	t.Helper()
	g, s, img := storeWithImage(t)
	if err := s.Tag(context.Background(), img, "reg.example:5000/x/y:2"); err != nil {
		t.Fatal(err)
	}
	makeContainer(t, g.root, "idle", 0, nil)
	web := makeContainer(t, g.root, "web", 0, nil)
	self := os.Getpid()
	b, _ := json.Marshal(runState{Pid: self, StartTime: procStartTime(self), Started: time.Now()})
	if err := os.WriteFile(runStatePath(web), b, 0o600); err != nil {
		t.Fatal(err)
	}
	makeContainer(t, g.root, "half", 0, func(s *workState) { s.Incomplete = true })
	return g.root
}

const (
	noFile = cobra.ShellCompDirectiveNoFileComp
	files  = cobra.ShellCompDirectiveDefault
)

// TestCompleteOperands: each command offers the names its operand takes, as
// docker's completion does (stop the running containers, start the others,
// rmi and run the images by repo:tag, cp "NAME:"), only at the positions that
// take names, falling back to files where a DIR or local path may stand; the
// store is not touched and nothing is printed.
func TestCompleteOperands(t *testing.T) {
	root := completionStore(t)
	before := treeOf(t, root)
	imgs := []string{"a:1", "reg.example:5000/x/y:2"}
	for _, tc := range []struct {
		args []string
		want []string
		dir  cobra.ShellCompDirective
	}{
		{[]string{"stop", ""}, []string{"web"}, noFile},
		{[]string{"stop", "web", ""}, []string{"web"}, noFile},
		{[]string{"container", "stop", ""}, []string{"web"}, noFile},
		{[]string{"kill", ""}, []string{"web"}, noFile},
		{[]string{"exec", ""}, []string{"web"}, noFile},
		{[]string{"exec", "web", ""}, nil, noFile},
		{[]string{"top", ""}, []string{"web"}, noFile},
		{[]string{"start", ""}, []string{"idle"}, noFile},
		{[]string{"rm", ""}, []string{"idle", "web"}, noFile},
		{[]string{"rm", "i"}, []string{"idle"}, noFile},
		{[]string{"container", "rm", ""}, []string{"idle", "web"}, noFile},
		{[]string{"restart", ""}, []string{"idle", "web"}, noFile},
		{[]string{"logs", ""}, []string{"idle", "web"}, noFile},
		{[]string{"logs", "web", ""}, nil, noFile},
		{[]string{"wait", ""}, []string{"idle", "web"}, noFile},
		{[]string{"rename", ""}, []string{"idle", "web"}, noFile},
		{[]string{"rename", "web", ""}, nil, noFile},
		{[]string{"commit", ""}, []string{"idle", "web"}, files},
		{[]string{"commit", "web", ""}, nil, noFile},
		{[]string{"diff", ""}, []string{"idle", "web"}, files},
		{[]string{"umount", ""}, []string{"idle", "web"}, files},
		{[]string{"export", ""}, []string{"a:1", "idle", "reg.example:5000/x/y:2", "web"}, files},
		{[]string{"container", "inspect", ""}, []string{"idle", "web"}, noFile},
		{[]string{"inspect", ""}, []string{"a:1", "idle", "reg.example:5000/x/y:2", "web"}, noFile},
		{[]string{"inspect", "--type", "image", ""}, imgs, noFile},
		{[]string{"inspect", "--type", "container", ""}, []string{"idle", "web"}, noFile},
		{[]string{"rmi", ""}, imgs, noFile},
		{[]string{"rmi", "a:1", ""}, imgs, noFile},
		{[]string{"image", "rm", ""}, imgs, noFile},
		{[]string{"image", "inspect", "r"}, imgs[1:], noFile},
		{[]string{"run", ""}, imgs, noFile},
		{[]string{"run", "--rm", "a"}, imgs[:1], noFile},
		{[]string{"run", "a:1", ""}, nil, noFile},
		{[]string{"container", "run", ""}, imgs, noFile},
		{[]string{"create", ""}, imgs, noFile},
		{[]string{"history", ""}, imgs, noFile},
		{[]string{"tag", ""}, imgs, noFile},
		{[]string{"tag", "a:1", ""}, nil, noFile},
		{[]string{"save", "a:1", ""}, imgs, noFile},
		{[]string{"push", ""}, imgs, noFile},
		{[]string{"push", "a:1", ""}, nil, noFile},
		{[]string{"mount", ""}, imgs, files},
		{[]string{"mount", "a:1", ""}, nil, files},
		{[]string{"mount", "--name", ""}, []string{"idle", "web"}, noFile},
		{[]string{"cp", ""}, []string{"idle:", "web:"}, files | cobra.ShellCompDirectiveNoSpace},
		{[]string{"cp", "w"}, []string{"web:"}, files | cobra.ShellCompDirectiveNoSpace},
		{[]string{"cp", "x"}, nil, files},
		{[]string{"cp", "./"}, nil, files},
		{[]string{"cp", "web:/etc", ""}, []string{"idle:", "web:"}, files | cobra.ShellCompDirectiveNoSpace},
		{[]string{"cp", "web:"}, nil, noFile},
		{[]string{"cp", "a", "b", ""}, nil, noFile},
	} {
		got, dir, stderr := complete(t, root, tc.args...)
		if !slices.Equal(got, tc.want) || dir != tc.dir || stderr != "" {
			t.Errorf("__complete %q = %q, %d, stderr %q; want %q, %d", tc.args, got, dir, stderr, tc.want, tc.dir)
		}
	}
	if after := treeOf(t, root); !slices.Equal(before, after) {
		t.Errorf("completion changed the store:\nbefore %q\nafter  %q", before, after)
	}
}

// TestCompleteNoStore: without a store, completion offers nothing, prints
// nothing and creates nothing.
func TestCompleteNoStore(t *testing.T) {
	root := filepath.Join(t.TempDir(), "none")
	for _, args := range [][]string{{"stop", ""}, {"rmi", ""}, {"inspect", ""}, {"cp", ""}} {
		got, _, stderr := complete(t, root, args...)
		if len(got) != 0 || stderr != "" {
			t.Errorf("__complete %q without a store = %q, stderr %q; want nothing", args, got, stderr)
		}
	}
	if _, err := os.Lstat(root); !os.IsNotExist(err) {
		t.Errorf("completion made the root %s: %v", root, err)
	}
}

// TestCompleteFlagValues: the flag values docker completes (--network,
// --format, --platform, --filter keys and values, signals, --pull, --type).
func TestCompleteFlagValues(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want []string
		dir  cobra.ShellCompDirective
	}{
		{[]string{"run", "--network", ""}, []string{"host", "none"}, noFile},
		{[]string{"create", "--network", ""}, []string{"host", "none"}, noFile},
		{[]string{"build", "--network", ""}, []string{"default", "host", "none"}, noFile},
		{[]string{"run", "--pull", ""}, []string{"always", "missing", "never"}, noFile},
		{[]string{"save", "--format", ""}, []string{"docker", "oci"}, noFile},
		{[]string{"ps", "--format", ""}, nil, noFile},
		{[]string{"inspect", "--type", ""}, []string{"container", "image"}, noFile},
		{[]string{"ps", "--filter", "st"}, []string{"status="}, noFile | cobra.ShellCompDirectiveNoSpace},
		{[]string{"container", "ls", "-f", "status=ex"}, []string{"status=exited"}, noFile},
		{[]string{"images", "--filter", "dangling="}, []string{"dangling=false", "dangling=true"}, noFile},
		{[]string{"image", "prune", "--filter", "l"}, []string{"label!=", "label="}, noFile | cobra.ShellCompDirectiveNoSpace},
		{[]string{"stop", "--signal", "KI"}, []string{"KILL"}, noFile},
		{[]string{"kill", "-s", "ter"}, []string{"term"}, noFile},
		{[]string{"pull", "--platform", "linux/arm64"}, []string{"linux/arm64", "linux/arm64/v8"}, noFile},
	} {
		got, dir, stderr := complete(t, root, tc.args...)
		if !slices.Equal(got, tc.want) || dir != tc.dir || stderr != "" {
			t.Errorf("__complete %q = %q, %d, stderr %q; want %q, %d", tc.args, got, dir, stderr, tc.want, tc.dir)
		}
	}
}
