package fs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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

// asUser runs f on a thread of its own with uid and gid's credentials and no
// capabilities, as a process of that user would run it: a raw setresuid changes
// only the calling thread, which ends with f (it is never unlocked).
func asUser(t *testing.T, uid, gid int, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		for _, c := range [][4]uintptr{{unix.SYS_SETGROUPS, 0, 0, 0}, {unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)},
			{unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)}} {
			if _, _, e := unix.RawSyscall(c[0], c[1], c[2], c[3]); e != 0 {
				errc <- fmt.Errorf("syscall %d: %v", c[0], e)
				return
			}
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Errorf("as uid %d: %v", uid, err)
	}
}

// TestKillSetidWriters: what a write, fallocate or copy_file_range by a caller
// without CAP_FSETID does to set-id bits depends on their order with a chmod that
// sets them while the file is open; the oracle is the same sequence on the native
// filesystem the test's dirs live on. Passthrough writes never reach the server:
// there the bits go at open, or at close when they were set after the open and
// the file was written since (killpriv.go).
func TestKillSetidWriters(t *testing.T) {
	testenv.RequireRoot(t)
	const nobody = 65534
	setup := func(d string) {
		t.Helper()
		for name, mode := range map[string]os.FileMode{"late": 0o666, "late-nowrite": 0o666, "late-before": 0o666,
			"inst": 0o644, "falloc": 0o777 | os.ModeSetuid | os.ModeSetgid, "punch": 0o777 | os.ModeSetuid,
			"cfr": 0o777 | os.ModeSetuid | os.ModeSetgid, "open-only": 0o777 | os.ModeSetuid, "src": 0o644} {
			p := filepath.Join(d, name)
			must(t, os.WriteFile(p, bytes.Repeat([]byte("d"), 8192), 0o644))
			must(t, os.Chmod(p, mode))
		}
		must(t, os.Chown(filepath.Join(d, "inst"), nobody, nobody))
		walkable(t, d)
	}
	// run does the sequences in dir d and returns the modes they leave.
	run := func(d string) map[string]os.FileMode {
		t.Helper()
		p := func(s string) string { return filepath.Join(d, s) }
		files := map[string]*os.File{}
		open := func(name string, flag int) func() error {
			return func() (err error) {
				files[name], err = os.OpenFile(p(name), flag, 0)
				return err
			}
		}
		write := func(name string) func() error {
			return func() error { _, err := files[name].WriteAt([]byte("x"), 1); return err }
		}
		closeF := func(name string) func() error { return func() error { return files[name].Close() } }
		for _, name := range []string{"late", "late-nowrite", "late-before"} {
			asUser(t, nobody, nobody, open(name, os.O_WRONLY))
		}
		asUser(t, nobody, nobody, write("late-before"))
		for _, name := range []string{"late", "late-nowrite", "late-before"} {
			must(t, os.Chmod(p(name), 0o777|os.ModeSetuid|os.ModeSetgid))
		}
		asUser(t, nobody, nobody, write("late"))
		for _, name := range []string{"late", "late-nowrite", "late-before"} {
			asUser(t, nobody, nobody, closeF(name))
		}
		asUser(t, nobody, nobody, func() error {
			f, err := os.OpenFile(p("inst"), os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteString("new"); err != nil {
				return err
			}
			return f.Chmod(0o755 | os.ModeSetuid)
		})
		asUser(t, nobody, nobody, func() error {
			f, err := os.OpenFile(p("falloc"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			return unix.Fallocate(int(f.Fd()), 0, 0, 1<<16)
		})
		asUser(t, nobody, nobody, func() error {
			f, err := os.OpenFile(p("punch"), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
		})
		asUser(t, nobody, nobody, func() error {
			src, err := os.Open(p("src"))
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := os.OpenFile(p("cfr"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer dst.Close()
			_, err = unix.CopyFileRange(int(src.Fd()), nil, int(dst.Fd()), nil, 100, 0)
			return err
		})
		asUser(t, nobody, nobody, func() error {
			f, err := os.OpenFile(p("open-only"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			return f.Close()
		})
		modes := map[string]os.FileMode{}
		ents, err := os.ReadDir(d)
		must(t, err)
		for _, e := range ents {
			fi, err := os.Stat(p(e.Name()))
			must(t, err)
			modes[e.Name()] = fi.Mode()
		}
		return modes
	}
	native := t.TempDir()
	setup(native)
	want := run(native)
	t.Logf("native: %v", want)
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
			lower := t.TempDir()
			setup(lower)
			must(t, os.WriteFile(filepath.Join(lower, "late-pause"), []byte("data"), 0o666))
			must(t, os.Chmod(filepath.Join(lower, "late-pause"), 0o666))
			u := mountUnionMode(t, cow.FormatOCI, pt, lower)
			if pt && !u.m.fs.passthrough.Load() {
				t.Skip("no FUSE passthrough here")
			}
			walkable(t, u.mnt)
			got := run(u.mnt)
			// A commit pauses the mount: what it takes must not have set-id bits
			// that the writes since they were set would have cleared.
			var f *os.File
			asUser(t, nobody, nobody, func() (err error) {
				f, err = os.OpenFile(filepath.Join(u.mnt, "late-pause"), os.O_WRONLY, 0)
				return err
			})
			if f == nil {
				return
			}
			must(t, os.Chmod(filepath.Join(u.mnt, "late-pause"), 0o777|os.ModeSetuid|os.ModeSetgid))
			asUser(t, nobody, nobody, func() error { _, err := f.WriteAt([]byte("x"), 1); return err })
			must(t, u.m.Pause(context.Background(), os.Getpid()))
			fi, err := os.Stat(filepath.Join(u.upper, "late-pause"))
			u.m.Resume()
			must(t, err)
			if fi.Mode() != 0o777 {
				t.Errorf("late-pause: mode in the upper at a pause %v, want %v", fi.Mode(), os.FileMode(0o777))
			}
			asUser(t, nobody, nobody, f.Close)
			for name, w := range want {
				if pt && name == "open-only" {
					w &^= os.ModeSetuid // passthrough: cleared at an unprivileged write open
				}
				if got[name] != w {
					t.Errorf("%s: mode %v, want %v", name, got[name], w)
				}
			}
		})
	}
}

// walkable lets every user walk to d: d and the dirs above it up to the temp dir
// get mode 0755.
func walkable(t *testing.T, d string) {
	t.Helper()
	for ; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		must(t, os.Chmod(d, 0o755))
	}
}
