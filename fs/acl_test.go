package fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// POSIX ACL xattrs in the kernel's binary format (include/uapi/linux/posix_acl_xattr.h):
// a version, then (tag, perm, id) entries sorted by tag and id.
const (
	aclAccess  = "system.posix_acl_access"
	aclVersion = 2
	aclNoID    = 0xffffffff
)

var aclTags = []struct {
	tag  uint16
	name string
}{{0x01, "u"}, {0x02, "u"}, {0x04, "g"}, {0x08, "g"}, {0x10, "m"}, {0x20, "o"}}

// encodeACL encodes a short-form ACL text ("u::rwx,u:1234:rwx,g::r-x,m::rwx,o::r-x"),
// entries given in the kernel's order.
func encodeACL(t testing.TB, text string) []byte {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range strings.Split(text, ",") {
		f := strings.Split(e, ":")
		if len(f) != 3 || len(f[2]) != 3 {
			t.Fatalf("bad ACL entry %q", e)
		}
		var tag uint16
		id := uint32(aclNoID)
		switch f[0] {
		case "u", "g":
			tag = map[string]uint16{"u": 0x01, "g": 0x04}[f[0]]
			if f[1] != "" {
				tag <<= 1 // ACL_USER, ACL_GROUP
				n, err := strconv.ParseUint(f[1], 10, 32)
				must(t, err)
				id = uint32(n)
			}
		case "m":
			tag = 0x10
		case "o":
			tag = 0x20
		default:
			t.Fatalf("bad ACL entry %q", e)
		}
		perm := uint16(0)
		for i, c := range f[2] {
			if c != '-' {
				perm |= 4 >> i
			}
		}
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return b
}

// decodeACL is encodeACL's inverse, for messages; "-" for no ACL.
func decodeACL(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != aclVersion {
		return fmt.Sprintf("bad(%x)", b)
	}
	var out []string
	for b = b[4:]; len(b) > 0; b = b[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])
		name := fmt.Sprintf("tag%#x", tag)
		for _, tg := range aclTags {
			if tg.tag == tag {
				name = tg.name
			}
		}
		who := ""
		if tag == 0x02 || tag == 0x08 {
			who = strconv.FormatUint(uint64(id), 10)
		}
		rwx := []byte("---")
		for i, c := range "rwx" {
			if perm&(4>>i) != 0 {
				rwx[i] = byte(c)
			}
		}
		out = append(out, name+":"+who+":"+string(rwx))
	}
	return strings.Join(out, ",")
}

// getACL reads an ACL xattr of p; "-" when it has none.
func getACL(t testing.TB, p, name string) string {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := unix.Lgetxattr(p, name, buf)
	if errors.Is(err, unix.ENODATA) {
		return "-"
	}
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", p, name, err)
	}
	return decodeACL(buf[:n])
}

// The dirs of aclLower and the default ACLs they get ("" for none). sgid is setgid
// too; nest/sub has an ACL below a dir without one (both copied up by a create).
var aclDirs = []struct{ dir, acl string }{
	{"plain", ""},
	{"min", "u::rwx,g::rwx,o::rwx"},
	{"ext", "u::rwx,u:1234:rwx,g::r-x,m::rwx,o::r-x"},
	{"nest/sub", "u::rw-,g::r--,m::r-x,o::---"},
	{"sgid", "u::rwx,g::rwx,g:99:r-x,m::rwx,o::--x"},
}

// aclLower writes a layer with aclDirs.
func aclLower(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, a := range aclDirs {
		p := filepath.Join(d, a.dir)
		must(t, os.MkdirAll(p, 0o755))
		if a.acl != "" {
			must(t, unix.Setxattr(p, aclDefaultXattr, encodeACL(t, a.acl), 0))
		}
	}
	must(t, unix.Chmod(filepath.Join(d, "sgid"), 0o2775))
	return d
}

// aclNames are the entries umaskOps makes in each dir.
var aclNames = []string{"f", "s", "d", "p", "c", "t"}

