package mountcmd

import (
	"bytes"
	"encoding/json"
	"runtime"
	"testing"
)

// TestVersionFormat: version takes docker version's --format, so scripts'
// '{{.Client.Version}}' and json work; plain version is unchanged.
func TestVersionFormat(t *testing.T) {
	run := func(args ...string) string {
		t.Helper()
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"version"}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("version %v: %v (%s)", args, err, out.String())
		}
		return out.String()
	}
	if got, want := run(), "layerfs version "+Version+"\n"; got != want {
		t.Errorf("version = %q, want %q", got, want)
	}
	if got, want := run("--format", "{{.Client.Version}} {{.Client.Os}}/{{.Client.Arch}}"), Version+" "+runtime.GOOS+"/"+runtime.GOARCH+"\n"; got != want {
		t.Errorf("version --format = %q, want %q", got, want)
	}
	var v struct {
		Client struct{ Version, GoVersion string }
		Server any
	}
	if err := json.Unmarshal([]byte(run("-f", "json")), &v); err != nil || v.Client.Version != Version || v.Client.GoVersion != runtime.Version() || v.Server != nil {
		t.Errorf("version -f json = %+v, %v", v, err)
	}
}
