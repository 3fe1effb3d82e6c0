package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// ownerDeniedTree makes, under d, entries whose modes deny their owner: a 0000
// file holding an owner xattr (/etc/shadow), a 4111 binary, a 0200 file, a 0000
// dir and a 0300 dir with files inside. It returns each path's mode.
func ownerDeniedTree(t *testing.T, d string) map[string]uint32 {
	t.Helper()
	files := map[string]string{
		"etc/shadow": "root:*:1::::::\n", "usr/bin/sudo": "#!sudo\n", "wo": "write only\n",
		"d0/in/z": "z\n", "d3/f": "f\n", "d3/g": "",
	}
	for p, data := range files {
		must(t, os.MkdirAll(filepath.Join(d, filepath.Dir(p)), 0o755))
		must(t, os.WriteFile(filepath.Join(d, p), []byte(data), 0o644))
	}
	must(t, syscall.Setxattr(filepath.Join(d, "etc/shadow"), RootlessXattr, encodeRootless(0, 42), 0))
	must(t, syscall.Setxattr(filepath.Join(d, "d0"), RootlessXattr, encodeRootless(7, 7), 0))
	modes := map[string]uint32{
		"etc/shadow": 0, "usr/bin/sudo": 0o4111, "wo": 0o200, "d0/in/z": 0, "d0/in": 0, "d0": 0, "d3/f": 0o400, "d3": 0o300,
	}
	// Deepest first: a dir's mode after its children's.
	var ps []string
	for p := range modes {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return len(ps[i]) > len(ps[j]) })
	for _, p := range ps {
		must(t, unix.Chmod(filepath.Join(d, p), modes[p]))
	}
	return modes
}

// checkModes fails t unless every path has the mode it was given: the readers put
// back what they widened.
func checkModes(t *testing.T, d string, modes map[string]uint32) {
	t.Helper()
	for _, p := range []string{"d0", "d3", "etc/shadow", "usr/bin/sudo", "wo"} {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(d, p), &st))
		if st.Mode&0o7777 != modes[p] {
			t.Errorf("%s: mode %04o after the read, want %04o", p, st.Mode&0o7777, modes[p])
		}
	}
}

// tarContents lists a tar as "name mode uid:gid data" lines.
func tarContents(t *testing.T, r io.ReadCloser) []string {
	t.Helper()
	defer r.Close()
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		must(t, err)
		out = append(out, fmt.Sprintf("%s %04o %d:%d %s", strings.TrimSuffix(h.Name, "/"), h.Mode, h.Uid, h.Gid, strings.TrimSpace(string(b))))
	}
	sort.Strings(out)
	return out
}