// umaskOps (the child's side of TestNewEntryModes) sets the umask mask (octal) and
// makes, in each dir: a file f (open O_CREAT, 0666), a set-id file s (06777), a dir
// d (0777), a fifo p and a char device c (mknod, 0666), and a file t made by
// O_TMPFILE (0666) and linked in. The umask is per process, so it runs in a child.
func umaskOps(mask string, dirs []string) int {
	m, err := strconv.ParseUint(mask, 8, 32)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	unix.Umask(int(m))
	for _, d := range dirs {
		p := func(name string) string { return filepath.Join(d, name) }
		for _, f := range []struct {
			name string
			mode uint32
		}{{"f", 0o666}, {"s", 0o6777}} {
			fd, err := unix.Open(p(f.name), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, f.mode)
			if err != nil {
				fmt.Fprintf(os.Stderr, "create %s: %v\n", p(f.name), err)
				return 1
			}
			unix.Close(fd)
		}
		if err := unix.Mkdir(p("d"), 0o777); err != nil {
			fmt.Fprintf(os.Stderr, "mkdir %s: %v\n", p("d"), err)
			return 1
		}
		if err := unix.Mkfifo(p("p"), 0o666); err != nil {
			fmt.Fprintf(os.Stderr, "mkfifo %s: %v\n", p("p"), err)
			return 1
		}
		if err := unix.Mknod(p("c"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			fmt.Fprintf(os.Stderr, "mknod %s: %v\n", p("c"), err)
			return 1
		}
		fd, err := unix.Open(d, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o666)
		if err != nil {
			fmt.Fprintf(os.Stderr, "open O_TMPFILE %s: %v\n", d, err)
			return 1
		}
		err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, p("t"), unix.AT_SYMLINK_FOLLOW)
		unix.Close(fd)
		if err != nil {
			fmt.Fprintf(os.Stderr, "link O_TMPFILE %s: %v\n", p("t"), err)
			return 1
		}
	}
	return 0
}

// aclTestDirs are the dirs newEntryModes makes entries in: aclDirs, and "new",
// made through the mount first.
func aclTestDirs() []string {
	dirs := []string{"new"}
	for _, a := range aclDirs {
		dirs = append(dirs, a.dir)
	}
	return dirs
}

// newEntryModes makes a dir "new" in root and sets a default ACL on it, runs
// umaskOps with umask mask in aclTestDirs of root, and returns entryModes.
func newEntryModes(t *testing.T, root, mask string) []string {
	t.Helper()
	must(t, os.Mkdir(filepath.Join(root, "new"), 0o750))
	must(t, unix.Setxattr(filepath.Join(root, "new"), aclDefaultXattr, encodeACL(t, "u::rwx,u:4321:r-x,g::---,m::rwx,o::r--"), 0))
	var args []string
	for _, d := range aclTestDirs() {
		args = append(args, filepath.Join(root, d))
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LAYERFS_TEST_UMASK="+mask)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("umask %s: %v: %s", mask, err, out)
	}
	return entryModes(t, root)
}

// entryModes describes the entries umaskOps made in root: type, mode and ACLs.
func entryModes(t *testing.T, root string) []string {
	t.Helper()
	var lines []string
	for _, d := range aclTestDirs() {
		for _, name := range aclNames {
			p := filepath.Join(root, d, name)
			var st unix.Stat_t
			must(t, unix.Lstat(p, &st))
			lines = append(lines, fmt.Sprintf("%s/%s type=%o mode=%04o access=%s default=%s",
				d, name, st.Mode&unix.S_IFMT, st.Mode&0o7777, getACL(t, p, aclAccess), getACL(t, p, aclDefaultXattr)))
		}
	}
	return lines
}

// TestNewEntryModes: a new entry in a dir with a default ACL takes its permissions
// from the ACL and not the caller's umask; elsewhere the umask applies, and never
// this process's own. Oracles: the same steps in a plain dir of the test's
// filesystem and through kernel overlayfs over the same lower; layerfs must match
// both for creates, mkdirs, mknods and O_TMPFILE, in dirs copied up from the lower
// (their ACLs with them) and in one made through the mount.
func TestNewEntryModes(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireFUSE(t)
	probe := t.TempDir()
	if err := unix.Setxattr(probe, aclDefaultXattr, encodeACL(t, "u::rwx,g::rwx,o::rwx"), 0); err != nil {
		t.Skipf("the test's filesystem takes no POSIX ACLs: %v", err)
	}
	// This process's umask must not reach the entries (the child sets its own).
	old := unix.Umask(0o027)
	t.Cleanup(func() { unix.Umask(old) })
	for _, mask := range []string{"022", "077", "000"} {
		t.Run("umask"+mask, func(t *testing.T) {
			native := aclLower(t)
			want := newEntryModes(t, native, mask)

			kmnt := mountOverlay(t, "", "", aclLower(t))
			diffLines(t, "overlay vs native", newEntryModes(t, kmnt, mask), want)

			for _, pt := range []bool{false, true} {
				t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
					u := mountUnionMode(t, cow.FormatOverlay, pt, aclLower(t))
					got := newEntryModes(t, u.mnt, mask)
					diffLines(t, "layerfs vs native", got, want)
					u.remount(t, cow.FormatOverlay)
					diffLines(t, "after remount", entryModes(t, u.mnt), want)
				})
			}
		})
	}
}

