package mountcmd

// The mount server: one process per mounted working container.
//
// `layerfs mount` prepares the container (state.json names the mountpoint, the
// lowers and the upper) and, unless -f, re-executes the binary as
// `layerfs --root R __serve NAME`: a new session (setsid), stdin /dev/null,
// stdout and stderr appended to work/<name>/server.log, cwd /. The server takes
// server.lock (held until it exits: that is how everyone else knows it lives),
// mounts the union, listens on control.sock, and only then writes "ok" on the
// readiness pipe (fd 3, named by LAYERFS_READY_FD), or one line "error: ..." if any
// step failed. The parent returns when it has read that line, so a successful
// `layerfs mount` means the mount is live.
//
// The server runs until a stop request (umount) unmounts it, the mount goes away
// behind its back (fusermount3 -u), or SIGINT/SIGTERM (it unmounts, then exits).
// If it is killed, the kernel keeps a dead mount (ENOTCONN) that `layerfs umount`
// clears; the upper dir keeps every change that reached it.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/build"
)

// readyFDEnv names the fd of the readiness pipe in a detached server.
const readyFDEnv = "LAYERFS_READY_FD"

// serverStartTimeout bounds how long mount waits for the server to be ready.
const serverStartTimeout = 2 * time.Minute

func init() { addVerb(newServeCommand) }

func newServeCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "__serve NAME",
		Short:  "Serve a working container's mount (internal: started by mount)",
		Hidden: true,
		Args:   exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := newWorkContainer(g.root, args[0])
			if err != nil {
				return err
			}
			ready := readyPipe()
			err = serve(cmd.Context(), g, w, func(err error) {
				if ready == nil {
					return
				}
				if err != nil {
					fmt.Fprintf(ready, "error: %s\n", oneLine(err.Error()))
				} else {
					fmt.Fprintln(ready, "ok")
				}
				ready.Close()
			})
			if err != nil {
				log.Printf("serve %s: %v", w.name, err)
				return exitError{1}
			}
			return nil
		},
	}
}

