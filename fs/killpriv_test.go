package fs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestKillSuidgid: a write or truncate by a caller without CAP_FSETID clears the
// set-id bits, as on a local filesystem (S_ISUID always, S_ISGID only with group
// execute); root's writes keep them. The kernel leaves this to the server
// (HANDLE_KILLPRIV_V2), so both modes are checked, each mode change as seen
// through the mount right away (the kernel's cached mode must not stay stale).
func TestKillSuidgid(t *testing.T) {
	testenv.RequireRoot(t)
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
			lower := t.TempDir()
			files := map[string]os.FileMode{
				"write": 0o777 | os.ModeSetuid | os.ModeSetgid, "append": 0o777 | os.ModeSetuid | os.ModeSetgid,
				"sgid-noexec": 0o666 | os.ModeSetgid, "trunc": 0o777 | os.ModeSetuid | os.ModeSetgid,
				"ftrunc": 0o777 | os.ModeSetuid, "root": 0o777 | os.ModeSetuid | os.ModeSetgid,
			}
			for name, mode := range files {
				p := filepath.Join(lower, name)
				must(t, os.WriteFile(p, []byte("data\n"), 0o644))
				must(t, os.Chmod(p, mode))
			}
			must(t, os.Chmod(lower, 0o755))
			// A file capability (v2: effective, CAP_NET_RAW permitted): any write
			// removes it, root's too.
			capBlob := []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			must(t, os.WriteFile(filepath.Join(lower, "cap"), []byte("data\n"), 0o755))
			must(t, unix.Setxattr(filepath.Join(lower, "cap"), "security.capability", capBlob, 0))
			u := mountUnionMode(t, cow.FormatOCI, pt, lower)
			p := func(s string) string { return filepath.Join(u.mnt, s) }
			for d := filepath.Dir(u.mnt); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
				must(t, os.Chmod(d, 0o755)) // nobody walks to the mount
			}
			// Stat everything first, so the kernel holds the old modes in its cache.
			for name := range files {
				if _, err := os.Stat(p(name)); err != nil {
					t.Fatal(err)
				}
			}
			nobody := func(script string) {
				t.Helper()
				cmd := exec.Command("sh", "-c", script)
				cmd.Dir = u.mnt
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s as nobody: %v: %s", script, err, out)
				}
			}
			nobody("printf x | dd of=write conv=notrunc status=none && printf x >> append && printf x >> sgid-noexec && : > trunc && truncate -s 1 ftrunc")
			for _, name := range []string{"root", "cap"} {
				f, err := os.OpenFile(p(name), os.O_WRONLY|os.O_APPEND, 0)
				must(t, err)
				_, err = f.WriteString("x")
				must(t, err)
				must(t, f.Close())
			}
			if _, err := unix.Getxattr(p("cap"), "security.capability", make([]byte, 64)); err != unix.ENODATA {
				t.Errorf("security.capability after a write: %v, want ENODATA", err)
			}
			want := map[string]os.FileMode{
				"write": 0o777, "append": 0o777, "sgid-noexec": 0o666 | os.ModeSetgid,
				"trunc": 0o777, "ftrunc": 0o777, "root": 0o777 | os.ModeSetuid | os.ModeSetgid,
			}
			for name, w := range want {
				fi, err := os.Stat(p(name))
				must(t, err)
				if fi.Mode() != w {
					t.Errorf("%s: mode through the mount %v, want %v", name, fi.Mode(), w)
				}
				fi, err = os.Stat(filepath.Join(u.upper, name))
				must(t, err)
				if fi.Mode() != w {
					t.Errorf("%s: mode in the upper %v, want %v", name, fi.Mode(), w)
				}
			}
			if t.Failed() {
				out, _ := exec.Command("ls", "-l", u.mnt).CombinedOutput()
				fmt.Fprintf(os.Stderr, "%s", out)
			}
		})
	}
}
