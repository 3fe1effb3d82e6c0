package mountcmd

// exec: run a command in a running container (one started by run), with
// build.Exec: in the container's pid, uts and ipc namespaces and its root.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/build"
)

type execOptions struct {
	interactive bool
	tty         bool
	env         []string
	workdir     string
	user        string
	privileged  bool
}

func init() { addVerb(newExecCommand) }

func newExecCommand(g *globalOptions) *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Long: `Run a command in a container that layerfs run is running: in its namespaces
and root, with its environment (plus -e), working dir (or -w) and user (or -u).
The exit status is the command's.`,
		Args: minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	f.BoolVarP(&o.tty, "tty", "t", false, "use the caller's terminal (the command shares it)")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set environment variables")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
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
	_, rs, err := runningContainer(g, name)
	if err != nil {
		return 0, err
	}
	user := rs.Config.User
	if o.user != "" {
		user = o.user
	}
	env := append([]string(nil), rs.Config.Env...)
	for _, e := range o.env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		env = setEnvVar(env, e)
	}
	dir := rs.Config.Dir
	if o.workdir != "" {
		dir = o.workdir
	}
	spec := build.ExecSpec{Pid: rs.Pid, Args: args, Env: env, Dir: dir, User: user, Caps: rs.Config.Caps,
		Stdout: os.Stdout, Stderr: os.Stderr}
	if o.privileged {
		spec.Caps = []string{build.AllCaps}
	}
	if o.interactive || o.tty {
		spec.Stdin = os.Stdin
	}
	return build.Exec(ctx, spec)
}
