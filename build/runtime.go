package build

// The container runtime.
//
// Start re-executes the running binary (/proc/self/exe) as InitCommand in new
// mount, pid, uts and ipc namespaces. That child is pid 1 of its pid namespace; it
// reads a ProcessSpec (JSON) from fd 3, sets the container up (init.go: a private
// mount tree, the rootfs bind-mounted onto itself, a fresh /proc, a minimal /dev on
// tmpfs, a read-only /sys, the bind mounts, pivot_root, hostname, user), and then
// execs the command, which so becomes pid 1 as in docker (`echo $$` prints 1).
// With Init, layerfs's init stays pid 1 instead (docker's --init): it forks the
// command, forwards every signal to it, reaps orphans and exits with its status.
// Setup is done by a re-executed helper because a Go process cannot run code
// between fork and exec.
//
// The exit status is docker's: the command's exit code, 128+N when a signal N
// killed it, 125 when the container could not be set up, 126 when the command
// could not be executed, 127 when it was not found.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitCommand is the hidden subcommand (argv[1]) under which the binary runs as a
// container's init; the command line wires it to InitMain.
const InitCommand = "__container-init"

// Exit codes of a container that did not get to run its command (docker's).
const (
	ExitSetup       = 125
	ExitCannotExec  = 126
	ExitNotFound    = 127
	exitSignalsBase = 128
)

// DefaultPath is the PATH a container gets when its image sets none (docker's).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Bind is one host path bind-mounted into a container (docker's -v HOST:CTR[:ro]),
// or with Tmpfs a fresh tmpfs (Source unused) of at most Size bytes (0: the
// kernel's default).
type Bind struct {
	Source   string `json:"source"` // absolute host path
	Target   string `json:"target"` // absolute path in the container
	ReadOnly bool   `json:"readOnly,omitempty"`
	// NoDev: device nodes under the bind do not open (all the way down). A
	// container could otherwise open an image's or a host dir's device node
	// there: no device cgroup guards it here.
	NoDev bool `json:"noDev,omitempty"`
	// Device: Source is a host device node the container is given (run
	// --device): its bind opens, a block device's too.
	Device bool   `json:"device,omitempty"`
	Tmpfs  bool   `json:"tmpfs,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Mode   uint32 `json:"mode,omitempty"` // a tmpfs's root mode (0: tmpfs's 1777)
	// Options are a tmpfs's further mount options, applied in order after
	// nosuid: noexec/exec, nodev/dev, nosuid/suid, noatime/atime/relatime/
	// strictatime, and uid=, gid=, nr_inodes= for its data.
	Options []string `json:"options,omitempty"`
}

// Secret is a file the container sees read-only at Target, whose content never
// touches a disk: the init writes it into a tmpfs of its own mount namespace.
type Secret struct {
	Target string `json:"target"`
	Data   []byte `json:"data"`
	Mode   uint32 `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
}

// Ulimit is one resource limit (docker's --ulimit NAME=SOFT[:HARD]).
type Ulimit struct {
	Name string `json:"name"` // docker's name: nofile, nproc, core, memlock ...
	Soft int64  `json:"soft"` // -1: unlimited
	Hard int64  `json:"hard"`
}

