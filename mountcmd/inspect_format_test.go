package mountcmd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// inspectRun runs inspect's args under root and returns stdout, stderr and
// the exit status.
func inspectRun(t *testing.T, root string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := NewRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceErrors = true
	cmd.SetArgs(append([]string{"--root", root}, args...))
	if err := cmd.Execute(); err != nil {
		var ee exitError
		if !errors.As(err, &ee) {
			t.Fatalf("layerfs %s = %v, want an exit status", strings.Join(args, " "), err)
		}
		code = ee.code
	}
	return out.String(), errOut.String(), code
}

// TestInspectTemplateRawFallback: a template that fails on the Go value runs
// again on its JSON, as docker's TemplateInspector does, so the keys inspect
// prints work (.Descriptor.digest); a template error is that name's alone:
// the names after it are still printed, and the exit status is 1. The first
// error ended the command, with nothing printed for the names after it.
func TestInspectTemplateRawFallback(t *testing.T) {
	root := t.TempDir()
	importImage(t, root, "bb:1")
	id, _, _ := inspectRun(t, root, "inspect", "-f", "{{.Id}}", "bb:1")
	makeContainer(t, root, "c1", 0, nil)
	digest, _, _ := inspectRun(t, root, "inspect", "-f", "{{.Descriptor.Digest}}", "bb:1")
	noKey := func(key string) string {
		return `template parsing error: template: :1:2: executing "" at <.` + key + `>: map has no entry for key "` + key + `"` + "\n"
	}
	for _, tc := range []struct {
		name           string
		args           []string
		stdout, stderr string
		code           int
	}{
		{"json key", []string{"inspect", "-f", "{{.Descriptor.digest}} {{.Descriptor.mediaType}}", "bb:1"},
			strings.TrimSpace(digest) + " application/vnd.oci.image.manifest.v1+json\n", "", 0},
		{"error then found", []string{"inspect", "-f", "{{.Name}}", "bb:1", "c1"}, "/c1\n", noKey("Name"), 1},
		{"found then error", []string{"inspect", "-f", "{{.Name}}", "c1", "bb:1"}, "/c1\n", noKey("Name"), 1},
		{"every name fails", []string{"image", "inspect", "-f", "{{.Nope}}", "bb:1", "bb:1"}, "\n", noKey("Nope") + noKey("Nope"), 1},
		{"missing and error in order", []string{"image", "inspect", "-f", "{{.Nope}}", "nosuch", "bb:1"}, "\n",
			"Error: No such image: nosuch\n" + noKey("Nope"), 1},
		{"typed first", []string{"inspect", "-f", "{{.Id}} {{.Config.Labels.none}}", "bb:1"}, strings.TrimSpace(id) + " <no value>\n", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := inspectRun(t, root, tc.args...)
			if stdout != tc.stdout || stderr != tc.stderr || code != tc.code {
				t.Errorf("layerfs %s = stdout %q, stderr %q, exit %d; want %q, %q, %d",
					strings.Join(tc.args, " "), stdout, stderr, code, tc.stdout, tc.stderr, tc.code)
			}
		})
	}
}

// TestInspectFormatJSON: --format json prints one compact line, as docker's
// JSONInspector; without --format, the array is indented. Both printed the
// indented form.
func TestInspectFormatJSON(t *testing.T) {
	root := t.TempDir()
	importImage(t, root, "bb:1")
	out, _, code := inspectRun(t, root, "image", "inspect", "--format", "json", "bb:1", "bb:1")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, `[{"Id":"sha256:`) || !strings.HasSuffix(out, "}]\n") ||
		strings.Count(out, `{"Id":`) != 2 {
		t.Errorf("image inspect --format json = %q, exit %d; want one line of two objects", out, code)
	}
	out, _, _ = inspectRun(t, root, "image", "inspect", "bb:1")
	if !strings.HasPrefix(out, "[\n    {\n        \"Id\": \"sha256:") {
		t.Errorf("image inspect = %q, want docker's 4-space indent", out)
	}
	out, errOut, code := inspectRun(t, root, "image", "inspect", "--format", "json", "nosuch")
	if out != "[]\n" || errOut != "Error: No such image: nosuch\n" || code != 1 {
		t.Errorf("image inspect --format json nosuch = %q, %q, exit %d", out, errOut, code)
	}
}
