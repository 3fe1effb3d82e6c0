package integration

import (
	"bufio"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestPsDockerStatus: ps shows docker's columns and STATUS text, so that docker
// ps idioms work: grep Exited finds the exited containers, the last field is
// NAMES, {{.Status}} reads "Up 5 seconds", "Exited (3) 2 seconds ago",
// "Created", and ("Up ... (Paused)") a paused one. A container layerfs mount
// serves, running nothing, is "Mounted". .Mount keeps layerfs's mount words,
// and status= filters take both (found by a review: ps showed
// mounted/unmounted, and those idioms silently printed nothing).
func TestPsDockerStatus(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	root := rootFor(t)
	if r := run(t, "run", "--name", "ex3", "busybox", "sh", "-c", "exit 3"); r.Code != 3 {
		t.Fatalf("run exit 3: exit %d: %s", r.Code, r.Stderr)
	}
	mustRun(t, "create", "--name", "cr", "busybox", "true")
	mustRun(t, "run", "-d", "--name", "up1", "busybox", "sleep", "60")
	t.Cleanup(func() { run(t, "rm", "-f", "up1") })
	mnt := filepath.Join(t.TempDir(), "mnt")
	mustRun(t, "mount", "--name", "mnt", "busybox", mnt)
	t.Cleanup(func() { run(t, "umount", "mnt") })

	status := func() map[string][3]string { // name -> Status, State, Mount
		out := map[string][3]string{}
		for _, line := range strings.Split(strings.TrimSpace(mustRun(t, "ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.State}}|{{.Mount}}")), "\n") {
			f := strings.Split(line, "|")
			if len(f) != 4 {
				t.Fatalf("ps line %q", line)
			}
			out[f[0]] = [3]string{f[1], f[2], f[3]}
		}
		return out
	}
	want := map[string][3]*regexp.Regexp{
		"ex3": {regexp.MustCompile(`^Exited \(3\) .+ ago$`), regexp.MustCompile(`^exited$`), regexp.MustCompile(`^unmounted$`)},
		"cr":  {regexp.MustCompile(`^Created$`), regexp.MustCompile(`^created$`), regexp.MustCompile(`^unmounted$`)},
		"up1": {regexp.MustCompile(`^Up [^(]+$`), regexp.MustCompile(`^running$`), regexp.MustCompile(`^mounted$`)},
		"mnt": {regexp.MustCompile(`^Mounted$`), regexp.MustCompile(`^mounted$`), regexp.MustCompile(`^mounted$`)},
	}
	check := func(what string, want map[string][3]*regexp.Regexp) {
		t.Helper()
		got := status()
		if len(got) != len(want) {
			t.Errorf("%s: ps -a = %v, want %d containers", what, got, len(want))
		}
		for name, w := range want {
			for i, re := range w {
				if !re.MatchString(got[name][i]) {
					t.Errorf("%s: %s's .Status|.State|.Mount = %q, want %s in field %d", what, name, got[name], re, i)
				}
			}
		}
	}
	check("running", want)

	// The default table: docker's header (MOUNTPOINT for PORTS), NAMES last, STATUS's words.
	lines := strings.Split(strings.TrimSpace(mustRun(t, "ps", "-a")), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "CONTAINER ID IMAGE COMMAND CREATED STATUS MOUNTPOINT NAMES" {
		t.Errorf("ps header = %q, want docker's", got)
	}
	var names, exited []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		names = append(names, f[len(f)-1])
		if strings.Contains(l, "Exited") {
			exited = append(exited, f[len(f)-1])
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"cr", "ex3", "mnt", "up1"}) || !slices.Equal(exited, []string{"ex3"}) {
		t.Errorf("ps -a's last fields = %v, the Exited lines' = %v; want every name, and ex3:\n%s", names, exited, strings.Join(lines, "\n"))
	}
	if i := slices.IndexFunc(lines, func(l string) bool { return strings.HasSuffix(l, " up1") }); i < 0 || !strings.Contains(lines[i], ` "sleep 60" `) || !strings.Contains(lines[i], " ago ") {
		l := strings.Join(lines, "\n")
		t.Errorf("up1's row in %q: want its quoted COMMAND and CREATED", l)
	}

	for filter, want := range map[string]string{
		"status=exited": "ex3", "status=created": "cr", "status=running": "up1",
		"status=mounted": "mnt,up1", "status=unmounted": "cr,ex3",
	} {
		got := strings.Fields(mustRun(t, "ps", "-a", "--filter", filter, "--format", "{{.Names}}"))
		slices.Sort(got)
		if strings.Join(got, ",") != want {
			t.Errorf("ps --filter %s = %v, want %s", filter, got, want)
		}
	}

	// Paused (as commit --pause holds them): docker's "Up ... (Paused)"; a
	// mount running nothing "Mounted (Paused)".
	for _, name := range []string{"up1", "mnt"} {
		conn, err := net.Dial("unix", filepath.Join(root, "work", name, "control.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close() // the pause ends with the connection
		if _, err := conn.Write([]byte(`{"op":"pause"}` + "\n")); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(line, `"ok":true`) {
			t.Fatalf("pause %s: %q, %v", name, line, err)
		}
	}
	want["up1"] = [3]*regexp.Regexp{regexp.MustCompile(`^Up .+ \(Paused\)$`), regexp.MustCompile(`^paused$`), regexp.MustCompile(`^paused$`)}
	want["mnt"] = [3]*regexp.Regexp{regexp.MustCompile(`^Mounted \(Paused\)$`), regexp.MustCompile(`^paused$`), regexp.MustCompile(`^paused$`)}
	check("paused", want)
}

// TestPsFormatChecked: as docker ps, a --format template runs once before
// anything is listed, so a bad field fails when no container matches too
// (it exited 0), and a template that shows .Size turns -s on (it printed an
// empty size).
func TestPsFormatChecked(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "--name", "sz", "busybox", "sh", "-c", "echo hi > /f")
	if got := mustRun(t, "ps", "-a", "-f", "name=sz", "--format", "[{{.Names}} {{.Size}}]"); !regexp.MustCompile(`^\[sz [0-9.]+k?B\]\n$`).MatchString(got) {
		t.Errorf("ps --format with .Size and no -s = %q, want the size", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "name=sz", "--format", "{{if true}}{{$.Size}}{{end}}"); strings.TrimSpace(got) == "" {
		t.Errorf("ps --format with $.Size inside if = %q, want the size", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "name=sz", "--format", "{{$x := .}}{{$x.Size}}"); strings.TrimSpace(got) == "" {
		t.Errorf("ps --format with $x.Size = %q, want the size", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "name=sz", "--size=false", "--format", "[{{.Size}}]"); got != "[]\n" {
		t.Errorf("ps --size=false --format {{.Size}} = %q, want no size", got)
	}
	if got := mustRun(t, "ps", "-a", "-f", "name=sz", "--format", "{{.Names}}"); got != "sz\n" {
		t.Errorf("ps --format {{.Names}} = %q", got)
	}
	for _, args := range [][]string{
		{"ps", "-a", "-f", "name=nomatch", "--format", "{{.Bogus}}"},
		{"ps", "--format", "table {{.Names}}\t{{.Bogus}}"},
		{"ps", "-a", "-q", "--format", "{{.Bogus}}"},
	} {
		r := run(t, args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "Bogus") {
			t.Errorf("%q: exit %d, stderr %q; want a template error", args, r.Code, r.Stderr)
		}
	}
}
