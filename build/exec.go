package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecSpec describes a process to start in a running container.
type ExecSpec struct {
	Pid int // the container's pid 1, as the host sees it
	// Pidfd, if not negative, is a pidfd of Pid the caller opened and checked
	// is the container's: the namespaces are joined through it, so a pid
	// reused after pid 1 exited is never joined. (0 is no pidfd: a zero
	// value means none.)
	Pidfd int
	Args  []string // argv; argv[0] is looked up in the container's PATH
	Env   []string
	Dir   string // "" is /
	User  string // docker's USER syntax
	// Caps the process may have (nil: DefaultCaps; [AllCaps]: every one), as
	// ProcessSpec.Caps.
	Caps []string
	// Started, if set, is called once the process runs (exec -d returns then).
	Started func()
	// Tty: the process's stdio is a new pty of the container's devpts, and
	// its controlling terminal; Stdin (if any) is copied into it and its
	// output to Stdout. A Stdin that is a terminal is raw meanwhile.
	Tty bool

	// Stdin is copied to the process through a pipe (nil: /dev/null); what it
	// writes is copied to Stdout and Stderr (nil: discarded), from two
	// goroutines unless they are one open *os.File. The process never gets
	// these files themselves.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exec runs a process in the running container whose pid 1 is spec.Pid and
// returns its exit code (128+N for a signal N). A command that cannot be found or
// run is an error with docker's exit code (127, 126) beside it.
//
// The process is in a session of its own, so no terminal of the caller's is
// its controlling one, and its stdio is pipes or a pty (see ExecSpec.Tty and
// execStdio); the signals the caller gets are passed on to it, as run does.
//
// The process joins the container's pid, uts, ipc, network and mount namespaces
// (setns on a locked thread, which the fork inherits; the thread first stops
// sharing its root and cwd with the others, which a mount namespace change
// needs) and has the container's root. In the container's own mount namespace
// its setuid programs and file capabilities work (the kernel's mnt_may_suid)
// and /proc/self/mountinfo lists its mounts; chrooted into /proc/<pid>/root
// from the host's, as before, they did not.
func Exec(ctx context.Context, spec ExecSpec) (int, error) {
	if len(spec.Args) == 0 {
		return 0, errors.New("exec: no command")
	}
	root := fmt.Sprintf("/proc/%d/root", spec.Pid)
	u, err := LookupUserInRoot(spec.User, root)
	if err != nil {
		return 0, err
	}
	env := spec.Env
	if getenv(env, "PATH") == "" {
		env = append([]string{"PATH=" + DefaultPath}, env...)
	}
	if getenv(env, "HOME") == "" {
		env = append(env, "HOME="+u.Home)
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	argv0, err := lookPathInRoot(root, spec.Args[0], env)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return ExitCannotExec, err
		}
		return ExitNotFound, err
	}

	// Only stdio reaches the process: fds the caller left open without
	// close-on-exec (a shell's 9</work) would hand the container host files
	// and dirs (runc's CVE-2024-21626 pattern).
	CloseExtraFilesOnExec()
	var stdio execStdio
	defer stdio.close()
	cmd := &exec.Cmd{
		Path: argv0, Args: spec.Args, Env: env,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: append([]uint32(nil), u.Groups...)},
			Setsid:     true,
		},
	}
	if !spec.Tty {
		if cmd.Stdin, cmd.Stdout, cmd.Stderr, err = stdio.pipes(spec); err != nil {
			return 0, fmt.Errorf("exec: %w", err)
		}
	}
	// Every signal is passed on, SIGINT with a pty too (docker's sig-proxy):
	// with the caller's terminal raw, one is only what someone sent exec.
	signals := notifySignals(true)
	defer signals.stop()
	type result struct {
		code int
		err  error
	}
	started := make(chan result, 1)
	go func() {
		// The thread keeps the container's namespaces: never unlocked, so it exits
		// with this goroutine instead of going back to the scheduler. The
		// process outlives it (a child of the thread group, not of the thread).
		runtime.LockOSThread()
		code, err := startInContainer(spec, dir, cmd, &stdio)
		started <- result{code, err}
	}()
	if r := <-started; r.err != nil {
		return r.code, r.err
	}
	stdio.started()
	signals.forward(cmd.Process, &stdio.ttyRelay)
	if spec.Tty {
		stdio.attachPty(spec.Stdin, spec.Stdout)
	}
	if spec.Started != nil {
		spec.Started()
	}
	cmd.Wait()
	st, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return exitCode(st), nil
}

