package fs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestSymlinkReplacedWhileHeld holds a symlink inode (O_PATH) while its name is
// renamed over, then reads it: the kernel sends READLINK and GETATTR for an inode
// that has no name any more. A local filesystem answers both (the inode lives on);
// answering ESTALE made posixtest's OpenSymlinkRace flaky (an open that raced with
// the rename twice, the kernel's one retry included, failed with ESTALE).
func TestSymlinkReplacedWhileHeld(t *testing.T) {
	for _, mode := range []struct {
		name string
		pt   bool
	}{{"noopen", false}, {"passthrough", true}} {
		t.Run(mode.name, func(t *testing.T) {
			lower := tree(t, map[string]string{"lowlink": "->/lower/target", "file": "x"})
			u := mountUnionMode(t, cow.FormatOCI, mode.pt, lower)
			for _, tc := range []struct{ name, target string }{
				{"lowlink", "/lower/target"},
				{"uplink", "/upper/target"},
			} {
				p := filepath.Join(u.mnt, tc.name)
				if tc.name == "uplink" {
					must(t, os.Symlink(tc.target, p))
				}
				fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW, 0)
				if err != nil {
					t.Fatalf("Open(%s, O_PATH): %v", tc.name, err)
				}
				defer unix.Close(fd)
				tmp := p + ".tmp"
				must(t, os.WriteFile(tmp, []byte("replacement"), 0o644))
				must(t, os.Rename(tmp, p))
				buf := make([]byte, 256)
				n, err := unix.Readlinkat(fd, "", buf)
				if err != nil {
					t.Errorf("readlink of replaced %s: %v", tc.name, err)
				} else if string(buf[:n]) != tc.target {
					t.Errorf("readlink of replaced %s = %q, want %q", tc.name, buf[:n], tc.target)
				}
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
					t.Errorf("fstat of replaced %s: mode %o, %v; want a symlink", tc.name, st.Mode, err)
				}
				if got := readFile(t, p); got != "replacement" {
					t.Errorf("%s = %q after rename, want the replacement", tc.name, got)
				}
			}
		})
	}
}

