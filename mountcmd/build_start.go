package mountcmd

// start: run a stopped container's command again on its upper dir, as docker
// start does (the build team's). run records what it ran in
// work/<name>/run-config.json; start replays it with --reuse, so the container
// keeps its changes, name, hostname and volumes.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/blobstore"
)

// savedRun is run-config.json: run's options (volumes made absolute, -e KEY
// with the host's value, the hostname it got) and what it ran. It is also how
// run -d hands its options to its monitor (runDetached).
type savedRun struct {
	Interactive bool     `json:"interactive,omitempty"`
	Tty         bool     `json:"tty,omitempty"`
	Env         []string `json:"env,omitempty"`
	Workdir     string   `json:"workdir,omitempty"`
	User        string   `json:"user,omitempty"`
	Volumes     []string `json:"volumes,omitempty"`
	Entrypoint  string   `json:"entrypoint,omitempty"`
	// EntrypointSet: --entrypoint was given (an empty Entrypoint clears the image's).
	EntrypointSet bool     `json:"entrypointSet,omitempty"`
	Hostname      string   `json:"hostname"`
	Init          bool     `json:"init,omitempty"`
	Rm            bool     `json:"rm,omitempty"` // create --rm: start removes it after its run
	Network       string   `json:"network,omitempty"`
	Tmpfs         []string `json:"tmpfs,omitempty"`
	Devices       []string `json:"devices,omitempty"`
	Mounts        []string `json:"mounts,omitempty"`
	AddHosts      []string `json:"addHosts,omitempty"`
	Labels        []string `json:"labels,omitempty"`
	StopSignal    string   `json:"stopSignal,omitempty"`
	StopTimeout   *int     `json:"stopTimeout,omitempty"`
	ReadOnly      bool     `json:"readOnly,omitempty"`
	Privileged    bool     `json:"privileged,omitempty"`
	CapAdd        []string `json:"capAdd,omitempty"`
	CapDrop       []string `json:"capDrop,omitempty"`
	Ulimits       []string `json:"ulimits,omitempty"`
	ShmSize       string   `json:"shmSize,omitempty"`
	Image         string   `json:"image"` // the image ID
	Args          []string `json:"args,omitempty"`
}

// entrypointSet: run had --entrypoint. A run-config.json from before
// entrypointSet (e66fbc5) has the entrypoint alone.
func (sr *savedRun) entrypointSet() bool { return sr.EntrypointSet || sr.Entrypoint != "" }

// saved is what of o a later start (or run -d's monitor) needs, with the
// caller's environment and working dir resolved.
func (o *runOptions) saved() savedRun {
	sr := savedRun{Interactive: o.interactive, Tty: o.tty, Workdir: o.workdir, User: o.user,
		Entrypoint: o.entrypoint, EntrypointSet: o.entrypointSet, Hostname: o.hostname, Init: o.init, Rm: o.rm,
		Network: o.network, Tmpfs: o.tmpfs, Devices: o.devices, Mounts: o.mounts, AddHosts: o.addHosts, Labels: o.labels,
		StopSignal: o.stopSignal, ReadOnly: o.readOnly, Privileged: o.privileged, CapAdd: o.capAdd, CapDrop: o.capDrop,
		Ulimits: o.ulimits, ShmSize: o.shmSize}
	sr.StopTimeout = o.stopTimeout.ptr()
	sr.Env = append(sr.Env, hostEnv(o.env)...)
	sr.Devices = nil // a relative HOST is the caller's, as a -v one
	for _, d := range o.devices {
		if host, rest, _ := strings.Cut(d, ":"); host != "" && !filepath.IsAbs(host) {
			if abs, err := filepath.Abs(host); err == nil {
				d = strings.TrimSuffix(abs+":"+rest, ":")
			}
		}
		sr.Devices = append(sr.Devices, d)
	}
	for _, v := range o.volumes {
		if host, rest, ok := strings.Cut(v, ":"); ok {
			if abs, err := filepath.Abs(host); err == nil {
				v = abs + ":" + rest
			}
		}
		sr.Volumes = append(sr.Volumes, v)
	}
	return sr
}

