package mountcmd

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rootfsTar writes a tar of one small file for import and returns its path.
func rootfsTar(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tarFile(t, tw, "etc/hello", "hello\n")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// importImage imports rootfsTar under root as ref with import's flags (-c, -m).
func importImage(t *testing.T, root, ref string, flags ...string) {
	t.Helper()
	args := append(append([]string{"import", "-q"}, flags...), rootfsTar(t), ref)
	if out, err := layerfs(t, root, args...); err != nil {
		t.Fatalf("layerfs %s = %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestJSONOutputUnescaped: every JSON layerfs prints keeps '<', '>' and '&' as
// they are, as docker's does (its template json function and the daemon's
// responses turn SetEscapeHTML off). They came out as \u003c, \u003e and
// \u0026, which grep and sed on "<none>" or a URL's '&' do not match.
func TestJSONOutputUnescaped(t *testing.T) {
	root := t.TempDir()
	importImage(t, root, "bb:1", "-c", "ENV URL=http://h/?a=1&b=2", "-m", "<made> & kept")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "-f", "{{json .Config.Env}}", "bb:1"}, `["URL=http://h/?a=1&b=2"]`},
		{[]string{"inspect", "bb:1"}, `"URL=http://h/?a=1&b=2"`},
		{[]string{"image", "inspect", "--format", "json", "bb:1"}, `"URL=http://h/?a=1&b=2"`},
		{[]string{"images", "--format", "json"}, `"Digest":"<none>"`},
		{[]string{"images", "--format", "{{json .}}"}, `"Digest":"<none>"`},
		{[]string{"history", "--format", "json", "bb:1"}, `"Comment":"<made> & kept"`},
		{[]string{"history", "--format", "{{json .Comment}}", "bb:1"}, `"<made> & kept"`},
		{[]string{"system", "df", "-v", "--format", "json"}, `"Digest":"<none>"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := layerfs(t, root, tc.args...)
			if err != nil || !strings.Contains(out, tc.want) || strings.Contains(out, `\u00`) {
				t.Errorf("layerfs %s = %q, %v; want %s, nothing escaped", strings.Join(tc.args, " "), out, err, tc.want)
			}
		})
	}
	// ps --format json: psRow's own MarshalJSON must not escape either.
	var b bytes.Buffer
	if err := writeJSONLines(&b, []psRow{{Command: `"a && b"`}}); err != nil || !strings.Contains(b.String(), `"Command":"\"a && b\""`) {
		t.Errorf("ps --format json line = %q, %v; want the command's && as it is", b.String(), err)
	}
}
