package mountcmd

// exec: run a command in a running container (one started by run), with
// build.Exec: in the container's pid, uts and ipc namespaces and its root.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/build"
)

type execOptions struct {
	interactive bool
	tty         bool
	env         []string
	workdir     string
	user        string
	privileged  bool
	detach      bool
	envFiles    []string
	started     func() // exec -d's child: the command runs
}

func init() { addVerb(newExecCommand) }

func newExecCommand(g *globalOptions) *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Annotations: map[string]string{rootOnly: "1"},
		Use:         "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short:       "Run a command in a running container",
		Long: `Run a command in a container that layerfs run is running: in its namespaces
and root, with its environment (plus -e), working dir (or -w) and user (or -u).
The exit status is the command's.`,
		Args: minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if v, ok := os.LookupEnv(execEnvVar); ok { // exec -d's child
				os.Unsetenv(execEnvVar)
				var env []string
				if err := json.Unmarshal([]byte(v), &env); err != nil {
					return err
				}
				o.env = append(env, o.env...)
			}
			if len(o.envFiles) > 0 {
				fileEnv, err := readEnvFiles(o.envFiles)
				if err != nil {
					return err
				}
				o.env = append(fileEnv, o.env...) // -e wins
			}
			if o.detach {
				err := execDetached(g, o, args[0], args[1:])
				var se execStartError
				if errors.As(err, &se) { // exec's own code: 126, 127 ...
					fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", se.msg)
					return exitError{se.code}
				}
				return err
			}
			if ready := execReadyPipe(); ready != nil { // exec -d's child
				o.started = func() { ready.Write([]byte("0")); ready.Close() }
				code, err := execInContainer(cmd.Context(), g, o, args[0], args[1:])
				if err != nil {
					fmt.Fprintf(ready, "%d %s", code, err)
					ready.Close()
				}
				return exitError{code}
			}
			if o.tty && o.interactive && !isTerminal(os.Stdin) {
				return errNotTTY // the pty's input would never end (docker exec -it too)
			}
			code, err := execInContainer(cmd.Context(), g, o, args[0], args[1:])
			if err != nil && code != 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
				return exitError{code}
			}
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&o.interactive, "interactive", "i", false, "keep STDIN open")
	f.BoolVarP(&o.tty, "tty", "t", false, "allocate a pseudo-TTY")
	f.VarP(envValue{&o.env}, "env", "e", "set environment variables")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
	f.BoolVarP(&o.detach, "detach", "d", false, "run the command in the background")
	f.StringArrayVar(&o.envFiles, "env-file", nil, "read environment variables from a file")
	f.BoolVar(&o.privileged, "privileged", false, "give the command every capability")
	return cmd
}

// runningContainer finds arg's container (name, mountpoint or ID prefix) and
// the run state of its command, which must be running.
func runningContainer(g *globalOptions, arg string) (*workContainer, *runState, error) {
	w, err := findContainer(g.root, arg)
	if err != nil {
		return nil, nil, errors.New(userError(err))
	}
	b, err := os.ReadFile(runStatePath(w))
	if errors.Is(err, os.ErrNotExist) {
		return w, nil, fmt.Errorf("container %s %w", w.name, errNotRunning)
	}
	if err != nil {
		return w, nil, fmt.Errorf("container %s: %w", w.name, err)
	}
	var rs runState
	if err := json.Unmarshal(b, &rs); err != nil {
		return w, nil, fmt.Errorf("container %s: run.json: %w", w.name, err)
	}
	if !rs.alive() {
		return w, nil, fmt.Errorf("container %s %w", w.name, errNotRunning)
	}
	return w, &rs, nil
}

