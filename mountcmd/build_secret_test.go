package mountcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSecrets(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tok.txt")
	os.WriteFile(f, []byte("from-file"), 0o600)
	t.Setenv("LAYERFS_TEST_SECRET", "from-env")
	t.Setenv("MYID", "by-id")
	got, err := readSecrets([]string{
		"id=a,src=" + f, "id=b,env=LAYERFS_TEST_SECRET", "id=MYID", "src=" + f, "id=c,type=env,env=MYID",
		"id=d,type=env,src=LAYERFS_TEST_SECRET", `"id=e","src=` + f + `"`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "from-file", "b": "from-env", "MYID": "by-id", "tok.txt": "from-file", "c": "by-id", "d": "from-env", "e": "from-file"}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("secret %s = %q, want %q", k, got[k], v)
		}
	}
	for _, tc := range []struct{ spec, want string }{
		{"id=x,src=/nonexistent/file", "secret x: open /nonexistent/file"},
		{"id=x,env=LAYERFS_TEST_UNSET_VAR", "environment variable LAYERFS_TEST_UNSET_VAR is not set"},
		{"id=LAYERFS_TEST_UNSET_VAR", "no src or env, no environment variable LAYERFS_TEST_UNSET_VAR, and open LAYERFS_TEST_UNSET_VAR"},
		{"id=x,bogus=1", `unexpected key "bogus"`},
		{"id=x,type=ssh", `unsupported type "ssh"`},
		{"justtext", "is not key=value"},
	} {
		if _, err := readSecrets([]string{tc.spec}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.spec, err, tc.want)
		}
	}
}
