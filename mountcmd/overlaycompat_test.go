package mountcmd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	lfs "github.com/layerfs/layerfs/fs"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestParseOverlayArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want overlayArgs
		err  bool
	}{
		{"podman", []string{"-o", `lowerdir=/l1:/l2,upperdir=/u,workdir=/w,context="system_u:object_r:container_file_t:s0:c1,c2",uidmapping=0:1000:1,gidmapping=0:1000:1,volatile,noatime,nodev,nosuid`, "/mnt"},
			overlayArgs{lowers: []string{"/l1", "/l2"}, upper: "/u", work: "/w", mountpoint: "/mnt", flags: []string{"noatime", "nodev", "nosuid"},
				ids: &lfs.IDMapping{UIDs: []lfs.IDRange{{Stored: 0, Shown: 1000, Size: 1}}, GIDs: []lfs.IDRange{{Stored: 0, Shown: 1000, Size: 1}}}}, false},
		// containers/storage's optsAppendMappings writes a colon after "uidmapping=".
		{"podman mappings", []string{"-o", "lowerdir=/l,uidmapping=:0:100000:65536:65536:5:1,gidmapping=:0:200000:65536,squash_to_gid=7", "/m"},
			overlayArgs{lowers: []string{"/l"}, mountpoint: "/m", readOnly: true,
				ids: &lfs.IDMapping{UIDs: []lfs.IDRange{{Stored: 0, Shown: 100000, Size: 65536}, {Stored: 65536, Shown: 5, Size: 1}},
					GIDs: []lfs.IDRange{{Stored: 0, Shown: 200000, Size: 65536}}, SquashGID: ptr(uint32(7))}}, false},
		{"squash_to_root", []string{"-o", "lowerdir=/l,squash_to_root", "/m"},
			overlayArgs{lowers: []string{"/l"}, mountpoint: "/m", readOnly: true, ids: &lfs.IDMapping{SquashUID: ptr(uint32(0)), SquashGID: ptr(uint32(0))}}, false},
		{"bad mapping", []string{"-o", "lowerdir=/l,uidmapping=0:1:2:3", "/m"}, overlayArgs{}, true},
		{"bad squash", []string{"-o", "lowerdir=/l,squash_to_uid=x", "/m"}, overlayArgs{}, true},
		{"lowerdir only", []string{"-olowerdir=/a\\:b:/c", "/mnt"}, overlayArgs{lowers: []string{"/a:b", "/c"}, mountpoint: "/mnt", readOnly: true}, false},
		{"ro and -f", []string{"-f", "-o", "lowerdir=/l,upperdir=/u,workdir=/w", "-o", "ro,dev,suid,rw,ro", "/m"},
			overlayArgs{lowers: []string{"/l"}, upper: "/u", work: "/w", mountpoint: "/m", readOnly: true, foreground: true, flags: []string{"dev", "suid"}}, false},
		{"passthrough", []string{"-o", "passthrough,lowerdir=/l,upperdir=/u,workdir=/w", "/m"},
			overlayArgs{lowers: []string{"/l"}, upper: "/u", work: "/w", mountpoint: "/m", passthrough: true}, false},
		// A comma in a path, escaped as libfuse and kernel overlayfs take it
		// (the first dir was "/l\\" before); noacl honoured (it was ignored).
		{"escaped comma, noacl", []string{"-o", `lowerdir=/l\,b:/c\:d,upperdir=/u\,v,workdir=/w,noacl`, "/m"},
			overlayArgs{lowers: []string{"/l,b", "/c:d"}, upper: "/u,v", work: "/w", mountpoint: "/m", noACL: true}, false},
		// containers/storage's force_mask mount; noxattrs honoured, static_nlink
		// taken and said to be ignored (all three were dropped silently).
		{"force_mask", []string{"-o", "lowerdir=/l,upperdir=/u,workdir=/w,,volatile,xattr_permissions=2,noxattrs=1,static_nlink", "/m"},
			overlayArgs{lowers: []string{"/l"}, upper: "/u", work: "/w", mountpoint: "/m", xattrPerms: 2, noXattrs: true, ignored: []string{"static_nlink"}}, false},
		{"noxattrs=0", []string{"-o", "lowerdir=/l,noxattrs=0,xattr_permissions=0", "/m"}, overlayArgs{lowers: []string{"/l"}, mountpoint: "/m", readOnly: true}, false},
		{"bad xattr_permissions", []string{"-o", "lowerdir=/l,xattr_permissions=3", "/m"}, overlayArgs{}, true},
		{"version", []string{"--version"}, overlayArgs{version: true}, false},
		{"no mountpoint", []string{"-o", "lowerdir=/l"}, overlayArgs{}, true},
		{"no workdir", []string{"-o", "lowerdir=/l,upperdir=/u", "/m"}, overlayArgs{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOverlayArgs(tc.args)
			if tc.err {
				if err == nil {
					t.Fatalf("parseOverlayArgs(%q) = %+v, want an error", tc.args, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseOverlayArgs(%q): %v", tc.args, err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("parseOverlayArgs(%q) = %+v, want %+v", tc.args, *got, tc.want)
			}
		})
	}
	if !looksLikeOverlayArgs([]string{"-o", "lowerdir=/x", "/m"}) || looksLikeOverlayArgs([]string{"mount", "busybox", "/m"}) {
		t.Errorf("looksLikeOverlayArgs misclassifies")
	}
	// A verb's own -o is the verb's, whatever its value (save -o lowerdir=x.tar
	// was taken for a fuse-overlayfs call).
	for _, args := range [][]string{{"save", "-o", "lowerdir=x.tar", "busybox"}, {"--root", "/r", "export", "-olowerdir=x", "c"}} {
		if looksLikeOverlayArgs(args) {
			t.Errorf("looksLikeOverlayArgs(%q) = true", args)
		}
	}
	if !looksLikeOverlayArgs([]string{"-f", "-o", "ro", "-o", "lowerdir=/x", "/m"}) {
		t.Errorf("looksLikeOverlayArgs with options first = false")
	}
}

func ptr[T any](v T) *T { return &v }

// buildLayerfs builds the layerfs binary into a temp dir.
func buildLayerfs(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "layerfs")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/layerfs/layerfs")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func isMounted(t *testing.T, dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

func unmountAndWait(t *testing.T, dir string) {
	if !isMounted(t, dir) {
		return
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Errorf("unmount %s: %v", dir, err)
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	}
	for i := 0; i < 50 && isMounted(t, dir); i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOverlayCompatMount(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	bin := buildLayerfs(t)
	d := t.TempDir()
	l1, l2, up, work, mnt := filepath.Join(d, "l1"), filepath.Join(d, "l2"), filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "mnt")
	for _, p := range []string{l1, l2, up, work, mnt} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, c string) {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(l2, "a"), "a")
	write(filepath.Join(l2, "b"), "b")
	write(filepath.Join(l2, "c"), "c")
	write(filepath.Join(l1, "top"), "top")
	if err := unix.Mknod(filepath.Join(l1, "a"), unix.S_IFCHR, 0); err != nil { // overlay whiteout
		t.Fatal(err)
	}
	write(filepath.Join(l1, ".wh.b"), "") // OCI whiteout

	// Through a link named fuse-overlayfs: --version like fuse-overlayfs.
	link := filepath.Join(d, "fuse-overlayfs")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(link, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fuse-overlayfs: version ") {
		t.Errorf("fuse-overlayfs --version: %v %q", err, out)
	}

	// Daemonising mount with podman-style options.
	t.Cleanup(func() { unmountAndWait(t, mnt) })
	cmd := exec.Command(bin, "-o", "lowerdir="+l1+":"+l2+",upperdir="+up+",workdir="+work+",volatile,noatime,nodev,uidmapping=0:0:4294967295,gidmapping=0:0:4294967295,unknownopt", mnt)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("layerfs -o lowerdir=...: %v\n%s", err, out)
	}
	if !isMounted(t, mnt) {
		t.Fatal("not mounted after the command returned")
	}
	// fuse-overlayfs's mount flags: suid (a container's setuid programs work),
	// nodev, noatime.
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Flags&unix.ST_NOSUID != 0 || sfs.Flags&unix.ST_NODEV == 0 || sfs.Flags&unix.ST_NOATIME == 0 {
		t.Errorf("mount flags %#x, want suid, nodev, noatime", sfs.Flags)
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "c top" {
		t.Errorf("merged dir = %q, want \"c top\"", names)
	}
	if err := os.Remove(filepath.Join(mnt, "c")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(up, "c"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper c is not an overlay whiteout: %v %o", err, st.Mode)
	}
	unmountAndWait(t, mnt)

	// lowerdir only: read-only. With paths relative to the caller's working
	// directory, which the daemon leaves (as fuse-overlayfs's): kept, it made
	// that filesystem busy for as long as the mount lived.
	cmd = exec.Command(bin, "-o", "lowerdir=l1:l2", "mnt")
	cmd.Dir = d
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lowerdir-only mount: %v\n%s", err, out)
	}
	if pids := cwdIn(d); len(pids) > 0 {
		t.Errorf("processes %v keep the caller's working directory %s", pids, d)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "top")); err != nil || string(got) != "top" {
		t.Errorf("read-only mount: top = %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to read-only mount: %v, want EROFS", err)
	}
	unmountAndWait(t, mnt)

	// A relative path through a symlink and "..": resolved by the kernel, from
	// the caller's directory, as fuse-overlayfs's (not cleaned as text, which
	// would make sym/../mnt d/mnt).
	deep := filepath.Join(d, "deep")
	for _, p := range []string{filepath.Join(deep, "real"), filepath.Join(deep, "mnt")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("deep/real", filepath.Join(d, "sym")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAndWait(t, filepath.Join(deep, "mnt")) })
	cmd = exec.Command(bin, "-o", "lowerdir=l1", "sym/../mnt")
	cmd.Dir = d
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount through sym/..: %v\n%s", err, out)
	}
	if isMounted(t, mnt) || !isMounted(t, filepath.Join(deep, "mnt")) {
		t.Errorf("sym/../mnt: mounted on %s (%v) rather than %s", mnt, isMounted(t, mnt), filepath.Join(deep, "mnt"))
	}
	unmountAndWait(t, filepath.Join(deep, "mnt"))
	unmountAndWait(t, mnt)

	// A failing mount reports the error and exits non-zero.
	out, err = exec.Command(bin, "-o", "lowerdir="+filepath.Join(d, "missing")+",upperdir="+up+",workdir="+work, mnt).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing") {
		t.Errorf("mount of a missing lower: %v %q", err, out)
	}
}