// TestUnprivReadOwnerDenied: unprivileged, Diff, Changes and Export read files and
// dirs of the user's whose modes deny their owner (0000 /etc/shadow, 4111 sudo,
// 0200 file, 0000 and 0300 dirs) as umoci's rootless mode does, and give every
// mode back; they failed with "open: permission denied".
func TestUnprivReadOwnerDenied(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	up := filepath.Join(dir, "up")
	modes := ownerDeniedTree(t, up)
	t.Cleanup(func() { RemoveAll(up) })
	want := []string{
		"d0 0000 7:7 ", "d0/in 0000 0:0 ", "d0/in/z 0000 0:0 z", "d3 0300 0:0 ", "d3/f 0400 0:0 f", "d3/g 0644 0:0 ",
		"etc 0755 0:0 ", "etc/shadow 0000 0:42 root:*:1::::::", "usr 0755 0:0 ", "usr/bin 0755 0:0 ",
		"usr/bin/sudo 4111 0:0 #!sudo", "wo 0200 0:0 write only",
	}
	for _, c := range []struct {
		name string
		r    func() io.ReadCloser
	}{
		{"diff", func() io.ReadCloser { return Diff(context.Background(), up, DiffOptions{Format: FormatOCI}) }},
		{"export", func() io.ReadCloser { return Export(context.Background(), []string{up}, "", FormatOCI) }},
		{"export upper", func() io.ReadCloser { return Export(context.Background(), nil, up, FormatOCI) }},
	} {
		got := tarContents(t, c.r())
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant:\n%s", c.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		checkModes(t, up, modes)
	}
	low := filepath.Join(dir, "low")
	must(t, os.MkdirAll(filepath.Join(low, "d0", "old"), 0o755))
	must(t, os.MkdirAll(filepath.Join(low, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(up, "d3", OpaqueMarker), nil, 0)) // d3 is 0300: -wx is enough
	must(t, os.MkdirAll(filepath.Join(low, "d3", "hidden"), 0o755))
	changes, err := Changes(up, DiffOptions{Format: FormatOCI, Lowers: []string{low}})
	if err != nil {
		t.Fatalf("changes: %v", err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	wantC := "C /d0 A /d0/in A /d0/in/z C /d3 A /d3/f A /d3/g D /d3/hidden C /etc A /etc/shadow A /usr A /usr/bin A /usr/bin/sudo A /wo"
	if strings.Join(got, " ") != wantC {
		t.Errorf("changes: %s\nwant:     %s", strings.Join(got, " "), wantC)
	}
	checkModes(t, up, modes)
}

// TestUnprivCopyUpOwnerDenied: unprivileged, copy-up of a lower file or dir of the
// user's whose mode denies its owner read (0000 /etc/shadow, 4111 sudo, 0200
// file, 0000 and 0300 dirs) works, carries its data, mode and owner xattr, and
// gives the lower entry its mode back; it failed with EACCES (rev16-rootless
// item 5).
func TestUnprivCopyUpOwnerDenied(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	low, up, work := filepath.Join(dir, "low"), filepath.Join(dir, "up"), filepath.Join(dir, "work")
	modes := ownerDeniedTree(t, low)
	t.Cleanup(func() { RemoveAll(low); RemoveAll(up) })
	must(t, os.MkdirAll(filepath.Join(up, "etc"), 0o755))
	must(t, os.MkdirAll(filepath.Join(up, "usr/bin"), 0o755))
	must(t, os.Mkdir(work, 0o700))
	opts := CopyUpOptions{Work: cuOpenDir(t, work), DataLimit: -1}
	for _, p := range []string{"etc/shadow", "usr/bin/sudo", "wo", "d0", "d3"} {
		src, err := unix.Open(filepath.Join(low, filepath.Dir(p)), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		must(t, err)
		dst := cuOpenDir(t, filepath.Join(up, filepath.Dir(p)))
		if err := CopyUp(src, dst, filepath.Base(p), opts); err != nil {
			t.Errorf("copy-up %s: %v", p, err)
		}
		unix.Close(src)
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(up, p), &st); err != nil {
			t.Errorf("copy of %s: %v", p, err)
		} else if st.Mode&0o7777 != modes[p] {
			t.Errorf("copy of %s: mode %04o, want %04o", p, st.Mode&0o7777, modes[p])
		}
	}
	checkModes(t, low, modes)
	// What the copies hold, read as Diff does (which opens them up the same way).
	got := tarContents(t, Diff(context.Background(), up, DiffOptions{Format: FormatOCI}))
	want := []string{
		"d0 0000 7:7 ", "d3 0300 0:0 ", "etc 0755 0:0 ", "etc/shadow 0000 0:42 root:*:1::::::",
		"usr 0755 0:0 ", "usr/bin 0755 0:0 ", "usr/bin/sudo 4111 0:0 #!sudo", "wo 0200 0:0 write only",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the copies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestUnprivOpaqueCheck: unprivileged, IsOpaqueDir sees the OCI marker and the
// user.overlay.opaque xattr of a dir of the user's made 0000 or 0300, through an
// O_PATH fd too, and gives the dir its mode back; a check it could not make
// said "not opaque" (or failed), and the union fs showed the lower entries the
// dir hides (rev16-rootless item 4).
func TestUnprivOpaqueCheck(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	for _, mode := range []uint32{0, 0o300, 0o100} {
		for _, f := range []Format{FormatOCI, FormatOverlay} {
			d := filepath.Join(dir, fmt.Sprintf("%s-%o", f, mode))
			must(t, os.Mkdir(d, 0o755))
			must(t, MakeOpaque(cuOpenDir(t, d), f))
			must(t, unix.Chmod(d, mode))
			for _, fl := range []int{unix.O_PATH, unix.O_RDONLY} {
				fd, err := unix.Open(d, fl|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					if fl == unix.O_RDONLY {
						continue // a 0000 or 0300 dir: only O_PATH opens it
					}
					t.Fatal(err)
				}
				opq, err := IsOpaqueDir(fd)
				unix.Close(fd)
				if err != nil || !opq {
					t.Errorf("%s dir %04o (open %#x): opaque %v, %v; want true", f, mode, fl, opq, err)
				}
			}
			var st unix.Stat_t
			must(t, unix.Stat(d, &st))
			if st.Mode&0o7777 != mode {
				t.Errorf("%s dir: mode %04o after the check, want %04o", f, st.Mode&0o7777, mode)
			}
			must(t, unix.Chmod(d, 0o755))
		}
	}
}

// TestUnprivApplyWarnsDropped: an unprivileged unpack names, in one warning, the
// device nodes and the security.capability and trusted.* xattrs it cannot make;
// it left them out without a word (rev16-rootless item 6).
func TestUnprivApplyWarnsDropped(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	var warned []string
	old := Warn
	Warn = func(msg string) { warned = append(warned, msg) }
	defer func() { Warn = old }()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8},
		{Name: "dev/fifo", Typeflag: tar.TypeFifo, Mode: 0o644},
		{Name: "./ping", Typeflag: tar.TypeReg, Mode: 0o755, PAXRecords: map[string]string{
			paxXattrPrefix + "security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
			paxXattrPrefix + "trusted.x":           "y", paxXattrPrefix + "user.ok": "1",
		}},
	} {
		h.Format = tar.FormatPAX
		must(t, tw.WriteHeader(h))
	}
	must(t, tw.Close())
	_, err := Apply(context.Background(), filepath.Join(dir), &buf)
	must(t, err)
	want := "unprivileged unpack of layer"
	if len(warned) != 1 || !strings.Contains(warned[0], want) {
		t.Fatalf("warnings: %q, want one %q", warned, want)
	}
	for _, w := range []string{"dev/null (char device 1:3)", "dev/sda (block device 8:0)", "ping (xattr security.capability)", "ping (xattr trusted.x)"} {
		if !strings.Contains(warned[0], w) {
			t.Errorf("warning %q does not name %q", warned[0], w)
		}
	}
	for _, w := range []string{"fifo", "user.ok"} {
		if strings.Contains(warned[0], w) {
			t.Errorf("warning %q names %q, which was made", warned[0], w)
		}
	}
}

// TestUnprivSymlinkInDeniedDir: unprivileged, Diff and Export write a symlink in
// a dir whose mode denies its owner (0000, 0300) with its target, and give the
// dir its mode back; they failed with "readlink: permission denied", as the dir's
// mode was put back before the link was read (rev16-diff2 item 1).
func TestUnprivSymlinkInDeniedDir(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	up := filepath.Join(dir, "up")
	for _, d := range []string{"q", "r"} {
		must(t, os.MkdirAll(filepath.Join(up, d), 0o755))
		must(t, os.Symlink("target", filepath.Join(up, d, "l")))
		must(t, os.WriteFile(filepath.Join(up, d, "f"), []byte("hi\n"), 0o644))
	}
	must(t, unix.Chmod(filepath.Join(up, "q"), 0))
	must(t, unix.Chmod(filepath.Join(up, "r"), 0o300))
	t.Cleanup(func() { RemoveAll(up) })
	for _, c := range []struct {
		name string
		r    func() io.ReadCloser
	}{
		{"diff", func() io.ReadCloser { return Diff(context.Background(), up, DiffOptions{Format: FormatOCI}) }},
		{"export", func() io.ReadCloser { return Export(context.Background(), []string{up}, "", FormatOCI) }},
	} {
		hdrs := tarHeaders(t, c.r())
		for _, p := range []string{"q/l", "r/l"} {
			if h := hdrs[p]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "target" {
				t.Errorf("%s: %s = %+v, want a symlink to target", c.name, p, h)
			}
		}
		for d, m := range map[string]uint32{"q": 0, "r": 0o300} {
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(up, d), &st))
			if st.Mode&0o7777 != m {
				t.Errorf("%s: %s mode %04o after the read, want %04o", c.name, d, st.Mode&0o7777, m)
			}
		}
	}
}

// modeOf is the permission bits of p.
func modeOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st.Mode & 0o7777
}

