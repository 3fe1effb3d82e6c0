package build

import (
	"archive/tar"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// capNetRaw is a security.capability value (VFS_CAP_REVISION_2, effective)
// granting cap_net_raw, as setcap cap_net_raw+ep writes it.
func capNetRaw() []byte {
	v := make([]byte, 20)
	binary.LittleEndian.PutUint32(v[0:], 0x02000001)
	binary.LittleEndian.PutUint32(v[4:], 1<<unix.CAP_NET_RAW)
	return v
}

func lgetxattr(t *testing.T, p, name string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(buf[:n])
}

// TestCopyKeepsXattrs: COPY of a dir, of a file, and ADD of a tar keep the
// entries' xattrs, file capabilities included, as BuildKit does (finding 1
// of rev17-build); layerfs's and overlay's private ones are not copied, and
// the new top-level dest dir takes none of the source dir's.
func TestCopyKeepsXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: security.capability and trusted.* xattrs")
	}
	ctx := t.TempDir()
	os.MkdirAll(filepath.Join(ctx, "d/sub"), 0o755)
	os.WriteFile(filepath.Join(ctx, "d/bin"), []byte("x"), 0o755)
	os.WriteFile(filepath.Join(ctx, "file"), []byte("y"), 0o644)
	set := func(p, k string, v []byte) {
		if err := unix.Lsetxattr(filepath.Join(ctx, p), k, v, 0); err != nil {
			t.Skipf("setxattr %s on %s: %v", k, p, err)
		}
	}
	for _, p := range []string{"d/bin", "file"} {
		set(p, "security.capability", capNetRaw())
		set(p, "user.note", []byte("hi"))
		set(p, "user.layerfs.origin", []byte("private"))
		set(p, "trusted.overlay.origin", []byte("private"))
		set(p, "trusted.host", []byte("the host's")) // nor what the host's admin set
	}
	set("d", "user.top", []byte("top"))
	set("d/sub", "user.sub", []byte("sub"))
	bc, err := openContext(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := bc.resolve("d")
	if err != nil {
		t.Fatal(err)
	}
	fsrcs, err := bc.resolve("file")
	if err != nil {
		t.Fatal(err)
	}
	tarf := dataTar(t, filepath.Join(t.TempDir(), "x.tar"),
		&tar.Header{Typeflag: tar.TypeDir, Name: "t/", Mode: 0o755, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.user.dir": "d"}},
		&tar.Header{Typeflag: tar.TypeReg, Name: "t/f", Mode: 0o644, Linkname: "z", Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.user.foo": "bar", "SCHILY.xattr.security.capability": string(capNetRaw()), "SCHILY.xattr.user.layerfs.origin": "no",
				"SCHILY.xattr.trusted.x": "no", "SCHILY.xattr.security.selinux": "system_u:object_r:etc_t:s0"}})

	rootfs := t.TempDir()
	cp, err := newCopier(rootfs, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.close()
	if err := cp.copyAll(bc, srcs, nil, nil, "/app", false, false); err != nil {
		t.Fatal(err)
	}
	if err := cp.copyAll(bc, fsrcs, nil, nil, "/file", false, false); err != nil {
		t.Fatal(err)
	}
	if err := cp.extractFrom(tarf, "/x"); err != nil {
		t.Fatal(err)
	}
	if err := cp.finish(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, name, want string }{
		{"app/bin", "security.capability", string(capNetRaw())},
		{"app/bin", "user.note", "hi"},
		{"app/sub", "user.sub", "sub"},
		{"file", "security.capability", string(capNetRaw())},
		{"file", "user.note", "hi"},
		{"x/t/f", "user.foo", "bar"},
		{"x/t/f", "security.capability", string(capNetRaw())},
		{"x/t", "user.dir", "d"},
	} {
		if got := lgetxattr(t, filepath.Join(rootfs, tc.path), tc.name); got != tc.want {
			t.Errorf("/%s %s = %q, want %q", tc.path, tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct{ path, name string }{
		{"app/bin", "user.layerfs.origin"},
		{"app/bin", "trusted.overlay.origin"},
		{"file", "user.layerfs.origin"},
		{"x/t/f", "user.layerfs.origin"},
		{"app", "user.top"},
		{"app/bin", "trusted.host"},
		{"file", "trusted.host"},
		{"x/t/f", "trusted.x"},
		{"x/t/f", "security.selinux"},
	} {
		if _, err := unix.Lgetxattr(filepath.Join(rootfs, tc.path), tc.name, nil); err == nil {
			t.Errorf("/%s has %s: it should not be copied", tc.path, tc.name)
		}
	}
}