// TestCopyUpIgnoresWorkDirACL: the work dir may inherit a default ACL from the dir
// it was made in (a store dir shared through ACLs); copies are built there, so a
// copied-up dir would inherit that ACL too, as an access and a default ACL its
// lower dir never had, and new entries in it would then take their permissions
// from that ACL instead of the caller's umask. Kernel overlayfs drops the ACLs of
// its work dir for this reason. Oracle: overlayfs with the same upper and work
// parent.
func TestCopyUpIgnoresWorkDirACL(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireFUSE(t)
	const acl = "u::rwx,u:1234:rwx,g::rwx,m::rwx,o::rwx"
	// parent makes a dir whose default ACL its upper and work dirs inherit.
	parent := func(t *testing.T) string {
		p := t.TempDir()
		if err := unix.Setxattr(p, aclDefaultXattr, encodeACL(t, acl), 0); err != nil {
			t.Skipf("the test's filesystem takes no POSIX ACLs: %v", err)
		}
		return p
	}
	lower := func(t *testing.T) string {
		d := t.TempDir()
		must(t, os.Mkdir(filepath.Join(d, "sub"), 0o755))
		return d
	}
	run := func(t *testing.T, root string) []string {
		sub := filepath.Join(root, "sub")
		cmd := exec.Command(os.Args[0], sub)
		cmd.Env = append(os.Environ(), "LAYERFS_TEST_UMASK=022")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("umask 022: %v: %s", err, out)
		}
		lines := []string{fmt.Sprintf("sub access=%s default=%s", getACL(t, sub, aclAccess), getACL(t, sub, aclDefaultXattr))}
		for _, name := range aclNames {
			p := filepath.Join(sub, name)
			var st unix.Stat_t
			must(t, unix.Lstat(p, &st))
			lines = append(lines, fmt.Sprintf("sub/%s mode=%04o access=%s", name, st.Mode&0o7777, getACL(t, p, aclAccess)))
		}
		return lines
	}

	kmnt := mountOverlay(t, parent(t), "", lower(t))
	want := run(t, kmnt)

	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
			d := parent(t)
			mnt, up, work := filepath.Join(d, "mnt"), filepath.Join(d, "upper"), filepath.Join(d, "work")
			for _, p := range []string{mnt, up, work} {
				must(t, os.Mkdir(p, 0o755))
			}
			m, err := Mount(mnt, Options{Lowers: []string{lower(t)}, Upper: up, Work: work, Format: cow.FormatOverlay, FsName: "layerfs-test", Passthrough: pt})
			if err != nil {
				t.Fatalf("Mount: %v", err)
			}
			t.Cleanup(func() {
				if err := m.Unmount(); err != nil {
					t.Errorf("Unmount: %v", err)
				}
				m.Wait()
			})
			diffLines(t, "layerfs vs overlay", run(t, mnt), want)
		})
	}
}

