package integration

// history against docker's: each row a local image made carries that image's ID
// (moby's classic ImageHistory walks the parent chain), <missing> only where no
// local image did; the columns and flags as docker's CLI formats them.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHistoryParentIDs: commit on an imported image, commit on that, build on that;
// history shows every ancestor's ID on its own row. Only the top row had an ID.
func TestHistoryParentIDs(t *testing.T) {
	e := newCommitEnv(t)
	mnt := e.mount("h1", "base:1")
	if err := os.WriteFile(filepath.Join(mnt, "one"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("commit", "-m", "first", "h1", "h:1")
	mnt = e.mount("h2", "h:1")
	if err := os.WriteFile(filepath.Join(mnt, "two"), []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("commit", "-m", "second", "h2", "h:2")
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM h:2\nENV A=1\nLABEL b=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("build", "-q", "-t", "h:3", ctx)
	id := func(ref string) string { return strings.TrimSpace(e.ok("inspect", "-f", "{{.Id}}", ref)) }
	short := func(ref string) string { return strings.TrimPrefix(id(ref), "sha256:")[:12] }
	base, h1, h2, h3 := short("base:1"), short("h:1"), short("h:2"), short("h:3")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "{{.ID}} {{.Comment}}", "h:2"}, h2 + " second\n" + h1 + " first\n" + base + " Imported from -\n"},
		// the build made no intermediate images: its steps' rows but the last are <missing>
		{[]string{"-q", "h:3"}, h3 + "\n<missing>\n" + h2 + "\n" + h1 + "\n" + base + "\n"},
		{[]string{"-q", "--no-trunc", "h:1"}, id("h:1") + "\n" + id("base:1") + "\n"},
		// as docker, a --format of one's own wins over -q
		{[]string{"-q", "--format", "{{.Comment}}", "h:1"}, "first\nImported from -\n"},
	} {
		if got := e.ok(append([]string{"history"}, tc.args...)...); got != tc.want {
			t.Errorf("history %s =\n%s\nwant\n%s", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	lines := strings.Split(e.ok("history", "h:3"), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[3], h2+" ") || !strings.Contains(lines[2], "/bin/sh -c #(nop)  ENV A=1") ||
		!strings.Contains(lines[2], " 0B ") {
		t.Errorf("history h:3 =\n%s", strings.Join(lines, "\n"))
	}
}

// TestHistoryColumns: --human=false shows CREATED AT (RFC 3339) and sizes in bytes;
// --format json is docker's one object a line with its keys.
func TestHistoryColumns(t *testing.T) {
	id := importBusybox(t, "busybox")
	lines := strings.Split(strings.TrimSpace(mustRun(t, "history", "-H=false", "busybox")), "\n")
	if f := strings.Fields(lines[0]); len(lines) != 2 || strings.Join(f, " ") != "IMAGE CREATED AT CREATED BY SIZE COMMENT" {
		t.Fatalf("history -H=false =\n%s", strings.Join(lines, "\n"))
	}
	if f := strings.Fields(lines[1]); len(f) < 3 || f[0] != strings.TrimPrefix(id, "sha256:")[:12] {
		t.Errorf("history -H=false row = %q", lines[1])
	} else if _, err := time.Parse(time.RFC3339, f[1]); err != nil {
		t.Errorf("history -H=false CREATED AT %q: %v", f[1], err)
	}
	var row map[string]string
	out := mustRun(t, "history", "--format", "json", "--no-trunc", "busybox")
	if err := json.Unmarshal([]byte(out), &row); err != nil {
		t.Fatalf("history --format json = %q: %v", out, err)
	}
	if len(row) != 6 || row["ID"] != id || row["Comment"] != "Imported from -" || !strings.HasSuffix(row["CreatedSince"], " ago") || row["Size"] == "" {
		t.Errorf("history --format json = %v", row)
	}
	if _, err := time.Parse(time.RFC3339, row["CreatedAt"]); err != nil {
		t.Errorf("history --format json CreatedAt: %v", err)
	}
}
