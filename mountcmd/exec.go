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

// runningContainer returns the run state of a container whose command runs.
func runningContainer(g *globalOptions, name string) (*runState, error) {
	w, err := newWorkContainer(g.root, name)
	if err != nil {
		return nil, err
	}
	if !w.exists() {
		return nil, fmt.Errorf("No such container: %s", name) //nolint:staticcheck // docker's message
	}
	b, err := os.ReadFile(runStatePath(w))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %s is not running", name)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", name, err)
	}
	var rs runState
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("container %s: run.json: %w", name, err)
	}
	if rs.Pid <= 0 || procStartTime(rs.Pid) != rs.StartTime {
		return nil, fmt.Errorf("container %s is not running", name)
	}
	return &rs, nil
}

func execInContainer(ctx context.Context, g *globalOptions, o *execOptions, name string, args []string) (int, error) {
	rs, err := runningContainer(g, name)
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