// TestACLPermissions: the kernel checks access ACLs for every caller (FUSE
// POSIX_ACL), as on a local filesystem: named users and groups in a layer's ACLs
// get what the ACL grants them, also where the mode bits alone would refuse, and
// lose what it denies; an ACL set through the mount, and a chmod that narrows an
// ACL's mask, take effect at once (the kernel's cached ACLs are dropped). Oracle:
// kernel overlayfs over the same lower, as uid/gid 65534.
func TestACLPermissions(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireFUSE(t)
	probe := t.TempDir()
	if err := unix.Setxattr(probe, aclAccess, encodeACL(t, "u::rwx,g::rwx,o::rwx"), 0); err != nil {
		t.Skipf("the test's filesystem takes no POSIX ACLs: %v", err)
	}
	files := []struct {
		name string
		mode uint32
		acl  string
	}{
		{"grant", 0o640, "u::rw-,u:65534:rw-,g::r--,m::rw-,o::---"},
		{"deny", 0o644, "u::rw-,u:65534:---,g::r--,m::r--,o::r--"},
		{"group", 0o640, "u::rw-,g::r--,g:65534:r--,m::r--,o::---"},
		{"later", 0o600, ""},
		{"narrow", 0o660, "u::rw-,u:65534:rw-,g::rw-,m::rw-,o::---"},
		{"dir/x", 0o644, ""},
	}
	lower := func(t *testing.T) string {
		d := t.TempDir()
		must(t, os.Chmod(d, 0o755))
		must(t, os.Mkdir(filepath.Join(d, "dir"), 0o750))
		must(t, unix.Setxattr(filepath.Join(d, "dir"), aclAccess, encodeACL(t, "u::rwx,u:65534:r-x,g::r-x,m::r-x,o::---"), 0))
		for _, f := range files {
			p := filepath.Join(d, f.name)
			must(t, os.WriteFile(p, []byte(f.name+"\n"), 0o600))
			must(t, os.Chmod(p, os.FileMode(f.mode)))
			if f.acl != "" {
				must(t, unix.Setxattr(p, aclAccess, encodeACL(t, f.acl), 0))
			}
		}
		return d
	}
	// probe runs each access as nobody and reports it, with the ACLs seen.
	probeAll := func(t *testing.T, mnt string) []string {
		for d := filepath.Dir(mnt); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			must(t, os.Chmod(d, 0o755)) // nobody walks to the mount
		}
		script := `for op in "cat grant" "cat deny" "cat group" "cat later" "cat narrow" "ls dir" "cat dir/x"; do
	if $op >/dev/null 2>&1; then echo "$op: ok"; else echo "$op: denied"; fi
done
for f in grant group narrow; do
	if (echo more >> $f) 2>/dev/null; then echo "append $f: ok"; else echo "append $f: denied"; fi
done`
		cmd := inMount(mnt, script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("as nobody: %v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		for _, f := range append([]string{"dir"}, "grant", "later", "narrow") {
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(mnt, f), &st))
			lines = append(lines, fmt.Sprintf("%s mode=%04o access=%s", f, st.Mode&0o7777, getACL(t, filepath.Join(mnt, f), aclAccess)))
		}
		return lines
	}
	// steps: nobody's accesses; then root grants nobody "later" through the
	// mount and narrows "narrow" by a chmod; then nobody's accesses again.
	steps := func(t *testing.T, mnt string) []string {
		before := probeAll(t, mnt)
		must(t, unix.Setxattr(filepath.Join(mnt, "later"), aclAccess, encodeACL(t, "u::rw-,u:65534:r--,g::---,m::r--,o::---"), 0))
		must(t, os.Chmod(filepath.Join(mnt, "narrow"), 0o600))
		return append(append(before, "--"), probeAll(t, mnt)...)
	}

	kmnt := mountOverlay(t, "", "", lower(t))
	want := steps(t, kmnt)
	if !slices.Contains(want, "cat grant: ok") || !slices.Contains(want, "cat deny: denied") {
		t.Fatalf("the oracle does not check ACLs here:\n%s", strings.Join(want, "\n"))
	}

	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
			u := mountUnionMode(t, cow.FormatOverlay, pt, lower(t))
			diffLines(t, "layerfs vs overlayfs", steps(t, u.mnt), want)
			u.remount(t, cow.FormatOverlay)
			got := probeAll(t, u.mnt)
			diffLines(t, "after remount", got, want[len(want)-len(got):])
		})
	}
}

