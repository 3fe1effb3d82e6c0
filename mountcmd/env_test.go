package mountcmd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestReadEnvFiles: docker's --env-file rules (docker/cli pkg/kvfile) and its
// messages: a missing file is the open error once, a line without a name or a
// name with a space or tab is refused, naming the file.
func TestReadEnvFiles(t *testing.T) {
	t.Setenv("LAYERFS_TEST_HOSTVAR", "from-host")
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content string
		want    []string
		err     string // with %f for the file's path
	}{
		{"values", "# c\nA=1\n\n  B=two words \r\nC=\"q\"\nLAYERFS_TEST_HOSTVAR\nLAYERFS_TEST_UNSET\nD=\n", []string{"A=1", "B=two words ", `C="q"`, "LAYERFS_TEST_HOSTVAR=from-host", "D="}, ""},
		{"bom-and-leading-space", "\ufeff\f\v A=1\n", []string{"A=1"}, ""},
		{"no-name", "A=1\n=x\n", nil, "invalid env file (%f): no variable name on line '=x'"},
		{"no-name-indented", "  =x\n", nil, "invalid env file (%f): no variable name on line '=x'"},
		{"space-in-name", "BAD KEY=1\n", nil, "invalid env file (%f): variable 'BAD KEY' contains whitespaces"},
		{"space-before-equals", "A =1\n", nil, "invalid env file (%f): variable 'A ' contains whitespaces"},
		{"tab-in-bare-name", "A\tB\n", nil, "invalid env file (%f): variable 'A\tB' contains whitespaces"},
		{"not-utf8", "A=1\nB=\xff\n", nil, "invalid env file (%f): invalid utf8 bytes at line 2: [66 61 255]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, tc.name)
			if err := os.WriteFile(f, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readEnvFiles([]string{f})
			if tc.err != "" {
				if want := strings.ReplaceAll(tc.err, "%f", f); err == nil || err.Error() != want {
					t.Fatalf("readEnvFiles(%q) = %q, %v; want error %q", tc.content, got, err, want)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("readEnvFiles(%q) = %q, %v; want %q", tc.content, got, err, tc.want)
			}
		})
	}
	missing := filepath.Join(dir, "nosuch")
	if _, err := readEnvFiles([]string{missing}); err == nil || err.Error() != "open "+missing+": no such file or directory" {
		t.Errorf("readEnvFiles(%s) = %v; want docker's %q", missing, err, "open "+missing+": no such file or directory")
	}
}

// TestEnvFlagRefusesEmptyName: -e "=x" is refused while the flags are parsed,
// in docker's words (opts.ValidateEnv), by run, create and exec; a bare name
// and an empty value are fine.
func TestEnvFlagRefusesEmptyName(t *testing.T) {
	const want = `invalid argument "=x" for "-e, --env" flag: invalid environment variable: =x`
	g := &globalOptions{root: t.TempDir()}
	for _, tc := range []struct {
		name string
		cmd  func(*globalOptions) *cobra.Command
	}{
		{"run", newRunCommand},
		{"create", newCreateCommand},
		{"exec", newExecCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := tc.cmd(g)
			if err := cmd.ParseFlags([]string{"-e", "A", "--env", "B=", "-e=C=1", "-e", `Q=a,"b"`}); err != nil {
				t.Fatalf("%s -e A --env B= -e=C=1: %v", tc.name, err)
			}
			if got, _ := cmd.Flags().GetStringArray("env"); !slices.Equal(got, []string{"A", "B=", "C=1", `Q=a,"b"`}) {
				t.Errorf("%s -e values = %q", tc.name, got)
			}
			cmd = tc.cmd(g)
			if err := cmd.ParseFlags([]string{"-e", "=x"}); err == nil || err.Error() != want {
				t.Errorf("%s -e =x: %v, want %q", tc.name, err, want)
			}
		})
	}
}

// build --build-arg takes docker's check too (opts.ValidateEnv): "=x" was
// accepted (found by a review).
func TestBuildArgRefusesEmptyName(t *testing.T) {
	cmd := newBuildCommand(&globalOptions{root: t.TempDir()})
	if err := cmd.ParseFlags([]string{"--build-arg", "A=1", "--build-arg", "B"}); err != nil {
		t.Fatalf("--build-arg A=1 --build-arg B: %v", err)
	}
	if got, _ := cmd.Flags().GetStringArray("build-arg"); !slices.Equal(got, []string{"A=1", "B"}) {
		t.Errorf("--build-arg values = %q", got)
	}
	const want = `invalid argument "=x" for "--build-arg" flag: invalid environment variable: =x`
	cmd = newBuildCommand(&globalOptions{root: t.TempDir()})
	if err := cmd.ParseFlags([]string{"--build-arg", "=x"}); err == nil || err.Error() != want {
		t.Errorf("--build-arg =x: %v, want %q", err, want)
	}
}
