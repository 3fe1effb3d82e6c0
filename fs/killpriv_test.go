package fs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
				cmd := inMount(u.mnt, script)
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

// userProc is a child process (this test binary, see TestMain) running as another
// user without capabilities, doing file operations one at a time on request, so
// a test can interleave them with its own. (Changing one thread's credentials in
// this process is not safe: the Go runtime may run that goroutine on the main
// thread, which then never ends.)
type userProc struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startUser(t *testing.T, uid, gid int) *userProc {
	t.Helper()
	// A copy of this binary the user may run: go test builds it in a private dir.
	exe := filepath.Join(t.TempDir(), "fileops")
	b, err := os.ReadFile(os.Args[0])
	must(t, err)
	must(t, os.WriteFile(exe, b, 0o755))
	walkable(t, filepath.Dir(exe))
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "LAYERFS_TEST_FILEOPS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	must(t, err)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	u := &userProc{t: t, cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return u
}

// do runs one operation (see fileOps) and fails the test if it fails.
func (u *userProc) do(op string, args ...any) {
	u.t.Helper()
	if reply := u.try(op, args...); reply != "ok\n" {
		u.t.Errorf("as uid %d: %s %v: %q", u.cmd.SysProcAttr.Credential.Uid, op, args, reply)
	}
}

// try runs one operation and returns its reply ("ok\n" or the error).
func (u *userProc) try(op string, args ...any) string {
	u.t.Helper()
	line := op
	for _, a := range args {
		line += " " + fmt.Sprint(a)
	}
	if _, err := fmt.Fprintln(u.in, line); err != nil {
		u.t.Fatalf("%s: %v", line, err)
	}
	reply, err := u.out.ReadString('\n')
	if err != nil {
		u.t.Fatalf("%s: %v", line, err)
	}
	return reply
}

// fileOps serves userProc requests on stdin, one per line, answering "ok" or the
// error: open PATH FLAGS, write PATH OFF (one byte), close PATH, fchmod PATH MODE,
// fallocate PATH MODE OFF LEN, copy SRC DST N (copy_file_range between open files).
func fileOps() int {
	files := map[string]*os.File{}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		num := func(i int, base int) int64 {
			n, _ := strconv.ParseInt(f[i], base, 64)
			return n
		}
		var err error
		switch f[0] {
		case "open":
			files[f[1]], err = os.OpenFile(f[1], int(num(2, 10)), 0)
		case "write":
			_, err = files[f[1]].WriteAt([]byte("x"), num(2, 10))
		case "close":
			err = files[f[1]].Close()
		case "fchown":
			err = unix.Fchown(int(files[f[1]].Fd()), -1, -1)
		case "fchmod":
			err = unix.Fchmod(int(files[f[1]].Fd()), uint32(num(2, 8)))
		case "fallocate":
			err = unix.Fallocate(int(files[f[1]].Fd()), uint32(num(2, 10)), num(3, 10), num(4, 10))
		case "copy":
			_, err = unix.CopyFileRange(int(files[f[1]].Fd()), nil, int(files[f[2]].Fd()), nil, int(num(3, 10)), 0)
		default:
			err = fmt.Errorf("unknown op %q", f[0])
		}
		if err != nil {
			fmt.Println(strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Println("ok")
		}
	}
	return 0
}