// ProcessSpec describes one container process.
type ProcessSpec struct {
	Rootfs   string   `json:"rootfs"`   // the container's root dir (a mount, or a plain dir)
	Args     []string `json:"args"`     // argv; argv[0] is looked up in the container's PATH
	Env      []string `json:"env"`      // KEY=VALUE; PATH, HOSTNAME and HOME are added if missing
	Dir      string   `json:"dir"`      // working dir, created if missing; "" is /
	User     string   `json:"user"`     // docker's USER syntax, resolved in the rootfs
	Hostname string   `json:"hostname"` // set in the new uts namespace
	Binds    []Bind   `json:"binds,omitempty"`
	Tty      bool     `json:"tty,omitempty"`  // stdio is a new pseudo-terminal
	Init     bool     `json:"init,omitempty"` // layerfs's init stays pid 1 (reaps, forwards signals)
	// NoNetwork: a network namespace of its own with only loopback (RUN
	// --network=none); otherwise the host's network.
	NoNetwork bool `json:"noNetwork,omitempty"`
	// ShmSize is /dev/shm's size in bytes (0: docker's 64 MiB).
	ShmSize int64 `json:"shmSize,omitempty"`
	// Ulimits are set on the command before it runs (docker's --ulimit).
	Ulimits []Ulimit `json:"ulimits,omitempty"`
	// Privileged: docker's --privileged (RUN --security=insecure): /proc's
	// read-only and masked paths are left as they are.
	Privileged bool `json:"privileged,omitempty"`
	// Caps are the capabilities the command may have: nil is DefaultCaps
	// (docker's), [AllCaps] every one (see RunCaps and limitCaps).
	Caps []string `json:"caps"` // null: the default set; [] none
	// ReadOnlyRootfs: the root is remounted read-only once every mount is on it
	// (run --read-only); binds and tmpfs mounts keep their own modes.
	ReadOnlyRootfs bool `json:"readOnlyRootfs,omitempty"`
	// Secrets are mounted after Binds; SecretsDir is an empty host dir the init
	// mounts their tmpfs on (in its own mount namespace, so nothing else sees it).
	Secrets    []Secret `json:"secrets,omitempty"`
	SecretsDir string   `json:"secretsDir,omitempty"`

	// Console is set by Start for Tty: the init makes the terminal on the
	// container's own devpts (a /dev/pts/N there, bound on /dev/console, as
	// runc's console socket), sized ConsoleRows x ConsoleCols if set, and
	// sends its master back on fd 5.
	Console     bool   `json:"console,omitempty"`
	ConsoleRows uint16 `json:"consoleRows,omitempty"`
	ConsoleCols uint16 `json:"consoleCols,omitempty"`

	Stdin          io.Reader `json:"-"` // nil is /dev/null
	Stdout, Stderr io.Writer `json:"-"` // nil discards
}

// Process is a started container.
type Process struct {
	cmd *exec.Cmd
	ttyRelay
	stopSignals func()
	// startErr is why the command never started (the init failed before it
	// could exec it: no such command, user or working dir): "" if it runs.
	startErr string
}

// Start starts the container process described by spec and returns once it runs.
// The caller must Wait for it.
func Start(spec ProcessSpec) (*Process, error) {
	if len(spec.Args) == 0 {
		return nil, errors.New("start container: no command")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start container: %w", err)
	}
	defer pr.Close()
	// The child closes its end of ready (fd 4, close-on-exec) when it execs the
	// command or dies: Start returns only then, so the container is set up.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start container: %w", err)
	}
	defer readyR.Close()
	p := &Process{}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"layerfs", InitCommand},
		Env:        []string{},
		Dir:        "/",
		ExtraFiles: []*os.File{pr, readyW},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if spec.NoNetwork {
		cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWNET
	}
	if len(spec.Secrets) > 0 && spec.SecretsDir == "" {
		return nil, errors.New("start container: secrets without a SecretsDir")
	}
	// With a terminal, the init's stdout and stderr are the caller's until it
	// has made the terminal (its setup errors reach the user), stdin nothing.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
	var console, consoleInit *os.File // the socket the init sends the master on
	if spec.Tty {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			pw.Close()
			return nil, fmt.Errorf("start container: console socket: %w", err)
		}
		console, consoleInit = os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "console-init")
		defer console.Close()
		defer consoleInit.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, consoleInit) // fd 5
		cmd.Stdin = nil
		if cmd.Stderr == nil { // a terminal has one output: run -t gives stdout alone
			cmd.Stderr = spec.Stdout
		}
		spec.Console = true
		if ws := userWinsize(); ws != nil {
			spec.ConsoleRows, spec.ConsoleCols = ws.Row, ws.Col
		}
	}
	// A session of its own, with a terminal or without, as runc's: left in the
	// caller's, a container without -t could open /dev/tty, the caller's
	// terminal, and push input into it (TIOCSTI, typed into the caller's shell
	// once the run ended; found by a security review). Without a controlling
	// terminal it gets ENXIO there, and TIOCSTI on the terminal its stdio may
	// be gets EPERM (no CAP_SYS_ADMIN). ^C then reaches layerfs alone, which
	// passes it on (forwardSignals).
	cmd.SysProcAttr.Setsid = true
	b, err := json.Marshal(spec)
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start container: %w", err)
	}
	err = cmd.Start()
	readyW.Close()
	if consoleInit != nil {
		consoleInit.Close()
	}
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start container: %w", err)
	}
	p.cmd = cmd
	_, werr := pw.Write(b)
	pw.Close()
	if werr != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("start container: %w", werr)
	}
	if console != nil {
		// nil if the init failed before it made the terminal: its error
		// went to the caller's stderr and comes on the ready pipe.
		if p.pty = receiveFile(console, "pty master"); p.pty != nil {
			p.attachPty(spec.Stdin, spec.Stdout)
		}
	}
	p.stopSignals = forwardSignals(p.cmd.Process, &p.ttyRelay)
	msg, _ := io.ReadAll(io.LimitReader(readyR, 64<<10))
	p.startErr = strings.TrimSpace(string(msg))
	return p, nil
}

