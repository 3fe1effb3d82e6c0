package mountcmd

import (
	"strings"
	"testing"
	"time"

	units "github.com/docker/go-units"
)

func TestCreatedSinceAndSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1220000: "1.22MB", 16000000: "16MB", 142560184: "143MB", 7800: "7.8kB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
	if got := createdSince(nowUTC().Add(-3 * 3600e9)); got != "3 hours ago" {
		t.Errorf("createdSince(3h) = %q", got)
	}
}

// TestFormatFuncs: --format templates keep Go's println and use docker's title
// (strings.Title, every word).
func TestFormatFuncs(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{`{{range .}}{{println .}}{{end}}`, "a\nb\n"},
		{`{{println "x" 1}}`, "x 1\n"},
		{`{{title "hello world"}}`, "Hello World"},
		{`{{upper "ab"}}-{{lower "AB"}}`, "AB-ab"},
		// docker's pad leaves an empty string empty
		{`[{{pad "" 1 2}}][{{pad "a" 1 2}}]`, "[][ a  ]"},
	} {
		tmpl, _, err := parseFormat(tc.format)
		if err != nil {
			t.Fatalf("parseFormat(%q) = %v", tc.format, err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, []string{"a", "b"}); err != nil {
			t.Fatalf("Execute(%q) = %v", tc.format, err)
		}
		if b.String() != tc.want {
			t.Errorf("Execute(%q) = %q, want %q", tc.format, b.String(), tc.want)
		}
	}
}

// TestCreatedAtEpoch: an image created at the Unix epoch (SOURCE_DATE_EPOCH=0,
// distroless) is "56 years ago", as docker's CreatedSince, which says N/A only
// for a missing time; it showed N/A.
func TestCreatedAtEpoch(t *testing.T) {
	g, _, _ := storeWithImage(t) // a:1, no created time
	imageCreatedAt(t, g.root, "e:1", time.Unix(0, 0))
	age := units.HumanDuration(time.Since(time.Unix(0, 0))) + " ago"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"images", "--format", "{{.Repository}} {{.CreatedSince}}"}, "e " + age + "\na N/A\n"},
		{[]string{"system", "df", "-v", "--format", "{{range .Images}}{{.Repository}} {{.CreatedSince}};{{end}}"}, "e " + age + ";a N/A;\n"},
	} {
		out, err := layerfs(t, g.root, tc.args...)
		if err != nil || out != tc.want {
			t.Errorf("layerfs %s = %q, %v; want %q", strings.Join(tc.args, " "), out, err, tc.want)
		}
	}
}

// TestTableHeaderAsIs: a "table" header keeps the column names as they are,
// as docker's HeaderFunctions do; lower, json and friends worked on the names
// ("repository", "\"IMAGE ID\"").
func TestTableHeaderAsIs(t *testing.T) {
	root := t.TempDir()
	importImage(t, root, "bb:1")
	id := strings.TrimSpace(lines(t, root, "images", "-q")[0])
	out, err := layerfs(t, root, "images", "--format", `table {{lower .Repository}}|{{json .ID}}|{{upper .Tag}}|{{truncate .Digest 3}}|{{join (split .Repository "b") "x"}}|{{title .Size}}`)
	want := "REPOSITORY|IMAGE ID|TAG|DIGEST|REPOSITORY|SIZE\nbb|\"" + id + "\"|1|<no|xx|6B\n"
	if err != nil || out != want {
		t.Errorf("images --format table ... = %q, %v; want %q", out, err, want)
	}
}