// TestKillSetidWriters: what a write, fallocate or copy_file_range by a caller
// without CAP_FSETID does to set-id bits depends on their order with a chmod that
// sets them while the file is open; the oracle is the same sequence on the native
// filesystem the test's dirs live on. Passthrough writes never reach the server:
// it clears the bits on the kernel's empty SETATTR before such a write
// (killpriv.go). A commit's pause must find them cleared too.
func TestKillSetidWriters(t *testing.T) {
	testenv.RequireRoot(t)
	const nobody = 65534
	setup := func(d string) {
		t.Helper()
		for name, mode := range map[string]os.FileMode{"late": 0o666, "late-nowrite": 0o666, "late-before": 0o666,
			"inst": 0o644, "falloc": 0o777 | os.ModeSetuid | os.ModeSetgid, "punch": 0o777 | os.ModeSetuid,
			"cfr": 0o777 | os.ModeSetuid | os.ModeSetgid, "open-only": 0o777 | os.ModeSetuid, "src": 0o644,
			"chown-reader": 0o755 | os.ModeSetuid | os.ModeSetgid, "chmod-ro": 0o666, "chmod-ro-fa": 0o666} {
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
		u := startUser(t, nobody, nobody)
		for _, name := range []string{"late", "late-nowrite", "late-before"} {
			u.do("open", p(name), os.O_WRONLY)
		}
		u.do("write", p("late-before"), 1)
		for _, name := range []string{"late", "late-nowrite", "late-before"} {
			must(t, os.Chmod(p(name), 0o777|os.ModeSetuid|os.ModeSetgid))
		}
		u.do("write", p("late"), 1)
		for _, name := range []string{"late", "late-nowrite", "late-before"} {
			u.do("close", p(name))
		}
		u.do("open", p("inst"), os.O_WRONLY|os.O_TRUNC)
		u.do("write", p("inst"), 0)
		u.do("fchmod", p("inst"), "4755")
		u.do("close", p("inst"))
		u.do("open", p("falloc"), os.O_RDWR)
		u.do("fallocate", p("falloc"), 0, 0, 1<<16)
		u.do("close", p("falloc"))
		u.do("open", p("punch"), os.O_RDWR)
		u.do("fallocate", p("punch"), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
		u.do("close", p("punch"))
		u.do("open", p("src"), os.O_RDONLY)
		u.do("open", p("cfr"), os.O_WRONLY)
		u.do("copy", p("src"), p("cfr"), 100)
		u.do("close", p("cfr"))
		u.do("close", p("src"))
		u.do("open", p("open-only"), os.O_WRONLY)
		u.do("close", p("open-only"))
		// Opened for writing while the mode let it, then made setuid and
		// read-only for the writer: its writes still count (checked at open).
		u.do("open", p("chmod-ro"), os.O_WRONLY)
		u.do("open", p("chmod-ro-fa"), os.O_RDWR)
		must(t, os.Chmod(p("chmod-ro"), 0o755|os.ModeSetuid))
		must(t, os.Chmod(p("chmod-ro-fa"), 0o755|os.ModeSetuid))
		u.do("write", p("chmod-ro"), 1)
		u.do("fallocate", p("chmod-ro-fa"), 0, 0, 1<<16)
		u.do("close", p("chmod-ro"))
		u.do("close", p("chmod-ro-fa"))
		// chown(fd, -1, -1) by a mere reader: refused (EPERM) by ext4; the same
		// empty SETATTR a writer's kill sends must not clear the bits here either.
		u.do("open", p("chown-reader"), os.O_RDONLY)
		u.try("fchown", p("chown-reader"))
		u.do("close", p("chown-reader"))
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
			um := mountUnionMode(t, cow.FormatOCI, pt, lower)
			if pt && !um.m.fs.passthrough.Load() {
				t.Skip("no FUSE passthrough here")
			}
			walkable(t, um.mnt)
			got := run(um.mnt)
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s: mode %v, want %v", name, got[name], w)
				}
			}
			// A commit pauses the mount: what it takes must not have set-id bits
			// that the writes since they were set would have cleared.
			lp := filepath.Join(um.mnt, "late-pause")
			u := startUser(t, nobody, nobody)
			u.do("open", lp, os.O_WRONLY)
			must(t, os.Chmod(lp, 0o777|os.ModeSetuid|os.ModeSetgid))
			u.do("write", lp, 1)
			must(t, um.m.Pause(context.Background(), os.Getpid()))
			fi, err := os.Stat(filepath.Join(um.upper, "late-pause"))
			um.m.Resume()
			must(t, err)
			if fi.Mode() != 0o777 {
				t.Errorf("late-pause: mode in the upper at a pause %v, want %v", fi.Mode(), os.FileMode(0o777))
			}
			u.do("close", lp)
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

// TestCreateKeepsSetidMode: set-id bits asked for at creation (open O_CREAT,
// mknod, mkfifo, O_TMPFILE) stay, although the server gives the new entry its
// caller's owner afterwards (a chown clears them); an O_TMPFILE file in a setgid
// dir takes the dir's group. The oracle is the native filesystem.
func TestCreateKeepsSetidMode(t *testing.T) {
	testenv.RequireRoot(t)
	run := func(d string) map[string]string {
		t.Helper()
		must(t, os.Mkdir(filepath.Join(d, "sg"), 0o777))
		must(t, os.Chown(filepath.Join(d, "sg"), 0, 1234))
		must(t, os.Chmod(filepath.Join(d, "sg"), 0o777|os.ModeSetgid))
		old := unix.Umask(0)
		defer unix.Umask(old)
		fd, err := unix.Open(filepath.Join(d, "creat"), unix.O_CREAT|unix.O_WRONLY, 0o4755)
		must(t, err)
		unix.Close(fd)
		must(t, unix.Mknod(filepath.Join(d, "mknod"), unix.S_IFREG|0o2755, 0))
		must(t, unix.Mkfifo(filepath.Join(d, "fifo"), 0o4644))
		for _, name := range []string{"tmp", "sg/tmp"} {
			fd, err := unix.Open(filepath.Dir(filepath.Join(d, name)), unix.O_TMPFILE|unix.O_WRONLY, 0o4755)
			must(t, err)
			must(t, unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, filepath.Join(d, name), unix.AT_SYMLINK_FOLLOW))
			unix.Close(fd)
		}
		got := map[string]string{}
		for _, name := range []string{"creat", "mknod", "fifo", "tmp", "sg/tmp"} {
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(d, name), &st))
			got[name] = fmt.Sprintf("%o %d", st.Mode, st.Gid)
		}
		return got
	}
	want := run(t.TempDir())
	for _, pt := range []bool{false, true} {
		t.Run(map[bool]string{false: "noopen", true: "passthrough"}[pt], func(t *testing.T) {
			u := mountUnionMode(t, cow.FormatOCI, pt, t.TempDir())
			got := run(u.mnt)
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s: mode, gid %s, want %s", name, got[name], w)
				}
			}
		})
	}
}

