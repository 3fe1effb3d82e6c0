package cow

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExclude: DiffOptions.Exclude and ExportExcludeUpper leave the named upper
// entries out, with what is below them, of Diff, Changes and Export alike; their
// parent dirs stay (a running container's mountpoint stubs beside a real change).
func TestExclude(t *testing.T) {
	base := tempDir(t)
	lower, upper := filepath.Join(base, "lower"), filepath.Join(base, "upper")
	writeFile(t, filepath.Join(lower, "etc/passwd"), "root", 0o644)
	writeFile(t, filepath.Join(lower, "bin/sh"), "sh", 0o755)
	writeFile(t, filepath.Join(upper, "etc/hosts"), "", 0o644)
	writeFile(t, filepath.Join(upper, "etc/motd"), "hi", 0o644)
	writeFile(t, filepath.Join(upper, "proc/stub/deeper"), "", 0o644)
	writeFile(t, filepath.Join(upper, "bin/sh"), "sh2", 0o755)
	exclude := func(rel string) bool { return rel == "etc/hosts" || rel == "proc" || rel == "bin" }
	opts := DiffOptions{Format: FormatOCI, Lowers: []string{lower}, Exclude: exclude}

	b := readAll(t, Diff(context.Background(), upper, opts))
	if got, want := strings.Join(tarNames(t, b), " "), "etc/ etc/motd"; got != want {
		t.Errorf("Diff names = %q, want %q", got, want)
	}
	ch, err := Changes(upper, opts)
	must(t, err)
	var lines []string
	for _, c := range ch {
		lines = append(lines, c.String())
	}
	if got, want := strings.Join(lines, ","), "C /etc,A /etc/motd"; got != want {
		t.Errorf("Changes = %s, want %s", got, want)
	}
	// Excluded from the upper, bin/sh is the lower's again.
	b = readAll(t, Export(context.Background(), []string{lower}, upper, FormatOCI, ExportExcludeUpper(exclude)))
	if got, want := strings.Join(tarNames(t, b), " "), "bin/ bin/sh etc/ etc/motd etc/passwd"; got != want {
		t.Errorf("Export names = %q, want %q", got, want)
	}
	root := applyBytes(t, b)
	if got, err := os.ReadFile(filepath.Join(root, "bin/sh")); err != nil || string(got) != "sh" {
		t.Errorf("exported bin/sh = %q, %v; want the lower's %q", got, err, "sh")
	}
	// Without an exclusion, everything is there.
	b = readAll(t, Diff(context.Background(), upper, DiffOptions{Format: FormatOCI}))
	if got, want := strings.Join(tarNames(t, b), " "), "bin/ bin/sh etc/ etc/hosts etc/motd proc/ proc/stub/ proc/stub/deeper"; got != want {
		t.Errorf("Diff names without Exclude = %q, want %q", got, want)
	}
}
