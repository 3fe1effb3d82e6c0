package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRunOwnSession: a container without -t is not in the caller's session, so
// its caller's terminal is not its controlling terminal: /dev/tty fails
// (ENXIO), as under runc. It was the caller's, and a container could push input
// into it (TIOCSTI), which the caller's shell then ran (a security review).
func TestRunOwnSession(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	pts := openTestPty(t)
	// layerfs runs in a session whose controlling terminal is the pty, its
	// stdin on it, as from an interactive shell.
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "run", "--rm", "busybox", "sh", "-c",
		"if (: <>/dev/tty) 2>/dev/null; then echo own-tty; else echo no-tty; fi; tr -d '\\n' </proc/self/stat | cut -d' ' -f6,7")
	var stdout bytes.Buffer
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v; %q %q", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || lines[0] != "no-tty" {
		t.Errorf("a container without -t opened its caller's terminal as /dev/tty: %q", stdout.String())
	}
	// /proc/self/stat's session and tty_nr: a session of its own, no terminal.
	if f := strings.Fields(lines[len(lines)-1]); len(f) != 2 || f[1] != "0" {
		t.Errorf("the container's session and tty_nr: %q, want no controlling terminal", lines[len(lines)-1])
	}
}

// openTestPty opens a pseudo-terminal whose output is drained, closed with t,
// and returns its slave side (skipping t where there is none).
func openTestPty(t *testing.T) *os.File {
	t.Helper()
	ptmx, pts := openTestPtyPair(t)
	go io.Copy(io.Discard, ptmx)
	return pts
}

// openTestPtyPair opens a pseudo-terminal, closed with t, and returns its master
// and slave sides (skipping t where there is none).
func openTestPtyPair(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptmx, pts
}

// TestRunOwnSessionKeyring: a container process (run, and exec) has a session
// keyring of its own, as runc gives it: it shared the caller's and read the
// keys the caller's session had added (a security review). A static probe,
// given to the containers as a volume, looks for a key the caller's session
// added (/proc/keys is masked in containers).
func TestRunOwnSessionKeyring(t *testing.T) {
	requireRunner(t)
	if _, err := exec.LookPath("keyctl"); err != nil {
		t.Skip("no keyctl (keyutils)")
	}
	importRunner(t, "busybox", `CMD ["sh"]`)
	dir := t.TempDir()
	src := filepath.Join(dir, "keyprobe.go")
	if err := os.WriteFile(src, []byte(keyProbe), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "keyprobe"), src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, out)
	}
	script := `set -e
keyctl add user layerfs-test-key secret @s >/dev/null
"$2/keyprobe"
"$0" --root "$1" run -d --name keys -v "$2:/p:ro" busybox sleep 60 >/dev/null
"$0" --root "$1" run --rm -v "$2:/p:ro" busybox /p/keyprobe
"$0" --root "$1" exec keys /p/keyprobe
`
	t.Cleanup(func() { run(t, "rm", "-f", "keys") })
	out, err := exec.Command("keyctl", "session", "-", "sh", "-c", script, layerfsBin, rootFor(t), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("keyctl session: %v\n%s", err, out)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		if l == "found" || l == "not found" {
			got = append(got, l)
		}
	}
	if strings.Join(got, ", ") != "found, not found, not found" {
		t.Errorf("a key of the caller's session, looked for by the caller, run, exec: %q, want found, not found, not found\n%s", got, out)
	}
}

// keyProbe looks for the user key "layerfs-test-key" in the keyrings of its
// session (KEYCTL_SEARCH of KEY_SPEC_SESSION_KEYRING).
const keyProbe = `package main

import (
	"fmt"
	"syscall"
	"unsafe"
)

func main() {
	typ, _ := syscall.BytePtrFromString("user")
	desc, _ := syscall.BytePtrFromString("layerfs-test-key")
	const keyctlSearch = 10
	sessionKeyring := int64(-3)
	_, _, e := syscall.Syscall6(syscall.SYS_KEYCTL, keyctlSearch, uintptr(sessionKeyring), uintptr(unsafe.Pointer(typ)), uintptr(unsafe.Pointer(desc)), 0, 0)
	if e != 0 {
		fmt.Println("not found")
		return
	}
	fmt.Println("found")
}
`

// TestRunInteractiveFromTerminal: run -i without -t from a terminal gives the
// container a pipe that layerfs fills, as docker's client does: it was the
// caller's terminal itself (`[ -t 0 ]` true), which the container read on
// while layerfs was stopped (^Z), taking what was typed to the shell. What is
// typed still reaches it, and ^D ends its input.
func TestRunInteractiveFromTerminal(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ptmx, pts := openTestPtyPair(t)
	cmd := exec.Command(layerfsBin, "--root", rootFor(t), "run", "--rm", "-i", "busybox", "sh", "-c",
		"if [ -t 0 ]; then echo tty; else echo pipe; fi; read line; echo got $line")
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cmd.Start())
	_, err := ptmx.Write([]byte("hello\n"))
	must(err)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run -i: %v; %q %q", err, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("run -i did not end: %q %q", stdout.String(), stderr.String())
	}
	if got := stdout.String(); got != "pipe\ngot hello\n" {
		t.Errorf("run -i from a terminal: %q, want the input through a pipe", got)
	}
}