// TestKillSetidRebasedWriter: a writer without CAP_FSETID keeps its fd across a
// commit --rebase; the file is made setuid through its path meanwhile (the new
// inode), and the writer writes again. ext4 clears the bit at that write; here the
// write goes through the old inode, whose cached mode never had the bit, so the
// data must not land in a setuid file.
func TestKillSetidRebasedWriter(t *testing.T) {
	testenv.RequireRoot(t)
	// cached: in passthrough mode, a write open made while another open of the
	// file is served by this process is served too (no passthrough); after the
	// Rebase it follows the node to the committed copy, and its writes go there
	// through this process, which the kernel asks to clear set-id bits on every
	// unprivileged write it sends.
	for _, mode := range []string{"noopen", "passthrough", "cached"} {
		t.Run(mode, func(t *testing.T) {
			pt := mode != "noopen"
			lower := t.TempDir()
			must(t, os.WriteFile(filepath.Join(lower, "f"), []byte("0123456789"), 0o666))
			must(t, os.Chmod(filepath.Join(lower, "f"), 0o666))
			u := mountUnionMode(t, cow.FormatOCI, pt, lower)
			walkable(t, u.mnt)
			p := filepath.Join(u.mnt, "f")
			if mode == "cached" {
				r, err := os.Open(p) // a small layer file: served, not passed through
				must(t, err)
				defer r.Close()
			}
			nb := startUser(t, 65534, 65534)
			nb.do("open", p, os.O_WRONLY)
			nb.do("write", p, 1)
			commitRebase(t, u, []string{lower})
			must(t, os.Chmod(p, 0o777|os.ModeSetuid))
			nb.do("write", p, 2)
			nb.do("close", p)
			deadline := time.Now().Add(5 * time.Second)
			for {
				b, _ := os.ReadFile(filepath.Join(u.upper, "f"))
				fi, err := os.Stat(filepath.Join(u.upper, "f"))
				if err == nil && len(b) > 2 && b[2] == 'x' { // the landed write
					if fi.Mode()&os.ModeSetuid != 0 {
						t.Errorf("the writer's data landed in a setuid file (mode %v); ext4 clears the bit", fi.Mode())
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the write never landed: %q", b)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// aclMayWrite follows POSIX.1e: owner entry, then named users within the mask,
// then any matching group entry within the mask, then other.
func TestACLMayWrite(t *testing.T) {
	groups := map[uint32]bool{100: true, 7: true} // the caller's groups
	in := func(g uint32) bool { return groups[g] }
	for _, c := range []struct {
		acl        string
		uid, owner uint32
		group      uint32
		want       bool
	}{
		{"u::rw-,g::r--,o::---", 5, 5, 0, true},                         // owner
		{"u::r--,u:5:rw-,g::r--,m::rw-,o::rw-", 5, 5, 0, false},         // the owner entry wins
		{"u::rw-,u:5:rw-,g::r--,m::rw-,o::---", 5, 1, 0, true},          // named user
		{"u::rw-,u:5:rw-,g::r--,m::r--,o::---", 5, 1, 0, false},         // masked
		{"u::rw-,g::r--,g:7:rw-,m::rw-,o::rw-", 5, 1, 100, true},        // a named group grants
		{"u::rw-,g::r--,m::rw-,o::rw-", 5, 1, 100, false},               // the owning group (r) matches: not other
		{"u::rw-,g::rw-,m::r--,o::rw-", 5, 1, 100, false},               // owning group masked
		{"u::rw-,g::r--,g:9:rw-,m::rw-,o::rw-", 5, 1, 0, true},          // no group matches: other
		{"u::rw-,u:6:rw-,g::r--,g:8:rw-,m::rw-,o::r--", 5, 1, 0, false}, // other, read only
	} {
		got, valid := aclMayWrite(encodeACL(t, c.acl), c.uid, c.owner, c.group, in)
		if !valid || got != c.want {
			t.Errorf("uid %d, owner %d:%d, %s: may write %v (valid %v), want %v", c.uid, c.owner, c.group, c.acl, got, valid, c.want)
		}
	}
	if _, valid := aclMayWrite([]byte{1, 2, 3}, 0, 0, 0, in); valid {
		t.Error("a value that is no ACL was taken for one")
	}
}