// startInContainer starts cmd from the calling thread, locked and never to run
// anything else, once it is in spec's container: in its namespaces and root,
// in dir, with the pty (spec.Tty) opened there and spec.Caps at most.
func startInContainer(spec ExecSpec, dir string, cmd *exec.Cmd, stdio *execStdio) (int, error) {
	joined := false
	if spec.Pidfd > 0 {
		err := enterByPidfd(spec.Pid, spec.Pidfd)
		if err != nil && !errors.Is(err, errNoPidfdSetns) {
			return 0, fmt.Errorf("exec: join the container: %w", err)
		}
		joined = err == nil
	}
	if !joined { // by path: no pidfd, or a kernel before 5.8
		for _, ns := range []struct {
			name string
			flag int
		}{{"pid", unix.CLONE_NEWPID}, {"uts", unix.CLONE_NEWUTS}, {"ipc", unix.CLONE_NEWIPC}, {"net", unix.CLONE_NEWNET}} {
			fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", spec.Pid, ns.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return 0, fmt.Errorf("exec: join %s namespace: %w", ns.name, err)
			}
			err = unix.Setns(fd, ns.flag)
			unix.Close(fd)
			if err != nil {
				return 0, fmt.Errorf("exec: join %s namespace: %w", ns.name, err)
			}
		}
		if err := enterMountNamespace(spec.Pid); err != nil {
			return 0, fmt.Errorf("exec: join mnt namespace: %w", err)
		}
	}
	if spec.Tty {
		// The container's /dev/ptmx: the process's terminal is one of the
		// container's /dev/pts, as docker's exec -t gives (the host's is not
		// there, so ttyname failed on it).
		master, slave, _, err := openPty()
		if err != nil {
			return ExitSetup, fmt.Errorf("exec: %w", err)
		}
		if c := cmd.SysProcAttr.Credential; c != nil {
			// The user's own, as runc's fixStdioPermissions: it can open
			// its terminal again by name ($(tty), GPG_TTY).
			unix.Fchown(int(slave.Fd()), int(c.Uid), -1)
		}
		stdio.pty, stdio.child = master, append(stdio.child, slave)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr.Setctty = true // Ctty 0: the slave
	}
	// The working dir is entered here, as root, before the fork, as runc
	// does first: a missing one is then its own error, not the exec's (the
	// fork's chdir failure looked like a missing command). Refused to root,
	// it is tried again as the user, in the child.
	if err := unix.Chdir(dir); errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		cmd.Dir = dir
	} else if err != nil {
		code := ExitCannotExec
		if errors.Is(err, unix.ENOENT) {
			code = ExitNotFound
		}
		return code, fmt.Errorf("exec: chdir to cwd (%q): %w", dir, err)
	}
	if err := newSessionKeyring(); err != nil {
		return ExitSetup, fmt.Errorf("exec: %w", err)
	}
	if err := limitCaps(spec.Caps); err != nil {
		return 0, fmt.Errorf("exec: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("exec %s: %w", spec.Args[0], err)
	}
	return 0, nil
}

// errNoPidfdSetns: the kernel's setns takes no pidfd (before Linux 5.8).
var errNoPidfdSetns = errors.New("setns takes no pidfd")

// enterByPidfd moves the calling thread, locked and never to run anything else,
// into the namespaces of pidfd's process (pid, uts, ipc, network and mount, in
// one setns) and under its root, as enterMountNamespace does by path: the root
// is opened by pid, then the process is checked to be still alive, so that pid
// was still it.
func enterByPidfd(pid, pidfd int) error {
	rootFd, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootFd)
	// A pidfd turns readable when its process exits: until then its pid is
	// not reused, so the root opened above is the container's.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 0); err != nil || n > 0 {
		return fmt.Errorf("the container's process %d exited", pid)
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Setns(pidfd, unix.CLONE_NEWPID|unix.CLONE_NEWUTS|unix.CLONE_NEWIPC|unix.CLONE_NEWNET|unix.CLONE_NEWNS); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return errNoPidfdSetns // Linux before 5.8: setns takes no pidfd
		}
		return fmt.Errorf("setns: %w", err)
	}
	if err := unix.Fchdir(rootFd); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// enterMountNamespace moves the calling thread, locked and never to run
// anything else, into the mount namespace of pid and under its root: it stops
// sharing root and cwd with the process's other threads (setns refuses a mount
// namespace change to a thread that shares them), joins the namespace (which
// sets its root to the namespace's), then chroots to pid's own root, opened
// before the change (a container that chrooted rather than pivoted).
func enterMountNamespace(pid int) error {
	rootFd, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootFd)
	nsFd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(nsFd)
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Setns(nsFd, unix.CLONE_NEWNS); err != nil {
		return err
	}
	if err := unix.Fchdir(rootFd); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// lookPathInRoot finds file in PATH inside root, resolving in it.
func lookPathInRoot(root, file string, env []string) (string, error) {
	rfd, err := openRootDir(root)
	if err != nil {
		return "", err
	}
	defer rfd.Close()
	check := func(p string) error {
		f, err := openat2InRoot(rfd, p, unix.O_PATH)
		if err != nil {
			return err
		}
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&0o111 == 0 {
			return os.ErrPermission
		}
		return nil
	}
	if strings.Contains(file, "/") {
		if err := check(file); err != nil {
			return "", fmt.Errorf("exec: %q: %w", file, err)
		}
		return file, nil
	}
	for _, dir := range strings.Split(getenv(env, "PATH"), ":") {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, file)
		if check(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}