// TestUnprivWidenKeepsChmod: unprivileged, a chmod made through the union fs
// (Chmod) while a chmod-around of the same process has the dir opened up is
// kept: the widening puts back the new mode, and ShownMode reports it meanwhile.
// Two widenings of one entry (a lookup's u+rx, a whole-tree copy-up's u+rwx)
// share it, and the last puts the first's saved mode back. The mount's own
// lookups undid a chmod 300 of a dir made 0000 through it, for good, and u+rx
// against u+rwx could leave u+rx (rev16-diff2 item 3).
func TestUnprivWidenKeepsChmod(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	d := filepath.Join(dir, "d")
	must(t, os.Mkdir(d, 0o755))
	must(t, unix.Chmod(d, 0))
	fd, err := unix.Open(d, unix.O_PATH|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)

	undo := widenFd(fd)
	if m := modeOf(t, d); m != 0o500 {
		t.Fatalf("widened: %04o, want 0500", m)
	}
	must(t, Chmod(fd, 0o300))
	var st unix.Stat_t
	must(t, unix.Fstat(fd, &st))
	if ShownMode(&st); st.Mode&0o7777 != 0o300 {
		t.Errorf("shown during the widening: %04o, want 0300", st.Mode&0o7777)
	}
	undo()
	if m := modeOf(t, d); m != 0o300 {
		t.Errorf("after the widening: %04o, want the chmod's 0300", m)
	}

	must(t, unix.Chmod(d, 0))
	undoRX := widenFd(fd)
	undoRWX := OwnDirRWX(fd)
	if m := modeOf(t, d); m != 0o700 {
		t.Errorf("both widened: %04o, want 0700", m)
	}
	must(t, unix.Fstat(fd, &st))
	if ShownMode(&st); st.Mode&0o7777 != 0 {
		t.Errorf("shown while widened: %04o, want 0000", st.Mode&0o7777)
	}
	undoRX()
	if m := modeOf(t, d); m != 0o700 {
		t.Errorf("one widening left: %04o, want 0700", m)
	}
	undoRWX()
	if m := modeOf(t, d); m != 0 {
		t.Errorf("after both: %04o, want 0000", m)
	}
	if n := wideN.Load(); n != 0 {
		t.Errorf("%d widenings left in flight", n)
	}
}