// TestOverlayCompatIDMapping mounts with the owner options podman and buildah pass
// for a container in a user namespace (they shift owners through the
// mount_program instead of chowning the layers): owners show shifted, as through
// fuse-overlayfs, and chowns and new entries are stored shifted back.
func TestOverlayCompatIDMapping(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	bin := buildLayerfs(t)
	l, up, work, mnt := compatDirs(t)
	for name, owner := range map[string][2]int{"root": {0, 0}, "user": {5, 7}, "unmapped": {70000, 70000}} {
		p := filepath.Join(l, name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, owner[0], owner[1]); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { unmountAndWait(t, mnt) })
	out, err := exec.Command(bin, "-o", "lowerdir="+l+",upperdir="+up+",workdir="+work+
		",uidmapping=:0:100000:65536,gidmapping=:0:200000:65536", mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("layerfs -o ...,uidmapping=...: %v\n%s", err, out)
	}
	owner := func(p string) [2]int {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return [2]int{int(st.Uid), int(st.Gid)}
	}
	for name, want := range map[string][2]int{".": {100000, 200000}, "root": {100000, 200000}, "user": {100005, 200007}, "unmapped": {65534, 65534}} {
		if got := owner(filepath.Join(mnt, name)); got != want {
			t.Errorf("owner of %s through the mount = %v, want %v", name, got, want)
		}
	}
	if err := os.Chown(filepath.Join(mnt, "user"), 100003, 200004); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); err != nil { // by host root: unmapped
		t.Fatal(err)
	}
	for name, want := range map[string][2]int{"user": {3, 4}, "new": {65534, 65534}} {
		if got := owner(filepath.Join(up, name)); got != want {
			t.Errorf("owner of %s in the upper dir = %v, want %v", name, got, want)
		}
	}
	if got, want := owner(filepath.Join(mnt, "user")), [2]int{100003, 200004}; got != want {
		t.Errorf("owner of user through the mount after chown = %v, want %v", got, want)
	}
}