// TestSymlinkXattrs: through the mount a symlink's own xattrs (trusted.*,
// security.*; Linux refuses user.* on symlinks) are listed, read, set and removed as
// through kernel overlayfs, the oracle, never those of its target, here or outside
// the layers; copy-ups (setxattr, chown -h, touch -h, a mv of the parent dir) keep
// them, the upper holds them without showing the private ones, and a commit's
// Diff and Apply keep them. Reads found none (ENODATA, an empty list), a setxattr
// failed with EPERM, and a copy-up dropped them.
func TestSymlinkXattrs(t *testing.T) {
	testenv.RequireRoot(t)
	outside := t.TempDir()
	host := filepath.Join(outside, "host")
	must(t, os.WriteFile(host, []byte("host"), 0o644))
	must(t, unix.Setxattr(host, "trusted.host", []byte("h"), 0))
	lower := tree(t, map[string]string{
		"f": "f", "d/lnk": "->../f", "d/abs": "->" + host, "d/plain": "->../f", "d/moved": "->../f",
	})
	must(t, unix.Setxattr(filepath.Join(lower, "f"), "trusted.f", []byte("tf"), 0))
	for p, xs := range map[string][]string{
		"d/lnk":   {"trusted.sym", "v", "security.selinux", "system_u:object_r:bin_t:s0"},
		"d/abs":   {"trusted.abs", "a"},
		"d/moved": {"trusted.moved", "m", "security.lbl", "l"},
	} {
		for i := 0; i < len(xs); i += 2 {
			if err := unix.Lsetxattr(filepath.Join(lower, p), xs[i], []byte(xs[i+1]), 0); err != nil {
				t.Skipf("lsetxattr %s on a symlink: %v", xs[i], err)
			}
		}
	}
	want := symlinkXattrOps(t, "")
	for _, m := range []struct {
		f  cow.Format
		pt bool
	}{{cow.FormatOCI, false}, {cow.FormatOverlay, false}, {cow.FormatOCI, true}} {
		f := m.f
		t.Run(fmt.Sprintf("%s/passthrough=%v", f, m.pt), func(t *testing.T) {
			u := mountUnionMode(t, f, m.pt, lower)
			if got := symlinkXattrOps(t, u.mnt); !slices.Equal(got, want) {
				t.Errorf("through the mount:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if got := linkXattrs(t, host, false); got != `trusted.host="h"` {
				t.Errorf("host file outside the layers has xattrs %s", got)
			}
			if got := linkXattrs(t, filepath.Join(lower, "d/lnk"), false); got != `security.selinux="system_u:object_r:bin_t:s0",trusted.sym="v"` {
				t.Errorf("lower d/lnk has xattrs %s", got)
			}
			u.unmount(t)
			layer := cow.Diff(context.Background(), u.upper, cow.DiffOptions{Format: f})
			applied := t.TempDir()
			if _, err := cow.Apply(context.Background(), applied, layer); err != nil {
				t.Fatalf("Apply(Diff(upper)): %v", err)
			}
			must(t, layer.Close())
			for _, c := range []struct{ p, want string }{
				{"d2/lnk", `security.selinux="system_u:object_r:bin_t:s0",trusted.new="n"`},
				{"d2/abs", `security.lbl="l",trusted.abs="a"`},
				{"d2/plain", ``},
				{"d2/moved", `security.lbl="l",trusted.moved="m"`},
			} {
				if got := linkXattrs(t, filepath.Join(u.upper, c.p), true); got != c.want {
					t.Errorf("upper %s has xattrs %s, want %s", c.p, got, c.want)
				}
				if got := linkXattrs(t, filepath.Join(applied, c.p), true); got != c.want {
					t.Errorf("%s after Diff and Apply has xattrs %s, want %s", c.p, got, c.want)
				}
			}
		})
	}
	// Last, as it skips without overlayfs: the oracle answers the same.
	kmnt := mountOverlay(t, "", ",redirect_dir=on", lower)
	if got := symlinkXattrOps(t, kmnt); !slices.Equal(got, want) {
		t.Errorf("overlayfs (the oracle) answers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// symlinkXattrOps runs the xattr calls of TestSymlinkXattrs on the symlinks under
// root and describes each outcome; with root "" it returns what overlayfs answers.
func symlinkXattrOps(t *testing.T, root string) []string {
	t.Helper()
	if root == "" {
		return []string{
			`list d/lnk: security.selinux="system_u:object_r:bin_t:s0",trusted.sym="v"`,
			`list d/abs: trusted.abs="a"`,
			`list d/plain: `,
			`get d/lnk trusted.sym: "v" ok`,
			`get d/lnk trusted.nope: "" ENODATA`,
			`get d/lnk user.x: "" ENODATA`,
			`set d/lnk user.x: EPERM`,
			`set d/abs security.lbl: ok`,
			`chown -h d/lnk: ok`,
			`touch -h d/plain: ok`,
			`set d/lnk trusted.new: ok`,
			`remove d/lnk trusted.sym: ok`,
			`remove d/lnk trusted.nope: ENODATA`,
			`remove d/plain trusted.nope: ENODATA`,
			`list d/lnk: security.selinux="system_u:object_r:bin_t:s0",trusted.new="n"`,
			`list d/abs: security.lbl="l",trusted.abs="a"`,
			`list d/plain: `,
			`list f: trusted.f="tf"`,
			`rename d d2: ok`,
			`list d2/lnk: security.selinux="system_u:object_r:bin_t:s0",trusted.new="n"`,
			`list d2/abs: security.lbl="l",trusted.abs="a"`,
			`list d2/plain: `,
			`list d2/moved: security.lbl="l",trusted.moved="m"`,
			`list f: trusted.f="tf"`,
		}
	}
	p := func(s string) string { return filepath.Join(root, s) }
	var out []string
	list := func(n string) { out = append(out, fmt.Sprintf("list %s: %s", n, linkXattrs(t, p(n), false))) }
	get := func(n, k string) {
		buf := make([]byte, 64)
		sz, err := unix.Lgetxattr(p(n), k, buf)
		out = append(out, fmt.Sprintf("get %s %s: %q %s", n, k, buf[:max(sz, 0)], errStr(err)))
	}
	set := func(n, k, v string) {
		out = append(out, fmt.Sprintf("set %s %s: %s", n, k, errStr(unix.Lsetxattr(p(n), k, []byte(v), 0))))
	}
	remove := func(n, k string) {
		out = append(out, fmt.Sprintf("remove %s %s: %s", n, k, errStr(unix.Lremovexattr(p(n), k))))
	}
	list("d/lnk")
	list("d/abs")
	list("d/plain")
	get("d/lnk", "trusted.sym")
	get("d/lnk", "trusted.nope")
	get("d/lnk", "user.x")
	set("d/lnk", "user.x", "u")
	set("d/abs", "security.lbl", "l") // copies it up
	out = append(out, "chown -h d/lnk: "+errStr(os.Lchown(p("d/lnk"), 5, 5)))
	ts := []unix.Timespec{{Sec: 1e9}, {Sec: 1e9}}
	out = append(out, "touch -h d/plain: "+errStr(unix.UtimesNanoAt(unix.AT_FDCWD, p("d/plain"), ts, unix.AT_SYMLINK_NOFOLLOW)))
	set("d/lnk", "trusted.new", "n")
	remove("d/lnk", "trusted.sym")
	remove("d/lnk", "trusted.nope")
	remove("d/plain", "trusted.nope")
	list("d/lnk")
	list("d/abs")
	list("d/plain")
	list("f")
	out = append(out, "rename d d2: "+errStr(os.Rename(p("d"), p("d2")))) // copies d/moved up
	list("d2/lnk")
	list("d2/abs")
	list("d2/plain")
	list("d2/moved")
	list("f")
	return out
}

// linkXattrs lists the xattrs of p itself (a symlink is not followed) as sorted
// name="value" pairs, private ones left out if noPrivate.
func linkXattrs(t *testing.T, p string, noPrivate bool) string {
	t.Helper()
	buf := make([]byte, 4096)
	sz, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "listxattr " + errStr(err)
	}
	var parts []string
	for _, k := range splitNul(buf[:sz]) {
		if noPrivate && cow.IsPrivateXattr(k) {
			continue
		}
		v := make([]byte, 256)
		n, err := unix.Lgetxattr(p, k, v)
		if err != nil {
			parts = append(parts, k+" "+errStr(err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%q", k, v[:n]))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
