package build

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitMain is the container side of Start: run as `<binary> InitCommand` with the
// spec on fd 3, already inside the new namespaces as their pid 1. It sets the
// container up and execs the command; it returns only on failure (or, with
// spec.Init, when the command exits), with the exit code to end with.
func InitMain() int {
	unix.CloseOnExec(4) // the ready pipe: closed by the exec of the command
	f := os.NewFile(3, "spec")
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return initFail(ExitSetup, fmt.Errorf("read container spec: %w", err))
	}
	var spec ProcessSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return initFail(ExitSetup, fmt.Errorf("read container spec: %w", err))
	}
	unix.Umask(0)
	if err := setupRootfs(&spec); err != nil {
		return initFail(ExitSetup, err)
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return initFail(ExitSetup, fmt.Errorf("sethostname: %w", err))
		}
	}
	unix.Umask(0o022)
	u, err := LookupUserInRoot(spec.User, "/")
	if err != nil {
		return initFail(ExitSetup, err)
	}
	if spec.Console {
		// The terminal is the user's own, as runc's fixStdioPermissions: it
		// can open it again by name ($(tty), GPG_TTY); its group is tty's.
		unix.Fchown(0, int(u.UID), -1)
	}
	env := containerEnv(spec, u)
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return initFail(ExitSetup, fmt.Errorf("create working directory: %w", err))
	}
	if err := os.Chdir(dir); err != nil {
		return initFail(ExitSetup, fmt.Errorf("chdir to working directory: %w", err))
	}
	argv0, err := lookPath(spec.Args[0], env)
	if err != nil {
		code := ExitNotFound
		if errors.Is(err, os.ErrPermission) {
			code = ExitCannotExec
		}
		return initFail(code, err)
	}
	// The command dies with the layerfs that started it (a build killed during
	// a RUN): the parent-death signal set at clone is lost on the way here
	// (seen: a RUN's command outlived a SIGKILLed build, reparented to init).
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	// The command gets its stdio and nothing else: the starter's fds that lack
	// close-on-exec (a build's own /dev/fuse, whose mount is the command's root,
	// or what layerfs itself inherited) would otherwise stay open in it. A
	// command holding the /dev/fuse of its own root keeps the connection alive
	// after the server died, and then waits on it for good (unkillable).
	CloseExtraFilesOnExec()
	// The thread that sets the parent-death signal again must be the one that
	// execs: changing credentials clears it (found by a review: a RUN as USER
	// 1000 outlived a killed build). The bounding set is per thread too: the one
	// that execs (or, with Init, forks) the command is the one limited.
	runtime.LockOSThread()
	if err := newSessionKeyring(); err != nil {
		return initFail(ExitSetup, err)
	}
	if err := limitCaps(spec.Caps); err != nil {
		return initFail(ExitSetup, err)
	}
	if err := setUlimits(spec.Ulimits); err != nil {
		return initFail(ExitSetup, err)
	}
	if spec.Init {
		return runInit(argv0, spec.Args, env, u, spec.Caps)
	}
	if err := setCredentials(u); err != nil {
		return initFail(ExitSetup, err)
	}
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if starterGone() {
		return initFail(ExitSetup, errors.New("the layerfs that started the container is gone"))
	}
	err = syscall.Exec(argv0, spec.Args, env)
	return initFail(execErrCode(err), fmt.Errorf("exec %s: %w", spec.Args[0], err))
}

// readyFD is the ready pipe while it is open: Start reads a failure's message
// from it, to tell a command that never started from one that ran.
var readyFD = 4

func initFail(code int, err error) int {
	fmt.Fprintf(os.Stderr, "layerfs: %v\n", err)
	if readyFD >= 0 {
		unix.Write(readyFD, []byte(err.Error()))
	}
	return code
}

func execErrCode(err error) int {
	if errors.Is(err, unix.ENOENT) {
		return ExitNotFound
	}
	return ExitCannotExec
}

