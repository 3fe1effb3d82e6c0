package mountcmd

import (
	"strings"
	"text/template"
	"time"

	units "github.com/docker/go-units"
)

// imagesTemplateFuncs are the template functions docker's --format offers
// (docker/cli's templates package), Go's builtins (println, printf, ...) kept.
var imagesTemplateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := marshalJSON(v, "")
		return string(b), err
	},
	"join":  strings.Join,
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	// docker/cli's templates use strings.Title: every word capitalised.
	"title": strings.Title, //nolint:staticcheck // deprecated for Unicode; docker's choice
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
	"pad": func(s string, l, r int) string {
		return strings.Repeat(" ", l) + s + strings.Repeat(" ", r)
	},
}

// parseFormat compiles a --format template; "table X" prints a header (the template
// run on header) and aligns columns.
func parseFormat(format string) (tmpl *template.Template, table bool, err error) {
	f := format
	if rest, ok := strings.CutPrefix(f, "table"); ok {
		table = true
		f = strings.TrimSpace(rest)
	}
	f = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(f)
	// anonymous, as docker's templates.Parse: errors read "template: :1:2: ..."
	tmpl, err = template.New("").Funcs(imagesTemplateFuncs).Parse(f)
	return tmpl, table, err
}

// createdSince is docker's CREATED column ("3 hours ago", "N/A" when unknown).
// Only a missing time is unknown: an image made at the Unix epoch
// (SOURCE_DATE_EPOCH=0, distroless) is "56 years ago" in docker too.
func createdSince(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return units.HumanDuration(time.Since(t)) + " ago"
}

// humanSize is docker's SIZE column (3 significant digits, decimal units).
func humanSize(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }

// humanSize4 is docker's units.HumanSize (4 significant digits), which the
// system df summary, the SHARED SIZE and UNIQUE SIZE columns, volumes' sizes
// and the deprecated VirtualSize field show.
func humanSize4(n int64) string { return units.HumanSize(float64(n)) }