// TestOverlayCompatXattrPermissions mounts as containers/storage does with
// force_mask (xattr_permissions=2) a layer stored masked with its owners and
// modes in user.containers.override_stat: the mount shows them, and a chmod
// lands in the upper's override. noxattrs=1 turns xattrs off; static_nlink is
// said to be ignored.
func TestOverlayCompatXattrPermissions(t *testing.T) {
	testenv.RequireFUSE(t)
	testenv.RequireRoot(t)
	bin := buildLayerfs(t)
	l, up, work, mnt := compatDirs(t)
	if err := os.WriteFile(filepath.Join(l, "f"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, v := range map[string]string{l: "0:0:0555:dir", filepath.Join(l, "f"): "1000:1000:0644:file"} {
		if err := unix.Setxattr(p, "user.containers.override_stat", []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(p string) string {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return strconv.FormatUint(uint64(st.Mode&0o7777), 8) + " " + strconv.Itoa(int(st.Uid)) + ":" + strconv.Itoa(int(st.Gid))
	}
	t.Cleanup(func() { unmountAndWait(t, mnt) })
	out, err := exec.Command(bin, "-o", "lowerdir="+l+",upperdir="+up+",workdir="+work+",,volatile,xattr_permissions=2,static_nlink", mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("layerfs -o ...,xattr_permissions=2: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "unknown argument ignored: static_nlink") {
		t.Errorf("static_nlink not warned about: %q", out)
	}
	if got := stat(filepath.Join(mnt, "f")); got != "644 1000:1000" {
		t.Errorf("f through the mount = %s, want 644 1000:1000", got)
	}
	if err := os.Chmod(filepath.Join(mnt, "f"), 0o600); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(up, "f"), "user.containers.override_stat", buf)
	if err != nil || string(buf[:n]) != "1000:1000:600" {
		t.Errorf("override of the upper's f after chmod 600 = %q (%v), want 1000:1000:600", buf[:max(n, 0)], err)
	}
	if got := stat(filepath.Join(up, "f")); got != "755 0:0" {
		t.Errorf("the upper's f itself = %s, want 755 0:0 (as stored)", got)
	}
	unmountAndWait(t, mnt)

	out, err = exec.Command(bin, "-o", "lowerdir="+l+",upperdir="+up+",workdir="+work+",noxattrs=1", mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("layerfs -o ...,noxattrs=1: %v\n%s", err, out)
	}
	if err := unix.Setxattr(filepath.Join(mnt, "f"), "user.x", []byte("1"), 0); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("setxattr with noxattrs=1: %v, want EOPNOTSUPP", err)
	}
	if _, err := unix.Getxattr(filepath.Join(mnt, "f"), "user.containers.override_stat", buf); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("getxattr with noxattrs=1: %v, want EOPNOTSUPP", err)
	}
}

// cwdIn returns the processes whose working directory is dir.
func cwdIn(dir string) []string {
	procs, _ := os.ReadDir("/proc")
	var pids []string
	for _, p := range procs {
		if cwd, err := os.Readlink(filepath.Join("/proc", p.Name(), "cwd")); err == nil && cwd == dir {
			pids = append(pids, p.Name())
		}
	}
	return pids
}

// compatDirs makes a lower, an upper, a work dir and a mountpoint for a mount
// in the fuse-overlayfs-compatible mode.
func compatDirs(t *testing.T) (lower, upper, work, mnt string) {
	t.Helper()
	d := t.TempDir()
	lower, upper, work, mnt = filepath.Join(d, "l"), filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "mnt")
	for _, p := range []string{lower, upper, work, mnt} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return lower, upper, work, mnt
}