// TestIDMappingACL: with uid/gid mapping (the fuse-overlayfs mode's uidmapping=),
// the named users and groups of ACLs are shown shifted as owners are, and stored
// shifted back when set through the mount, so the kernel's ACL checks see the ids
// the container's processes have.
func TestIDMappingACL(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireFUSE(t)
	lower := t.TempDir()
	must(t, os.Chmod(lower, 0o755))
	if err := unix.Setxattr(lower, aclAccess, encodeACL(t, "u::rwx,g::r-x,o::r-x"), 0); err != nil {
		t.Skipf("the test's filesystem takes no POSIX ACLs: %v", err)
	}
	for _, name := range []string{"f", "g"} {
		p := filepath.Join(lower, name)
		must(t, os.WriteFile(p, []byte(name+"\n"), 0o640))
	}
	must(t, unix.Setxattr(filepath.Join(lower, "f"), aclAccess, encodeACL(t, "u::rw-,u:1000:rw-,g::r--,g:1000:r--,m::rw-,o::---"), 0))

	d := t.TempDir()
	u := &union{mnt: filepath.Join(d, "mnt"), upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"), lowers: []string{lower}}
	for _, p := range []string{u.mnt, u.upper, u.work} {
		must(t, os.Mkdir(p, 0o755))
	}
	for p := d; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		must(t, os.Chmod(p, 0o755)) // the container's users walk to the mount
	}
	ids := &IDMapping{UIDs: []IDRange{{Stored: 0, Shown: 100000, Size: 65536}}, GIDs: []IDRange{{Stored: 0, Shown: 100000, Size: 65536}}}
	m, err := Mount(u.mnt, Options{Lowers: u.lowers, Upper: u.upper, Work: u.work, Format: cow.FormatOverlay, FsName: "layerfs-test", IDs: ids})
	must(t, err)
	u.m = m
	t.Cleanup(func() { u.unmount(t) })
	p := func(name string) string { return filepath.Join(u.mnt, name) }

	if got, want := getACL(t, p("f"), aclAccess), "u::rw-,u:101000:rw-,g::r--,g:101000:r--,m::rw-,o::---"; got != want {
		t.Errorf("ACL of f through the mount = %s, want %s", got, want)
	}
	const tryF = `if (cat f && echo more >> f) >/dev/null 2>&1; then echo ok; else echo denied; fi`
	if got := asUser(u.mnt, 101000, tryF); got != "ok" {
		t.Errorf("uid 101000, named in f's ACL as shown: %s, want ok", got)
	}
	if got := asUser(u.mnt, 1000, tryF); got != "denied" {
		t.Errorf("uid 1000, named in f's ACL as stored: %s, want denied", got)
	}

	must(t, unix.Setxattr(p("g"), aclAccess, encodeACL(t, "u::rw-,u:101005:r--,g::---,m::r--,o::---"), 0))
	if got, want := getACL(t, filepath.Join(u.upper, "g"), aclAccess), "u::rw-,u:1005:r--,g::---,m::r--,o::---"; got != want {
		t.Errorf("ACL of g set through the mount, stored = %s, want %s", got, want)
	}
	if got, want := getACL(t, p("g"), aclAccess), "u::rw-,u:101005:r--,g::---,m::r--,o::---"; got != want {
		t.Errorf("ACL of g through the mount = %s, want %s", got, want)
	}
	if got := asUser(u.mnt, 101005, `cat g >/dev/null 2>&1 && echo ok || echo denied`); got != "ok" {
		t.Errorf("uid 101005 reading g: %s, want ok", got)
	}
}

// TestNoACL: Options.NoACL (fuse-overlayfs's noacl) turns the kernel's ACL
// checks off: a file whose ACL grants nobody read, but whose mode does not, is
// refused to nobody, as under fuse-overlayfs -o noacl (noacl was accepted and
// ignored).
func TestNoACL(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireFUSE(t)
	lower := t.TempDir()
	must(t, os.Chmod(lower, 0o755))
	p := filepath.Join(lower, "grant")
	must(t, os.WriteFile(p, []byte("x\n"), 0o600))
	if err := unix.Setxattr(p, aclAccess, encodeACL(t, "u::rw-,u:65534:r--,g::---,m::r--,o::---"), 0); err != nil {
		t.Skipf("the test's filesystem takes no POSIX ACLs: %v", err)
	}
	for _, noACL := range []bool{false, true} {
		d := t.TempDir()
		mnt, upper, work := filepath.Join(d, "mnt"), filepath.Join(d, "upper"), filepath.Join(d, "work")
		for _, dir := range []string{mnt, upper, work} {
			must(t, os.Mkdir(dir, 0o755))
		}
		for x := filepath.Dir(mnt); x != "/" && x != os.TempDir(); x = filepath.Dir(x) {
			must(t, os.Chmod(x, 0o755)) // nobody walks to the mount
		}
		m, err := Mount(mnt, Options{Lowers: []string{lower}, Upper: upper, Work: work, Format: cow.FormatOverlay, FsName: "layerfs-test", NoACL: noACL})
		if err != nil {
			t.Fatalf("Mount: %v", err)
		}
		cmd := inMount(mnt, `cat grant >/dev/null 2>&1 && echo ok || echo denied`)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		must(t, m.Unmount())
		if err != nil {
			t.Fatalf("as nobody: %v: %s", err, out)
		}
		want := map[bool]string{false: "ok\n", true: "denied\n"}[noACL]
		if string(out) != want {
			t.Errorf("NoACL %v: nobody's read of a file its ACL grants = %q, want %q", noACL, out, want)
		}
	}
}