func readyPipe() *os.File {
	n, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil || n < 3 {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	return os.NewFile(uintptr(n), "ready")
}

// serve mounts w as its state.json says and serves it until it is stopped or
// unmounted. ready is called exactly once: with nil once the mount is live and the
// control socket listens, or with the error that kept it from getting there.
func serve(ctx context.Context, g *globalOptions, w *workContainer, ready func(error)) (err error) {
	ignoreSIGPIPE()
	readyCalled := false
	defer func() {
		if !readyCalled {
			ready(err)
		}
	}()
	lg := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)

	lock, err := os.OpenFile(w.serverLock(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("server lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("container %s is already served by another process", w.name)
		}
		return fmt.Errorf("server lock: %w", err)
	}

	st, err := w.load()
	if err != nil {
		return err
	}
	if st.Mountpoint == "" {
		return fmt.Errorf("container %s has no mountpoint to serve", w.name)
	}
	opts := unionOptions{
		Lowers:      st.Lowers,
		Upper:       w.upperPath(st),
		Work:        w.ScratchDir(),
		ReadOnly:    st.ReadOnly,
		Passthrough: st.Passthrough,
		Debug:       g.debug,
		FsName:      w.fsName(),
		InodeMaps:   w.inodeMaps(st),
	}
	lg.Printf("mounting %s at %s (lowers %d, upper %s, read-only %v, passthrough %v)", w.name, st.Mountpoint, len(opts.Lowers), opts.Upper, opts.ReadOnly, opts.Passthrough)
	m, err := mountUnion(st.Mountpoint, opts) // its errors name the mountpoint
	if err != nil {
		return err
	}
	unmounted := make(chan struct{})
	go func() { m.Wait(); close(unmounted) }()

	cs := newControlServer(w, m, st, lg)
	l, err := listenControl(w)
	if err != nil {
		if uerr := m.Unmount(); uerr != nil {
			lg.Printf("umount %s: %v", st.Mountpoint, uerr)
		}
		return err
	}
	go cs.serve(l)
	readyCalled = true
	ready(nil)
	lg.Printf("serving %s (pid %d)", st.Mountpoint, os.Getpid())

	ownerGone := watchOwner(lg)
	var held func() // the container lock the owner-gone path takes
	select {
	case <-ownerGone:
		// A temporary mount's owner (cp, run) died without taking it down.
		// Whoever holds the container (a commit pausing this server) finishes
		// first: the mount goes once the lock is ours.
		lg.Printf("its owner is gone: unmounting once the container is free")
		held = lockOrStop(w, cs.stopped, unmounted)
		if err := m.Unmount(); err != nil {
			lg.Printf("%v; detaching", err)
			unix.Unmount(st.Mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		defer os.Remove(st.Mountpoint) // its temporary dir, once empty
	case <-cs.stopped:
		lg.Printf("stopped by request")
	case <-unmounted:
		if cs.stopping.Load() {
			lg.Printf("stopped by request")
		} else {
			lg.Printf("unmounted from outside")
		}
	case <-ctx.Done():
		lg.Printf("signalled: unmounting")
		if err := m.Unmount(); err != nil {
			// Busy: detach it rather than leave a dead mount at the path.
			lg.Printf("%v; detaching", err)
			if err := unix.Unmount(st.Mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
				lg.Printf("detach %s: %v", st.Mountpoint, err)
			}
		}
	}
	if cs.stopping.Load() {
		// Let the stop request's answer go out before the process ends.
		select {
		case <-cs.stopped:
		case <-time.After(5 * time.Second):
		}
	}
	l.Close()
	os.Remove(w.socketPath())
	select {
	case <-unmounted:
	case <-time.After(10 * time.Second):
		lg.Printf("mount did not go away in 10s; exiting anyway")
	}
	// Tidy state.json unless someone holds the container (umount does it then).
	unlock, ok := held, held != nil
	if !ok {
		unlock, ok, _ = tryLockContainer(w)
	}
	if ok {
		if cur, err := w.load(); err == nil && cur.Mountpoint == st.Mountpoint && !isMountpoint(cur.Mountpoint) {
			cur.Mountpoint, cur.PID = "", 0
			if err := w.save(cur); err != nil {
				lg.Printf("%v", err)
			}
		}
		unlock()
	}
	lg.Printf("exit")
	return nil
}

// lockOrStop takes w's lock, unless the server is stopped or unmounted first
// (then whoever holds the lock is taking the mount down itself): the unlock
// func, or nil.
func lockOrStop(w *workContainer, stopped, unmounted <-chan struct{}) func() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan func(), 1)
	go func() {
		unlock, err := lockContainer(ctx, w)
		if err != nil {
			unlock = nil
		}
		got <- unlock
	}()
	select {
	case unlock := <-got:
		return unlock
	case <-stopped:
	case <-unmounted:
	}
	cancel()
	if unlock := <-got; unlock != nil {
		unlock() // taken just as the stop came: not needed
	}
	return nil
}

// serverOwnerEnv names, as PID:STARTTIME, the process whose temporary mount
// this is (cp's): the server takes the mount down when that process dies.
const serverOwnerEnv = "LAYERFS_SERVER_OWNER"

// watchOwner returns a channel closed when the process serverOwnerEnv names
// ends; nil (never ready) without one.
func watchOwner(lg *log.Logger) <-chan struct{} {
	v, ok := os.LookupEnv(serverOwnerEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(serverOwnerEnv)
	var rs runState
	if _, err := fmt.Sscanf(v, "%d:%d", &rs.Pid, &rs.StartTime); err != nil || rs.Pid <= 0 {
		lg.Printf("bad %s %q", serverOwnerEnv, v)
		return nil
	}
	gone := make(chan struct{})
	go func() {
		if err := waitPidBlocking(&rs); err != nil {
			lg.Printf("watch owner %d: %v", rs.Pid, err)
			return
		}
		close(gone)
	}()
	return gone
}

// waitPidBlocking waits for rs's process to end without waking up meanwhile
// (the server watches its owner for its whole life).
func waitPidBlocking(rs *runState) error {
	fd, err := unix.PidfdOpen(rs.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // gone already
	}
	if err != nil {
		return err // no pidfds: the watch never fires
	}
	defer unix.Close(fd)
	if !rs.alive() {
		return nil // gone, its pid taken by another
	}
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, -1)
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// listenControl listens on the container's control socket, mode 0600.
func listenControl(w *workContainer) (net.Listener, error) {
	os.Remove(w.socketPath()) // a dead server's socket; we hold server.lock
	var l net.Listener
	err := withShortSocketPath(w.socketPath(), func(addr string) error {
		var err error
		l, err = net.Listen("unix", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the path may be a /proc/self/fd alias; we remove it
	}
	if err := os.Chmod(w.socketPath(), 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// startServer starts the detached server for w and waits until it is ready.
// It returns the server's pid; on failure, the server's own one-line error.
// With temporary, the mount goes away when this process dies (cp's).
func startServer(ctx context.Context, g *globalOptions, w *workContainer, temporary ...bool) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("start server: %w", err)
	}
	logf, err := os.OpenFile(w.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("start server: %w", err)
	}
	defer logf.Close()
	var logStart int64 // what this server writes comes after
	if fi, err := logf.Stat(); err == nil {
		logStart = fi.Size()
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("start server: %w", err)
	}
	defer pr.Close()
	args := []string{"--root=" + g.root}
	if g.debug {
		args = append(args, "--debug")
	}
	args = append(args, "__serve", w.name)
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw} // fd 3
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	if len(temporary) > 0 && temporary[0] {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d:%d", serverOwnerEnv, os.Getpid(), procStartTime(os.Getpid())))
	}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	build.CloseExtraFilesOnExec() // the caller's other fds stay out of the server
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return 0, fmt.Errorf("start server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(io.LimitReader(pr, 64*1024)).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var msg string
	select {
	case msg = <-line:
	case <-ctx.Done():
		cmd.Process.Signal(unix.SIGTERM) // it unmounts if it got that far
		return 0, fmt.Errorf("start server: %w", ctx.Err())
	case <-time.After(serverStartTimeout):
		cmd.Process.Signal(unix.SIGTERM)
		return 0, fmt.Errorf("start server: not ready after %v (see %s)", serverStartTimeout, w.logPath())
	}
	if msg == "ok" {
		return cmd.Process.Pid, nil
	}
	// Failed: the pipe says why, or the log does if it died before saying.
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
	}
	if m, ok := strings.CutPrefix(msg, "error: "); ok {
		// A user's mount goes through fusermount3, which says why it failed
		// on the server's stderr, the log: that is the error to show.
		if i := strings.Index(m, "fusermount3: "); i >= 0 {
			if why := fusermountSays(w.logPath(), logStart); why != "" {
				m = m[:i] + "fusermount3: " + why
			}
		}
		return 0, errors.New(m)
	}
	return 0, fmt.Errorf("mount server exited: %s", lastLogLine(w.logPath()))
}

// lastLogLine returns the last non-empty line of a server log, for an error.
func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// fusermountSays returns what fusermount last printed into a server log after
// its first start bytes (its "/usr/bin/fusermount3: " prefix cut), or "".
func fusermountSays(path string, start int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < start {
		return ""
	}
	b = b[start:]
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		prog, rest, ok := strings.Cut(lines[i], ": ")
		if ok && (strings.HasSuffix(prog, "fusermount3") || strings.HasSuffix(prog, "fusermount")) {
			return rest
		}
	}
	return ""
}

// ignoreSIGPIPE keeps a mount server alive when its output goes nowhere (a
// --debug log piped into head): SIGPIPE killed it, and a server that dies while
// one of its threads waits on a request to its own mount (go-fuse opens the
// mount once at its start) can never exit, its mount hanging every access
// (found by a review). Its writes then fail with EPIPE instead. A handler, not
// SIG_IGN, which the programs it runs would inherit.
func ignoreSIGPIPE() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}