// StartError is why the command never started ("" if it runs, or ran): the
// init then ends (Wait gives its exit code, 125-127) having printed the same on
// the container's stderr.
func (p *Process) StartError() string { return p.startErr }

// Pid is the container's pid 1 as the host sees it.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the container's pid 1.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the container to exit and returns its exit code (128+N for a
// signal N). The error is for failures to wait, not for non-zero exits.
func (p *Process) Wait() (int, error) {
	err := p.cmd.Wait()
	p.stopSignals()
	p.detachPty(0)
	st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return 0, fmt.Errorf("wait container: %w", err)
	}
	return exitCode(st), nil
}

func exitCode(st syscall.WaitStatus) int {
	if st.Signaled() {
		return exitSignalsBase + int(st.Signal())
	}
	return st.ExitStatus()
}

// forwardSignals passes the signals a user sends to `layerfs run` on to the
// container's pid 1 (which, as pid 1 of its namespace, only gets those it
// handles), until the returned stop.
func forwardSignals(target *os.Process, tty *ttyRelay) (stop func()) {
	// Without a terminal, ^C reaches us, not the container: pass it on.
	f := notifySignals(tty.pty == nil)
	f.forward(target, tty)
	return f.stop
}

// signalForwarder catches the signals layerfs passes on to a container process.
type signalForwarder struct {
	sigs chan os.Signal
	done chan struct{}
}

// notifySignals starts catching the signals to pass on (SIGINT too with
// interrupt); until forward they wait in a buffer. Caught before a process
// is started, none is ignored by it because our caller ignored it (a
// shell's background job ignores SIGINT and SIGQUIT): a caught signal has
// its default action again after execve.
func notifySignals(interrupt bool) *signalForwarder {
	f := &signalForwarder{sigs: make(chan os.Signal, 16), done: make(chan struct{})}
	signal.Notify(f.sigs, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	if interrupt {
		signal.Notify(f.sigs, unix.SIGINT)
	}
	return f
}

// forward passes the caught signals on to target until stop; SIGWINCH
// resizes tty's pty instead.
func (f *signalForwarder) forward(target *os.Process, tty *ttyRelay) {
	go func() {
		for {
			select {
			case s := <-f.sigs:
				if s == unix.SIGWINCH {
					tty.resizePty()
					continue
				}
				target.Signal(s)
			case <-f.done:
				return
			}
		}
	}()
}

// stop ends the catching and the forwarding. Call it once.
func (f *signalForwarder) stop() {
	signal.Stop(f.sigs)
	close(f.done)
}

// RunProcess starts spec and waits for it: the container's exit code.
func RunProcess(spec ProcessSpec) (int, error) {
	p, err := Start(spec)
	if err != nil {
		return 0, err
	}
	return p.Wait()
}
