package build

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
)

// buildArgs builds dockerfile in ctxDir with --build-arg values, tagged out:latest.
func buildArgs(t *testing.T, root string, o Options, ctxDir, dockerfile string) (*Result, string, error) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o.LayersDir, o.StateDir, o.Context, o.Tags, o.Out = filepath.Join(root, "layers"), root, ctxDir, []string{"out:latest"}, &out
	res, err := Build(context.Background(), o)
	return res, out.String(), err
}

// TestBuildEmptyEnvOverridesArg: ENV X="" is set, and wins over ARG X in RUN's
// environment as any ENV does (docker, buildah); it was taken for unset.
func TestBuildEmptyEnvOverridesArg(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	root, s := testStore(t, nil)
	df := "FROM base\nARG X=argx\nENV X=\"\"\nRUN echo \"X=[$X]\"; env | grep -c '^X=' | sed 's/^/count=/'\n"
	_, out, err := buildArgs(t, root, Options{Store: s}, t.TempDir(), df)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "X=[]\ncount=1\n") {
		t.Errorf("RUN saw the ARG's value, want X empty and set once:\n%s", out)
	}
}