// containerEnv is spec.Env plus what docker adds when missing: PATH, HOSTNAME,
// HOME (the user's), TERM with a terminal.
func containerEnv(spec ProcessSpec, u ExecUser) []string {
	env := append([]string(nil), spec.Env...)
	has := func(k string) bool {
		for _, e := range env {
			if strings.HasPrefix(e, k+"=") {
				return true
			}
		}
		return false
	}
	var pre []string
	if !has("PATH") {
		pre = append(pre, "PATH="+DefaultPath)
	}
	if !has("HOSTNAME") && spec.Hostname != "" {
		pre = append(pre, "HOSTNAME="+spec.Hostname)
	}
	env = append(pre, env...)
	if spec.Tty && !has("TERM") {
		env = append(env, "TERM=xterm")
	}
	if !has("HOME") {
		env = append(env, "HOME="+u.Home)
	}
	return env
}

func getenv(env []string, k string) string {
	v := ""
	for _, e := range env {
		if kk, vv, ok := strings.Cut(e, "="); ok && kk == k {
			v = vv
		}
	}
	return v
}

// lookPath finds file in the container's PATH (the process is already inside).
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", fmt.Errorf("exec: %q: %w", file, err)
		}
		return file, nil
	}
	var denied error
	for _, dir := range strings.Split(getenv(env, "PATH"), ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, file)
		err := executable(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, os.ErrPermission) && denied == nil {
			denied = fmt.Errorf("exec: %q: %w", p, err)
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return os.ErrPermission
	}
	return nil
}

// setCredentials switches the whole process to u (groups first, then gid, uid).
func setCredentials(u ExecUser) error {
	groups := make([]int, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(int(u.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(int(u.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	return nil
}

// runInit is docker's --init: fork the command, forward every signal we get to
// it, reap every child that ends up with us, and exit with the command's status.
//
// Once the command is forked, the init cuts every thread's capabilities to the
// container's (caps). A cgo-linked binary cannot (a Go process changes all of
// its threads only through AllThreadsSyscall), and its init keeps every
// capability: it is not dumpable, so no process of the container reads or
// opens anything of it through /proc, nor ptraces it, without CAP_SYS_PTRACE;
// run refuses --init with that capability then, unless --privileged (found by a
// review: with it, the container could take the init over).
func runInit(argv0 string, args, env []string, u ExecUser, caps []string) int {
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	cwd, _ := os.Getwd()
	groups := make([]uint32, len(u.Groups))
	copy(groups, u.Groups)
	// CAP_KILL stays for the forwarding of signals to a command of another
	// user (its pid namespace is all the init sees).
	capped := capAllThreads(caps, true, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_KILL)
	if capped != nil && !errors.Is(capped, syscall.ENOTSUP) {
		return initFail(ExitSetup, capped)
	}
	pid, err := syscall.ForkExec(argv0, args, &syscall.ProcAttr{
		Dir:   cwd,
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: groups},
		},
	})
	if err != nil {
		return initFail(execErrCode(err), fmt.Errorf("exec %s: %w", args[0], err))
	}
	if capped == nil {
		if err := capAllThreads(caps, false, unix.CAP_KILL); err != nil {
			syscall.Kill(pid, syscall.SIGKILL)
			return initFail(ExitSetup, err)
		}
	}
	unix.Close(readyFD) // ready: the command runs
	readyFD = -1
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGCHLD {
				break
			}
			if s == unix.SIGURG { // the Go runtime's preemption signal
				continue
			}
			syscall.Kill(pid, s.(syscall.Signal))
			continue
		}
		for {
			var st syscall.WaitStatus
			got, err := syscall.Wait4(-1, &st, syscall.WNOHANG, nil)
			if err != nil || got <= 0 {
				break
			}
			if got == pid {
				return exitCode(st)
			}
		}
	}
}

// CloseExtraFilesOnExec marks every fd above stderr close-on-exec.
func CloseExtraFilesOnExec() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

// starterGone reports whether the process that started the container has died
// (before the parent-death signal was set): its end of the ready pipe (fd 4) is
// closed then. getppid cannot tell: it is 0 inside the pid namespace.
func starterGone() bool {
	fds := []unix.PollFd{{Fd: 4}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0
}
