package integration

import (
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// injectorSrc pushes a shell command into the terminal on each of its fds 0, 1
// and 2 (TIOCSTI) and says, on stderr, what each attempt gave.
const injectorSrc = `package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	for fd := 0; fd < 3; fd++ {
		var err error = syscall.Errno(0)
		for _, c := range []byte("echo INJECTED\n") {
			if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCSTI, uintptr(unsafe.Pointer(&c))); e != 0 {
				err = e
				break
			}
		}
		fmt.Fprintf(os.Stderr, "fd%d=%d\n", fd, err)
	}
}
`

// TestExecTerminal: exec never gives the container the caller's terminal. It
// did (fds 0-2 the caller's, in the caller's session), and a process in the
// container typed commands into the host shell through TIOCSTI. Without -t
// the process has pipes and a session of its own; with -t a pty of the
// container's own devpts, as docker's and podman's exec.
func TestExecTerminal(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	inj := filepath.Join(t.TempDir(), "inj")
	buildGoProgram(t, inj, injectorSrc)
	mustRun(t, "run", "-d", "--name", "xt", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "xt") })
	mustRun(t, "cp", inj, "xt:/inj")
	root := rootFor(t) // the subtests' own would be others

	for _, flags := range [][]string{nil, {"-t"}} {
		t.Run("exec"+strings.Join(flags, ""), func(t *testing.T) {
			// The caller's terminal: the controlling one of exec's session, in
			// raw mode so that anything pushed into it is readable at once.
			ptm, pts, err := openPty()
			if err != nil {
				t.Fatal(err)
			}
			defer ptm.Close()
			defer pts.Close()
			tio, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}
			tio.Lflag &^= unix.ICANON | unix.ECHO
			if err := unix.IoctlSetTermios(int(pts.Fd()), unix.TCSETS, tio); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{"--root", root, "exec"}, flags...), "xt", "/inj")
			cmd := exec.Command(layerfsBin, args...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
			var out bytes.Buffer
			copied := make(chan struct{})
			go func() { io.Copy(&out, ptm); close(copied) }()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if code := exitCodeOf(t, cmd); code != 0 {
				pts.Close()
				ptm.SetReadDeadline(time.Now().Add(time.Second))
				<-copied
				t.Fatalf("exec %v /inj: exit %d: %q", flags, code, out.String())
			}
			time.Sleep(200 * time.Millisecond) // the output reaches the master
			n, err := unix.IoctlGetInt(int(pts.Fd()), unix.TIOCINQ)
			if err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				buf := make([]byte, n)
				pts.Read(buf)
				t.Errorf("exec %v: the container pushed %q into the caller's terminal", flags, buf)
			}
			pts.Close()
			ptm.SetReadDeadline(time.Now().Add(5 * time.Second))
			<-copied
			got := strings.ReplaceAll(out.String(), "\r", "")
			if flags == nil { // pipes: no terminal at all (ENOTTY=25, EPERM=1)
				for _, fd := range []string{"fd0=", "fd1=", "fd2="} {
					if !strings.Contains(got, fd+"25\n") && !strings.Contains(got, fd+"1\n") {
						t.Errorf("exec /inj: %q, want TIOCSTI refused on every fd", got)
						break
					}
				}
			} else if !strings.Contains(got, "fd0=0\n") { // its own pty: it may type into that
				t.Errorf("exec -t /inj: %q, want TIOCSTI to reach its own terminal", got)
			}
		})
	}

	// exec -t's terminal is one of the container's: ttyname finds it there
	// (it printed "not a tty" on the host's), and TERM is docker's xterm
	// unless given.
	if got := mustRun(t, "exec", "-t", "xt", "tty"); !strings.HasPrefix(got, "/dev/pts/") {
		t.Errorf("exec -t xt tty = %q, want a /dev/pts/N of the container", got)
	}
	if got := mustRun(t, "exec", "-t", "xt", "sh", "-c", "echo $TERM"); got != "xterm\r\n" {
		t.Errorf("exec -t TERM = %q, want xterm", got)
	}
	if got := mustRun(t, "exec", "-t", "-e", "TERM=vt100", "xt", "sh", "-c", "echo $TERM"); got != "vt100\r\n" {
		t.Errorf("exec -t -e TERM=vt100: TERM = %q", got)
	}
	if got := mustRun(t, "exec", "xt", "sh", "-c", "echo ${TERM-unset}"); got != "unset\n" {
		t.Errorf("exec without -t: TERM = %q, want unset", got)
	}

	// The pipes keep the streams apart, take -i's stdin to its end, and a
	// process left in the background holding them does not hold exec.
	if r := run(t, "exec", "xt", "sh", "-c", "echo out; echo err >&2; exit 3"); r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("exec with both streams: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	c := exec.Command(layerfsBin, "--root", rootFor(t), "exec", "-i", "xt", "cat")
	c.Stdin = strings.NewReader("in\n")
	if out, err := c.Output(); err != nil || string(out) != "in\n" {
		t.Errorf("exec -i cat: %q, %v", out, err)
	}
	start := time.Now()
	mustRun(t, "exec", "xt", "sh", "-c", "sleep 600 &")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("exec of a command that left sleep 600 holding its stdout took %v", took)
	}
}

// TestExecSignals: exec passes the signals it gets on to its command, which
// is in a session of its own now (^C at the caller's terminal reaches exec only).
func TestExecSignals(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "-d", "--name", "xs", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "xs") })
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(layerfsBin, "--root", rootFor(t), "exec", "xs", "sh", "-c", "echo up; exec sleep 600")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3)
		if _, err := io.ReadFull(stdout, buf); err != nil {
			t.Fatal(err)
		}
		cmd.Process.Signal(sig)
		if code := exitCodeOf(t, cmd); code != 128+int(sig) {
			t.Errorf("exec sleep, then %v: exit %d, want %d", sig, code, 128+int(sig))
		}
	}
}

// TestExecWorkdirMissing: a missing -w dir is named, with runc's exit code
// 127 (podman's and docker's); it was "fork/exec /bin/pwd: no such file or
// directory", exit 1, as if the command were missing.
func TestExecWorkdirMissing(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "run", "-d", "--name", "xw", "busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "xw") })
	r := run(t, "exec", "-w", "/missing", "xw", "pwd")
	if r.Code != 127 || r.Stderr != "Error: exec: chdir to cwd (\"/missing\"): no such file or directory\n" {
		t.Errorf("exec -w /missing: exit %d, %q", r.Code, r.Stderr)
	}
	if got := mustRun(t, "exec", "-w", "/tmp", "-u", "nobody", "xw", "pwd"); got != "/tmp\n" {
		t.Errorf("exec -w /tmp -u nobody pwd = %q", got)
	}
}
