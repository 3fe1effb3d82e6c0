package build

import (
	"archive/tar"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseChmod(t *testing.T) {
	tests := []struct {
		flag string
		in   fs.FileMode // the source entry's mode
		want fs.FileMode
	}{
		{"755", 0o600, 0o755},
		{"0600", fs.ModeDir | 0o755, 0o600},
		{"4755", 0o644, fs.ModeSetuid | 0o755},
		{"1777", fs.ModeDir | 0o755, fs.ModeSticky | 0o777},
		{"u+x", 0o640, 0o740},
		{"+x", 0o640, 0o751}, // no who: all, with a umask of 0 (buildkit's)
		{"go-rwx,u=rw", 0o755, 0o600},
		{"a=rX", 0o640, 0o444},
		{"a=rX", 0o744, 0o555},
		{"a=rX", fs.ModeDir | 0o700, 0o555},
		{"g+s", fs.ModeDir | 0o755, fs.ModeSetgid | 0o755},
		{"u+s", fs.ModeSetgid | 0o755, fs.ModeSetuid | fs.ModeSetgid | 0o755},
	}
	for _, tt := range tests {
		c, err := parseChmod(tt.flag)
		if err != nil {
			t.Errorf("parseChmod(%q) = %v", tt.flag, err)
			continue
		}
		if got := c.apply(tt.in); got != tt.want {
			t.Errorf("parseChmod(%q).apply(%v) = %v, want %v", tt.flag, tt.in, got, tt.want)
		}
	}
	if c, err := parseChmod(""); c != nil || err != nil {
		t.Errorf(`parseChmod("") = %v, %v, want nil, nil`, c, err)
	}
	for _, bad := range []string{"u+q", "0999", "8", "77777", "x+u", "rwx"} {
		if _, err := parseChmod(bad); err == nil {
			t.Errorf("parseChmod(%q) succeeded, want an error", bad)
		}
	}
}

// TestParseChown: a user name alone takes its primary group from /etc/passwd
// (buildkit, buildah: what docker build makes), a numeric uid alone gid = uid.
func TestParseChown(t *testing.T) {
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1002::/home/bob:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:\nbobgrp:x:1002:\nstaff:x:50:\n"), 0o644)
	tests := []struct {
		spec     string
		uid, gid int
	}{
		{"bob", 1001, 1002},
		{"bob:", 1001, 1002},
		{"1001", 1001, 1001},
		{"1234", 1234, 1234},
		{"bob:staff", 1001, 50},
		{"bob:77", 1001, 77},
		{"1234:staff", 1234, 50},
		{"root", 0, 0},
	}
	for _, tt := range tests {
		uid, gid, err := parseChown(tt.spec, rootfs)
		if err != nil || uid != tt.uid || gid != tt.gid {
			t.Errorf("parseChown(%q) = %d, %d, %v, want %d, %d", tt.spec, uid, gid, err, tt.uid, tt.gid)
		}
	}
	for _, bad := range []string{"ghost", "bob:ghosts"} {
		if _, _, err := parseChown(bad, rootfs); err == nil {
			t.Errorf("parseChown(%q) succeeded, want an error", bad)
		}
	}
}

// TestCopyDirNewDestMode: COPY dir /new makes /new 0755 (or --chmod's mode),
// not the source dir's (finding 3 of rev17-build; fsutil prepareTargetDir);
// a dest that is there keeps its mode, and subdirs take their source's.
func TestCopyDirNewDestMode(t *testing.T) {
	ctx := t.TempDir()
	for _, d := range []string{"priv/sub", "sticky"} {
		if err := os.MkdirAll(filepath.Join(ctx, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(ctx, "priv/sub"), 0o750)
	os.Chmod(filepath.Join(ctx, "priv"), 0o700)
	os.Chmod(filepath.Join(ctx, "sticky"), 0o1777)
	bc, err := openContext(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	os.Mkdir(filepath.Join(rootfs, "there"), 0o711)
	for _, tc := range []struct {
		src, dest, chmod string
		want             fs.FileMode
	}{
		{"priv", "/app", "", fs.ModeDir | 0o755},
		{"sticky", "/sticky", "", fs.ModeDir | 0o755},
		{"priv", "/chmodded", "0750", fs.ModeDir | 0o750},
		{"priv", "/there", "", fs.ModeDir | 0o711},
	} {
		chmod, err := parseChmod(tc.chmod)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := newCopier(rootfs, "", chmod)
		if err != nil {
			t.Fatal(err)
		}
		srcs, err := bc.resolve(tc.src)
		if err == nil {
			err = cp.copyAll(bc, srcs, nil, nil, tc.dest, false, false)
		}
		cp.close()
		if err != nil {
			t.Fatalf("COPY %s %s: %v", tc.src, tc.dest, err)
		}
		fi, err := os.Lstat(filepath.Join(rootfs, tc.dest))
		if err != nil || fi.Mode() != tc.want {
			t.Errorf("COPY --chmod=%q %s %s: dest mode %v, %v, want %v", tc.chmod, tc.src, tc.dest, fi.Mode(), err, tc.want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(rootfs, "app/sub")); err != nil || fi.Mode() != fs.ModeDir|0o750 {
		t.Errorf("COPY priv /app: /app/sub is %v, %v, want the source's drwxr-x---", fi.Mode(), err)
	}
}

// TestCopyOverExistingDirs: dirs already there below a COPY or ADD
// destination take the source's mode, owner (or --chown's), times and
// xattrs, as BuildKit's fsutil copy and go-archive do; the destination itself
// is left as it is (finding 4 of rev17-build).
func TestCopyOverExistingDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown")
	}
	ctx := t.TempDir()
	os.MkdirAll(filepath.Join(ctx, "src/data"), 0o755)
	os.WriteFile(filepath.Join(ctx, "src/data/x"), []byte("x"), 0o644)
	os.Chmod(filepath.Join(ctx, "src/data"), 0o770|fs.ModeSetgid)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	os.Chtimes(filepath.Join(ctx, "src/data"), old, old)
	bc, err := openContext(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	for _, d := range []string{"app/data", "etc2/conf"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	os.Chmod(filepath.Join(rootfs, "app"), 0o711)

	cp, err := newCopier(rootfs, "1000:1000", nil)
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := bc.resolve("src/")
	if err == nil {
		err = cp.copyAll(bc, srcs, nil, nil, "/app/", false, false)
	}
	cp.close()
	if err != nil {
		t.Fatal(err)
	}
	tarf := dataTar(t, filepath.Join(t.TempDir(), "conf.tar"),
		&tar.Header{Typeflag: tar.TypeDir, Name: "conf/", Mode: 0o2775, Uid: 1000, Gid: 1001, ModTime: old},
		&tar.Header{Typeflag: tar.TypeReg, Name: "conf/c", Linkname: "c", Mode: 0o644, Uid: 1000, Gid: 1001})
	cp, err = newCopier(rootfs, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = cp.extractFrom(tarf, "/etc2/")
	if err == nil {
		err = cp.finish()
	}
	cp.close()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path     string
		mode     uint32
		uid, gid uint32
		mtime    time.Time
	}{
		{"app/data", unix.S_IFDIR | 0o2770, 1000, 1000, old},
		{"etc2/conf", unix.S_IFDIR | 0o2775, 1000, 1001, old},
		{"app", unix.S_IFDIR | 0o711, 0, 0, time.Time{}},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(rootfs, tc.path), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != tc.mode || st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("/%s: mode %o owner %d:%d, want %o %d:%d", tc.path, st.Mode, st.Uid, st.Gid, tc.mode, tc.uid, tc.gid)
		}
		if !tc.mtime.IsZero() && st.Mtim.Sec != tc.mtime.Unix() {
			t.Errorf("/%s: mtime %v, want %v", tc.path, time.Unix(st.Mtim.Sec, 0).UTC(), tc.mtime)
		}
	}
}

// TestCopyKeepsHardLinks: files hard-linked in the source stay linked in the
// copy, within one COPY, as BuildKit's fsutil copy keeps them (finding 5 of
// rev17-build); other files stay apart.
func TestCopyKeepsHardLinks(t *testing.T) {
	ctx := t.TempDir()
	os.MkdirAll(filepath.Join(ctx, "d/sub"), 0o755)
	os.WriteFile(filepath.Join(ctx, "d/a"), []byte("same"), 0o644)
	os.WriteFile(filepath.Join(ctx, "d/c"), []byte("same"), 0o644)
	if err := os.Link(filepath.Join(ctx, "d/a"), filepath.Join(ctx, "d/sub/b")); err != nil {
		t.Fatal(err)
	}
	bc, err := openContext(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	cp, err := newCopier(rootfs, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.close()
	srcs, err := bc.resolve("d")
	if err == nil {
		err = cp.copyAll(bc, srcs, nil, nil, "/d", false, false)
	}
	if err != nil {
		t.Fatal(err)
	}
	cp2, err := newCopier(rootfs, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp2.close()
	var files []source
	for _, p := range []string{"d/a", "d/sub/b"} {
		s, err := bc.resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, s...)
	}
	if err := cp2.copyAll(bc, files, nil, nil, "/f/", false, false); err != nil {
		t.Fatal(err)
	}
	ino := func(p string) (uint64, uint64) {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(rootfs, p), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino, uint64(st.Nlink)
	}
	a, na := ino("d/a")
	b, _ := ino("d/sub/b")
	c, _ := ino("d/c")
	if a != b || na != 2 {
		t.Errorf("COPY d /d: /d/a and /d/sub/b are inodes %d and %d (links %d), want one with 2 links", a, b, na)
	}
	if c == a {
		t.Errorf("COPY d /d: /d/c was linked to /d/a")
	}
	if fa, _ := ino("f/a"); fa != func() uint64 { i, _ := ino("f/b"); return i }() {
		t.Errorf("COPY d/a d/sub/b /f/: the two were not linked")
	}
}

// TestCopyLinkNoFollow: COPY --link follows no symlink of the image on the
// destination path: the path is made of dirs, the symlink replaced, as the
// Dockerfile reference says (finding 7 of rev17-build); a plain COPY still
// follows it.
func TestCopyLinkNoFollow(t *testing.T) {
	ctx := t.TempDir()
	os.MkdirAll(filepath.Join(ctx, "d/sub"), 0o755)
	os.WriteFile(filepath.Join(ctx, "d/a.txt"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(ctx, "d/sub/s"), []byte("s"), 0o644)
	bc, err := openContext(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	for _, d := range []string{"dst", "tmp", "app"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	os.Symlink("/tmp", filepath.Join(rootfs, "dst/lnk"))
	os.Symlink("/tmp", filepath.Join(rootfs, "dst/plain"))
	os.Symlink("/tmp", filepath.Join(rootfs, "app/sub"))
	copyTo := func(link bool, src, dest string) {
		t.Helper()
		cp, err := newCopier(rootfs, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cp.close()
		cp.link = link
		srcs, err := bc.resolve(src)
		if err == nil {
			err = cp.copyAll(bc, srcs, nil, nil, dest, false, false)
		}
		if err != nil {
			t.Fatalf("COPY --link=%v %s %s: %v", link, src, dest, err)
		}
	}
	copyTo(true, "d/a.txt", "/dst/lnk/")
	copyTo(true, "d", "/app/")
	copyTo(false, "d/a.txt", "/dst/plain/")
	for _, p := range []string{"dst/lnk", "app/sub"} {
		if fi, err := os.Lstat(filepath.Join(rootfs, p)); err != nil || !fi.IsDir() {
			t.Errorf("after COPY --link, /%s is %v, %v: want a dir in place of the symlink", p, fi.Mode(), err)
		}
	}
	for _, p := range []string{"dst/lnk/a.txt", "app/sub/s", "tmp/a.txt"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("/%s: %v", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "tmp/s")); err == nil {
		t.Errorf("COPY --link d /app/ wrote /tmp/s through the symlink /app/sub")
	}
	if l, err := os.Readlink(filepath.Join(rootfs, "dst/plain")); err != nil || l != "/tmp" {
		t.Errorf("a plain COPY replaced the symlink /dst/plain: %q, %v", l, err)
	}
}