func execInContainer(ctx context.Context, g *globalOptions, o *execOptions, name string, args []string) (int, error) {
	w, rs, err := runningContainer(g, name)
	if err != nil {
		return 0, err
	}
	user := rs.Config.User
	if o.user != "" {
		user = o.user
	}
	env := append([]string(nil), rs.Config.Env...)
	// HOSTNAME as run's process has it (docker's exec: the daemon's defaults,
	// then the container's env, then -e); build.Exec adds PATH.
	hostname := rs.Config.Hostname
	if hostname == "" {
		if sr := loadSavedRun(w); sr != nil {
			hostname = sr.Hostname
		}
	}
	if hostname != "" && !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HOSTNAME=") }) {
		env = append([]string{"HOSTNAME=" + hostname}, env...)
	}
	for _, e := range hostEnv(o.env) {
		env = setEnvVar(env, e)
	}
	dir := rs.Config.Dir
	if o.workdir != "" {
		dir = o.workdir
	}
	// The container's pid 1 by a pidfd, checked after it is opened: the pid is
	// then never a process that reused it.
	pidfd, err := unix.PidfdOpen(rs.Pid, 0)
	switch {
	case errors.Is(err, unix.ENOSYS): // before Linux 5.3: joined by pid
		pidfd = 0
	case err != nil || !rs.alive():
		if err == nil {
			unix.Close(pidfd)
		}
		return 0, fmt.Errorf("container %s %w", name, errNotRunning)
	default:
		defer unix.Close(pidfd)
	}
	if o.tty && !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		env = append(env, "TERM=xterm") // docker's default with a pty; the container's and -e win
	}
	spec := build.ExecSpec{Pid: rs.Pid, Pidfd: pidfd, Args: args, Env: env, Dir: dir, User: user, Caps: rs.Config.Caps,
		Tty: o.tty, Stdout: os.Stdout, Stderr: os.Stderr, Started: o.started}
	if o.privileged {
		spec.Caps = []string{build.AllCaps}
	}
	if o.interactive {
		spec.Stdin = os.Stdin
	}
	return build.Exec(ctx, spec)
}

// execEnvVar hands exec -d's -e values to its child.
const execEnvVar = "LAYERFS_EXEC_ENV"

// execDetached is exec -d: the same exec, re-run in a new session with its
// stdio on /dev/null, left running; this returns once it has started (docker
// prints nothing either).
func execDetached(g *globalOptions, o *execOptions, name string, args []string) error {
	if _, _, err := runningContainer(g, name); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// -e values go in the child's environment, not on its command line (every
	// user's ps shows that).
	envJSON, err := json.Marshal(hostEnv(o.env))
	if err != nil {
		return err
	}
	child := []string{"--root", g.root, "exec"}
	if g.debug {
		child = append(child, "--debug")
	}
	if o.workdir != "" {
		child = append(child, "--workdir="+o.workdir)
	}
	if o.user != "" {
		child = append(child, "--user="+o.user)
	}
	if o.privileged {
		child = append(child, "--privileged")
	}
	child = append(append(child, name), args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	c := exec.Command(exe, child...)
	c.Env = append(os.Environ(), execEnvVar+"="+string(envJSON), execReadyEnv+"=3")
	c.ExtraFiles = []*os.File{pw} // fd 3: closed once the command runs, or why not
	c.Dir = "/"
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Fds the caller left open (5>&1) stay out of the child: a reader of them
	// would wait for the whole command.
	build.CloseExtraFilesOnExec()
	err = c.Start() // stdio nil: /dev/null
	pw.Close()
	if err != nil {
		pr.Close()
		return fmt.Errorf("exec -d: %w", err)
	}
	msg, _ := io.ReadAll(pr)
	pr.Close()
	if string(msg) == "0" { // the command runs
		return c.Process.Release()
	}
	c.Wait()
	if len(msg) == 0 { // the child died before it could say
		return fmt.Errorf("exec -d: %v", c.ProcessState)
	}
	var code int
	var why string
	if _, err := fmt.Sscanf(string(msg), "%d", &code); err != nil || code == 0 {
		code = 1
	}
	if _, after, ok := strings.Cut(string(msg), " "); ok {
		why = after
	}
	return fmt.Errorf("%w", execStartError{code: code, msg: why})
}

// execReadyEnv names exec -d's child's ready fd.
const execReadyEnv = "LAYERFS_EXEC_READY"

// execReadyPipe is exec -d's child's end of the ready pipe, nil elsewhere.
func execReadyPipe() *os.File {
	v, ok := os.LookupEnv(execReadyEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(execReadyEnv)
	n, err := strconv.Atoi(v)
	if err != nil || n < 3 {
		return nil
	}
	return os.NewFile(uintptr(n), "exec ready")
}

// execStartError is why exec -d's command did not start, with exec's exit code.
type execStartError struct {
	code int
	msg  string
}

func (e execStartError) Error() string { return e.msg }