// options are run's options for name that sr recorded.
func (sr *savedRun) options(name string) *runOptions {
	o := &runOptions{name: name, interactive: sr.Interactive, tty: sr.Tty, env: sr.Env,
		workdir: sr.Workdir, user: sr.User, volumes: sr.Volumes, entrypoint: sr.Entrypoint, entrypointSet: sr.entrypointSet(),
		hostname: sr.Hostname, init: sr.Init, rm: sr.Rm, network: sr.Network, tmpfs: sr.Tmpfs, devices: sr.Devices, mounts: sr.Mounts,
		addHosts: sr.AddHosts, labels: sr.Labels, stopSignal: sr.StopSignal, readOnly: sr.ReadOnly,
		privileged: sr.Privileged, capAdd: sr.CapAdd, capDrop: sr.CapDrop, ulimits: sr.Ulimits, shmSize: sr.ShmSize}
	if sr.StopTimeout != nil {
		o.stopTimeout = optionalInt{v: *sr.StopTimeout, set: true}
	}
	return o
}

func runConfigPath(w *workContainer) string { return filepath.Join(w.Dir(), "run-config.json") }

func saveRunConfig(w *workContainer, o *runOptions, img *blobstore.Image, args []string, hostname string) error {
	sr := o.saved()
	sr.Hostname, sr.Image, sr.Args = hostname, img.ID.String(), args
	b, err := json.MarshalIndent(sr, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(runConfigPath(w), append(b, '\n'), 0o600)
}

type startOptions struct {
	attach      bool
	interactive bool
}

func init() { addVerb(newStartCommand) }

func newStartCommand(g *globalOptions) *cobra.Command {
	o := &startOptions{}
	cmd := &cobra.Command{
		Annotations: map[string]string{rootOnly: "1"},
		Use:         "start [-a] [-i] CONTAINER...",
		Short:       "Start stopped containers",
		Long: `Run a container's command again, on the changes it has (containers made by
run and kept after they exited). Detached unless -a or -i (each CONTAINER printed,
as given, once its command runs); -a and -i wait and exit with the command's status; -i also connects stdin (as docker start, -i attaches
too). A container made with -it needs a terminal on stdin for -i.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.attach = o.attach || o.interactive // docker start -i attaches
			if o.attach && len(args) > 1 {
				return errors.New("you cannot start and attach multiple containers at once")
			}
			failed := false
			for _, arg := range args {
				code, err := startContainer(cmd, g, o, arg, arg)
				var reported exitError // the command could not start: said already
				if errors.As(err, &reported) {
					failed = true
					continue
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
					failed = true
					continue
				}
				if o.attach {
					if code != 0 {
						return exitError{code}
					}
					return nil
				}
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&o.attach, "attach", "a", false, "attach output and wait for the container")
	cmd.Flags().BoolVarP(&o.interactive, "interactive", "i", false, "attach stdin")
	return cmd
}

// startContainer starts the container arg names; detached, it prints echo once
// the command runs (docker start prints each argument as it was typed).
func startContainer(cmd *cobra.Command, g *globalOptions, so *startOptions, arg, echo string) (int, error) {
	w, err := findContainer(g.root, arg)
	if err != nil {
		return 0, errors.New(userError(err))
	}
	if _, removed := settleLostRun(w); removed { // a run --rm whose run was killed: gone, as docker's
		return 0, errors.New(userError(fmt.Errorf("%w: %s", errNoSuchContainer, arg)))
	}
	name := w.name
	if st, err := w.load(); err == nil && st.Incomplete {
		// What a killed create or run left (or one at work now): starting
		// it would take it over as a new container, and lose it.
		return 0, fmt.Errorf("container %s is unfinished: the create or run that made it was killed or is still at work (rm it, or create it again)", name)
	}
	if _, _, err := runningContainer(g, name); err == nil {
		if so.attach {
			return 0, fmt.Errorf("container %s is already running (exec and logs reach it)", name)
		}
		fmt.Fprintln(cmd.OutOrStdout(), echo) // docker: starting a running container is a no-op
		return 0, nil
	}
	b, err := os.ReadFile(runConfigPath(w))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("container %s was not made by run: mount it instead", name)
	}
	if err != nil {
		return 0, err
	}
	var sr savedRun
	if err := json.Unmarshal(b, &sr); err != nil {
		return 0, fmt.Errorf("container %s: run-config.json: %w", name, err)
	}
	o := sr.options(name)
	o.reuse = true
	if !so.attach {
		o.detach = true
		return 0, runDetached(cmd, g, o, sr.Image, sr.Args, echo)
	}
	o.interactive = o.interactive && so.interactive
	if err := checkTTYInput(o); err != nil {
		return 0, err
	}
	code, err := runContainer(cmd.Context(), g, o, sr.Image, sr.Args)
	return code, err
}
