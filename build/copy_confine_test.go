package build

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dataTar writes a tar of hdrs to p, each regular file's content its
// Linkname field's (cleared), and returns it open at its start.
func dataTar(t *testing.T, p string, hdrs ...*tar.Header) *os.File {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		data := ""
		if h.Typeflag == tar.TypeReg {
			data, h.Linkname = h.Linkname, ""
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestExtractConfined: ADD of an archive writes only below its destination
// (finding 2 of rev17-build). An entry reached through a symlink the archive
// made (or one the image has) that leads out of it, a name with "..", and a
// hard link to a path outside (by name or through such a symlink) fail the
// unpack, naming the entry, and nothing outside changes; symlinks that stay
// inside are followed, and a symlink entry itself may point anywhere.
func TestExtractConfined(t *testing.T) {
	sym := func(name, target string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}
	}
	reg := func(name, data string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Linkname: data, Mode: 0o644}
	}
	link := func(name, target string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}
	}
	for _, tc := range []struct {
		name  string
		hdrs  []*tar.Header
		entry string // the entry refused; "" for none
		want  map[string]string
	}{
		{name: "absolute symlink out", hdrs: []*tar.Header{sym("etc", "/etc"), reg("etc/passwd", "pwned")}, entry: "etc/passwd"},
		{name: "relative symlink out", hdrs: []*tar.Header{sym("up", "../../bin"), reg("up/evil", "pwned")}, entry: "up/evil"},
		{name: "chained symlinks out", hdrs: []*tar.Header{sym("a", "b"), sym("b", ".."), reg("a/escaped", "x")}, entry: "a/escaped"},
		{name: "dir through symlink out", hdrs: []*tar.Header{sym("etc", "/etc"), {Typeflag: tar.TypeDir, Name: "etc/new/", Mode: 0o755}}, entry: "etc/new/"},
		{name: "dotdot name", hdrs: []*tar.Header{reg("../../etc/passwd", "pwned")}, entry: "../../etc/passwd"},
		{name: "hard link by name", hdrs: []*tar.Header{link("pw", "../../etc/passwd")}, entry: "pw"},
		{name: "hard link through symlink", hdrs: []*tar.Header{sym("etc", "/etc"), link("pw", "etc/passwd")}, entry: "pw"},
		{name: "image symlink out", hdrs: []*tar.Header{reg("imglink/f", "x")}, entry: "imglink/f"},
		{name: "symlinks inside", hdrs: []*tar.Header{
			{Typeflag: tar.TypeDir, Name: "sub/", Mode: 0o755},
			sym("rel", "sub"), sym("abs", "/opt/vendor/sub"), sym("out", "/etc"),
			reg("rel/a", "a"), reg("abs/b", "b"), link("c", "rel/a"),
		}, want: map[string]string{"opt/vendor/sub/a": "a", "opt/vendor/sub/b": "b", "opt/vendor/c": "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			for _, d := range []string{"etc", "bin", "opt/vendor"} {
				if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0\n"), 0o644)
			os.Symlink("/bin", filepath.Join(rootfs, "opt/vendor/imglink"))
			f := dataTar(t, filepath.Join(t.TempDir(), "evil.tar"), tc.hdrs...)
			cp, err := newCopier(rootfs, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cp.close()
			err = cp.extractFrom(f, "/opt/vendor/")
			if err == nil {
				err = cp.finish()
			}
			if tc.entry == "" {
				if err != nil {
					t.Fatalf("extract = %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), "entry "+tc.entry+" would land outside /opt/vendor") {
				t.Errorf("extract = %v, want an error naming %s as outside /opt/vendor", err, tc.entry)
			}
			if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd")); string(b) != "root:x:0:0\n" {
				t.Errorf("/etc/passwd = %q: written through the archive", b)
			}
			for _, p := range []string{"bin/evil", "bin/f", "etc/new", "opt/escaped", "escaped", "pw"} {
				if _, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
					t.Errorf("/%s was made outside the destination", p)
				}
			}
			for p, want := range tc.want {
				if b, err := os.ReadFile(filepath.Join(rootfs, p)); err != nil || string(b) != want {
					t.Errorf("/%s = %q, %v, want %q", p, b, err, want)
				}
			}
			if tc.name == "symlinks inside" {
				if l, _ := os.Readlink(filepath.Join(rootfs, "opt/vendor/out")); l != "/etc" {
					t.Errorf("symlink entry out -> %q, want /etc", l)
				}
			}
		})
	}
}