// TestUnprivParallelReaders: unprivileged, readers racing on files of one dir
// whose mode denies its owner (as go-fuse serves a mount's requests) all read
// them: a reader whose first try failed could find the dir put back by another
// reader before its retry and get EACCES (rev16-diff2 item 6). The dir keeps
// its mode.
func TestUnprivParallelReaders(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	z := filepath.Join(dir, "z")
	must(t, os.Mkdir(z, 0o755))
	const files = 50
	for i := 0; i < files; i++ {
		must(t, os.WriteFile(filepath.Join(z, fmt.Sprint("f", i)), []byte("x"), 0o644))
	}
	must(t, unix.Chmod(z, 0))
	dfd, err := unix.Open(z, unix.O_PATH|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(dfd)
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			var first error
			for r := 0; r < 100; r++ {
				for i := 0; i < files; i++ {
					fd, err := openAsOwner(dfd, fmt.Sprint("f", i), unix.O_RDONLY|unix.O_CLOEXEC)
					if err == nil {
						unix.Close(fd)
					} else if first == nil {
						first = err
					}
				}
			}
			errs <- first
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Errorf("a reader: %v", err)
		}
	}
	if m := modeOf(t, z); m != 0 {
		t.Errorf("z: %04o after the reads, want 0000", m)
	}
}
