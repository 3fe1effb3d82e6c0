package mountcmd

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPsDockerFields: a docker user's ps --format templates (.Names, .State,
// .Mounts, .RunningFor, .CreatedAt) work, with docker's table headers.
func TestPsDockerFields(t *testing.T) {
	rows := []psRow{{Name: "w1", Image: "busybox:latest", Mountpoint: "/mnt/w1", Mount: "mounted", Status: "Up 3 hours", dockerState: "running", Created: time.Now().Add(-3 * time.Hour)}}
	var out bytes.Buffer
	if err := writePs(&out, &psOptions{format: "{{.Names}} {{.State}} {{.Mounts}} {{.RunningFor}}"}, rows); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out.String()), "w1 running /mnt/w1 3 hours ago"; got != want {
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

// TestPsDockerScriptFields: the rest of docker ps's fields a script reads
// (.Ports, .Labels, .Label, .Networks) work, and --format json has docker's
// keys (they failed with a template error naming an internal type, and json
// had no Names or State).
func TestPsDockerScriptFields(t *testing.T) {
	rows := []psRow{{Name: "w1", Mount: "mounted", Status: "Up 2 seconds", dockerState: "running", Created: time.Now(), labels: map[string]string{"b": "2", "a": "1"}}}
	var out bytes.Buffer
	if err := writePs(&out, &psOptions{format: `[{{.Ports}}] {{.Labels}} {{.Label "b"}} {{.Networks}}`}, rows); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out.String()), "[] a=1,b=2 2 host"; got != want {
		t.Errorf("ps --format = %q, want %q", got, want)
	}
	out.Reset()
	if err := writePs(&out, &psOptions{format: "json"}, rows); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"Name":"w1"`, `"Names":"w1"`, `"State":"running"`, `"Labels":"a=1,b=2"`, `"RunningFor":`, `"CreatedAt":`, `"Status":"Up 2 seconds"`, `"Mount":"mounted"`} {
		if !strings.Contains(out.String(), key) {
			t.Errorf("ps --format json lacks %s: %s", key, out.String())
		}
	}
}

// TestPsFilters: docker ps's filters, alone and together; -n's order.
func TestPsFilters(t *testing.T) {
	now := time.Now()
	rows := []psRow{
		{Name: "web1", ID: "aaaa1111", ImageID: "sha256:i1", Mount: statusMounted, dockerState: "running", Created: now.Add(-3 * time.Hour), labels: map[string]string{"tier": "web", "x": ""}},
		{Name: "web2", ID: "aaaa2222", ImageID: "sha256:i2", Mount: statusUnmounted, dockerState: "exited", Created: now.Add(-2 * time.Hour)},
		{Name: "db", ID: "bbbb3333", ImageID: "sha256:i1", Mount: statusUnmounted, dockerState: "created", Created: now.Add(-1 * time.Hour)},
	}
	names := func(rs []psRow) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{nil, "web1,web2,db"},
		{[]string{"name=web"}, "web1,web2"},
		{[]string{"name=^db$", "name=1"}, "web1,db"},
		{[]string{"id=aaaa"}, "web1,web2"},
		{[]string{"status=running"}, "web1"},
		{[]string{"status=unmounted"}, "web2,db"},
		{[]string{"status=exited", "status=created"}, "web2,db"},
		{[]string{"status=unmounted", "name=web"}, "web2"},
		{[]string{"before=db"}, "web1,web2"},
		{[]string{"since=web1", "before=db"}, "web2"},
		{[]string{"since=aaaa2"}, "db"},
		{[]string{"label=tier"}, "web1"},
		{[]string{"name=^/db$"}, "db"},
		{[]string{"label=tier=web", "label=x"}, "web1"},
		{[]string{"label=tier=db"}, ""},
		{[]string{"status=restarting"}, ""}, // docker's words for states no container here is in
		{[]string{"status=removing", "status=created"}, "db"},
	} {
		f, err := parsePsFilters(tc.filters)
		if err != nil {
			t.Fatalf("%v: %v", tc.filters, err)
		}
		got, err := f.apply(append([]psRow(nil), rows...), nil)
		if err != nil {
			t.Fatalf("%v: %v", tc.filters, err)
		}
		if names(got) != tc.want {
			t.Errorf("ps --filter %v = %s, want %s", tc.filters, names(got), tc.want)
		}
	}
	for _, bad := range []string{"status=up", "color=red", "name", "name=("} {
		if _, err := parsePsFilters([]string{bad}); err == nil {
			t.Errorf("filter %q accepted", bad)
		}
	}
	f, _ := parsePsFilters([]string{"before=nope"})
	if _, err := f.apply(rows, nil); err == nil {
		t.Errorf("before= a missing container accepted")
	}
	f, _ = parsePsFilters([]string{"since=aaaa"})
	if _, err := f.apply(rows, nil); !errors.Is(err, errAmbiguousID) {
		t.Errorf("since= an ID prefix two containers share: %v, want %v", err, errAmbiguousID)
	}
	if got := names(lastCreated(append([]psRow(nil), rows...), 2)); got != "db,web2" {
		t.Errorf("ps -n 2 = %s, want db,web2", got)
	}
}

// TestFilterPsRows: top keeps ps's header and the rows of the container's
// processes, wherever ps puts its PID column.
func TestFilterPsRows(t *testing.T) {
	out := []byte("UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sleep\nroot 43 42 sh\n")
	got, err := filterPsRows(out, map[int]bool{42: true, 43: true})
	if err != nil || string(got) != "UID PID PPID CMD\nroot 42 1 sleep\nroot 43 42 sh\n" {
		t.Errorf("filterPsRows = %q, %v", got, err)
	}
	if _, err := filterPsRows([]byte("USER COMMAND\nroot x\n"), nil); err == nil {
		t.Errorf("ps output without a PID column accepted")
	}
}

// TestPsIDs: ps shows docker's CONTAINER ID column first and -q prints the IDs
// (as the rows carry them: 12 digits unless --no-trunc); a broken container,
// whose ID cannot be read, is printed by name so that rm still finds it.
func TestPsIDs(t *testing.T) {
	full := strings.Repeat("0123456789abcdef", 4)
	rows := []psRow{
		{Name: "w1", ID: full, Image: "busybox:latest", Mountpoint: "/mnt/w1", Mount: statusMounted, Status: "Mounted"},
		{Name: "bad", Mount: statusBroken, Status: "Broken"},
	}
	short := append([]psRow(nil), rows...)
	short[0].truncate()
	for _, tc := range []struct {
		name string
		o    psOptions
		rows []psRow
		want string
	}{
		{"quiet", psOptions{quiet: true}, short, "0123456789ab\nbad\n"},
		{"quiet no-trunc", psOptions{quiet: true, noTrunc: true}, rows, full + "\nbad\n"},
		{"format ID", psOptions{format: "{{.ID}} {{.Name}}"}, short, "0123456789ab w1\n bad\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writePs(&out, &tc.o, tc.rows); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("writePs(%+v) = %q, want %q", tc.o, out.String(), tc.want)
			}
		})
	}
	var out bytes.Buffer
	if err := writePs(&out, &psOptions{}, short); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if fields := strings.Fields(lines[0]); len(fields) < 3 || fields[0] != "CONTAINER" || fields[1] != "ID" || fields[2] != "IMAGE" {
		t.Errorf("ps header = %q, want CONTAINER ID, IMAGE, ...", lines[0])
	}
	if !strings.HasPrefix(lines[1], "0123456789ab   busybox:latest ") {
		t.Errorf("ps row = %q, want the short ID, then the image", lines[1])
	}
}

// TestPsTable: ps's default table is docker's, CONTAINER ID IMAGE COMMAND
// CREATED STATUS MOUNTPOINT NAMES, with NAMES last (awk '{print $NF}' takes them),
// COMMAND quoted as strconv.Quote does and cut to 20 characters unless
// --no-trunc, and -s's SIZE after NAMES, as docker's.
func TestPsTable(t *testing.T) {
	full := strings.Repeat("0123456789abcdef", 4)
	cmd := strconv.Quote(`sh -c "echo hello; sleep 1000"`)
	row := psRow{Name: "web1", ID: full, Image: "busybox:latest", Command: cmd, Mount: statusMounted, Mountpoint: "/mnt/web1",
		Status: "Up 5 minutes", dockerState: "running", Created: time.Now().Add(-10 * time.Minute), Size: "12kB"}
	short := row
	short.truncate()
	if want := `"sh -c \"echo hello; …"`; short.Command != want {
		t.Errorf("truncated command = %s, want %s", short.Command, want)
	}
	for _, tc := range []struct {
		name   string
		o      psOptions
		row    psRow
		header string
		want   []string // the row's fields
	}{
		{"default", psOptions{}, short, "CONTAINER ID IMAGE COMMAND CREATED STATUS MOUNTPOINT NAMES",
			[]string{"0123456789ab", "busybox:latest", `"sh`, `-c`, `\"echo`, `hello;`, `…"`, "10", "minutes", "ago", "Up", "5", "minutes", "/mnt/web1", "web1"}},
		{"no-trunc", psOptions{noTrunc: true}, row, "CONTAINER ID IMAGE COMMAND CREATED STATUS MOUNTPOINT NAMES",
			[]string{full, "busybox:latest", `"sh`, `-c`, `\"echo`, `hello;`, `sleep`, `1000\""`, "10", "minutes", "ago", "Up", "5", "minutes", "/mnt/web1", "web1"}},
		{"size", psOptions{size: true}, short, "CONTAINER ID IMAGE COMMAND CREATED STATUS MOUNTPOINT NAMES SIZE",
			[]string{"0123456789ab", "busybox:latest", `"sh`, `-c`, `\"echo`, `hello;`, `…"`, "10", "minutes", "ago", "Up", "5", "minutes", "/mnt/web1", "web1", "12kB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writePs(&out, &tc.o, []psRow{tc.row}); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("ps:\n%s", out.String())
			}
			if got := strings.Join(strings.Fields(lines[0]), " "); got != tc.header {
				t.Errorf("ps header = %q, want %q", got, tc.header)
			}
			if got := strings.Fields(lines[1]); !slices.Equal(got, tc.want) {
				t.Errorf("ps row = %q, want the fields %q", lines[1], tc.want)
			}
			// The columns line up under the header (in runes, as tabwriter
			// counts them): STATUS's text starts under STATUS.
			if i := strings.Index(lines[0], "STATUS"); !strings.HasPrefix(string([]rune(lines[1])[i:]), "Up 5 minutes ") {
				t.Errorf("STATUS column at %d of %q", i, lines[1])
			}
		})
	}
}

// TestPsStatusText: .Status is docker's STATUS text for each state, and
// layerfs's own state (a mount no command runs in) has a word docker's never
// shows; a filter still takes both vocabularies, .Mount keeps the mount words.
func TestPsStatusText(t *testing.T) {
	now := time.Now()
	started, finished := now.Add(-5*time.Minute), now.Add(-2*time.Minute)
	for _, tc := range []struct {
		state    string
		running  bool
		exitCode int
		finished time.Time
		want     string
	}{
		{"running", true, 0, time.Time{}, "Up 5 minutes"},
		{statusPaused, true, 0, time.Time{}, "Up 5 minutes (Paused)"},
		{statusPaused, false, 0, time.Time{}, "Mounted (Paused)"},
		{statusMounted, false, 0, time.Time{}, "Mounted"},
		{"exited", false, 137, finished, "Exited (137) 2 minutes ago"},
		{"exited", false, 0, finished, "Exited (0) 2 minutes ago"},
		{"exited", false, unknownExitCode, time.Time{}, "Exited (-1)"},
		{"created", false, 0, time.Time{}, "Created"},
		{statusDead, false, 0, time.Time{}, "Dead"},
		{statusBroken, false, 0, time.Time{}, "Broken"},
	} {
		s := time.Time{}
		if tc.running {
			s = started
		}
		if got := statusText(tc.state, tc.running, s, tc.finished, tc.exitCode, now); got != tc.want {
			t.Errorf("statusText(%s, running %v, exit %d) = %q, want %q", tc.state, tc.running, tc.exitCode, got, tc.want)
		}
	}
	rows := []psRow{
		{Name: "m", Mount: statusMounted, dockerState: statusMounted, Status: "Mounted"},
		{Name: "e", Mount: statusUnmounted, dockerState: "exited", Status: "Exited (0) 2 minutes ago"},
	}
	for filter, want := range map[string]string{"status=mounted": "m", "status=unmounted": "e", "status=exited": "e"} {
		f, err := parsePsFilters([]string{filter})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := f.apply(rows, nil)
		if len(got) != 1 || got[0].Name != want {
			t.Errorf("ps --filter %s = %v, want %s", filter, got, want)
		}
	}
	var out bytes.Buffer
	if err := writePs(&out, &psOptions{format: "{{.Names}} {{.Mount}}|{{.Status}}"}, rows); err != nil {
		t.Fatal(err)
	}
	if want := "m mounted|Mounted\ne unmounted|Exited (0) 2 minutes ago\n"; out.String() != want {
		t.Errorf("ps --format .Mount .Status = %q, want %q", out.String(), want)
	}
}

// TestMountList: mount with no arguments lists the mounted containers (paused
// too, not the dead or unmounted) as podman mount does: "ID  MOUNTPOINT",
// the whole ID with --no-trunc, podman's JSON array with --format json.
func TestMountList(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	rows := []psRow{
		{Name: "m1", ID: a, Mount: statusMounted, Mountpoint: "/mnt/m1"},
		{Name: "gone", ID: strings.Repeat("c", 64), Mount: statusUnmounted},
		{Name: "dead", ID: strings.Repeat("d", 64), Mount: statusDead, Mountpoint: "/mnt/dead"},
		{Name: "p1", ID: b, Mount: statusPaused, Mountpoint: "/mnt/p1"},
	}
	for _, tc := range []struct {
		o    mountOptions
		want string
	}{
		{mountOptions{}, a[:12] + "  /mnt/m1\n" + b[:12] + "  /mnt/p1\n"},
		{mountOptions{noTrunc: true}, a + "  /mnt/m1\n" + b + "  /mnt/p1\n"},
		{mountOptions{format: "json"}, "[\n {\n  \"id\": \"" + a + "\",\n  \"Names\": [\n   \"m1\"\n  ],\n  \"mountpoint\": \"/mnt/m1\"\n },\n" +
			" {\n  \"id\": \"" + b + "\",\n  \"Names\": [\n   \"p1\"\n  ],\n  \"mountpoint\": \"/mnt/p1\"\n }\n]\n"},
	} {
		var out bytes.Buffer
		if err := writeMounts(&out, &tc.o, append([]psRow(nil), rows...)); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("mount %+v = %q, want %q", tc.o, out.String(), tc.want)
		}
	}
	var out bytes.Buffer
	if err := writeMounts(&out, &mountOptions{format: "json"}, nil); err != nil || out.String() != "[]\n" {
		t.Errorf("mount --format json with none mounted = %q, %v; want []", out.String(), err)
	}
}
