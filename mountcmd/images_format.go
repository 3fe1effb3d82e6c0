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
	// docker's padWithSpace: an empty string stays empty
	"pad": func(s string, l, r int) string {
		if s == "" {
			return ""
		}
		return strings.Repeat(" ", l) + s + strings.Repeat(" ", r)
	},
}

// headerTemplateFuncs replace imagesTemplateFuncs in a "table" header, as
// docker/cli's HeaderFunctions: the header names stay as they are (no "IMAGE
// ID" in quotes, no lowercased REPOSITORY); pad is kept, for the alignment.
var headerTemplateFuncs = template.FuncMap{
	"json":     func(v string) string { return v },
	"split":    func(v, _ string) string { return v },
	"join":     func(v, _ string) string { return v },
	"title":    func(v string) string { return v },
	"lower":    func(v string) string { return v },
	"upper":    func(v string) string { return v },
	"truncate": func(v string, _ int) string { return v },
}

// parseFormat compiles a --format template; "table X" prints a header (the template
// run on header, see parseHeader) and aligns columns.
func parseFormat(format string) (tmpl *template.Template, table bool, err error) {
	f, table := formatBody(format)
	// anonymous, as docker's templates.Parse: errors read "template: :1:2: ..."
	tmpl, err = template.New("").Funcs(imagesTemplateFuncs).Parse(f)
	return tmpl, table, err
}

// parseHeader compiles a "table" --format for its header line, with
// headerTemplateFuncs.
func parseHeader(format string) (*template.Template, error) {
	f, _ := formatBody(format)
	return template.New("").Funcs(imagesTemplateFuncs).Funcs(headerTemplateFuncs).Parse(f)
}

// formatBody is format less its "table" prefix, with \t and \n escapes made
// tabs and newlines.
func formatBody(format string) (body string, table bool) {
	f := format
	if rest, ok := strings.CutPrefix(f, "table"); ok {
		table = true
		f = strings.TrimSpace(rest)
	}
	return strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(f), table
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
