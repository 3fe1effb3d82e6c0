package mountcmd

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestImportURL: import fetches an http(s) URL as docker import does (it took
// the URL for a file name and failed with "no such file or directory"), streams
// it into a one-layer image whose comment names the URL, as docker's; a URL the
// server answers with another status than 2xx fails with one line naming the URL
// and the status, and makes no image.
func TestImportURL(t *testing.T) {
	tarball, err := os.ReadFile(rootfsTar(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/rootfs.tar" {
			http.NotFound(w, r)
			return
		}
		w.Write(tarball)
	}))
	defer srv.Close()
	root := t.TempDir()

	u := srv.URL + "/rootfs.tar"
	if out, err := layerfs(t, root, "import", "-q", u, "web:1"); err != nil {
		t.Fatalf("import %s = %v\n%s", u, err, out)
	}
	out, err := layerfs(t, root, "inspect", "--format", "{{.Comment}}", "web:1")
	if err != nil || strings.TrimSpace(out) != "Imported from "+u {
		t.Errorf("comment of the imported image = %q, %v; want %q", out, err, "Imported from "+u)
	}

	missing := srv.URL + "/missing.tar"
	out, err = layerfs(t, root, "import", "-q", missing, "web:2")
	want := "import " + missing + ": HTTP status 404 Not Found"
	if err == nil || err.Error() != want {
		t.Fatalf("import %s = %v (%s), want %q", missing, err, out, want)
	}
	if out, err := layerfs(t, root, "inspect", "web:2"); err == nil {
		t.Errorf("a failed import made web:2:\n%s", out)
	}
}
