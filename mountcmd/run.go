package mountcmd

// run: docker run without a daemon. The image is mounted as a working container
// (the same detached mount server as `mount`, so ps, commit --pause, diff and
// export work on it while it runs), the command runs in new namespaces with
// build's runtime, and afterwards the container is unmounted but kept (its upper
// dir holds the changes; commit, diff and rm name it) unless --rm.
//
// While the command runs, work/<name>/run.json records the container's pid 1
// (for exec). The mountpoint lives outside the store root, under
// $TMPDIR/layerfs-run-<hash of the root>/<name>.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/registry"
)

type runOptions struct {
	name          string
	rm            bool
	interactive   bool
	tty           bool
	env           []string
	workdir       string
	user          string
	volumes       []string
	entrypoint    string
	entrypointSet bool // --entrypoint given (--entrypoint "" clears the image's)
	envFiles      []string
	hostname      string
	init          bool
	detach        bool
	child         bool   // internal: the detached monitor process of run -d
	id            string // internal: the ID run -d's parent chose (and printed) for the container
	publish       []string
	reuse         bool // internal: start an existing container (start)
	pull          string
	network       string   // none: loopback only; host, default, bridge: the host's
	tmpfs         []string // --tmpfs PATH[:OPTIONS]
	devices       []string // --device HOST[:CONTAINER[:PERMISSIONS]]
	mounts        []string // --mount type=bind|tmpfs,...
	addHosts      []string // --add-host HOST:IP
	labels        []string // --label KEY=VALUE
	stopSignal    string
	stopTimeout   optionalInt // --stop-timeout: seconds stop waits by default (negative: no limit); unset: 10
	readOnly      bool
	platform      string
	privileged    bool
	capAdd        []string
	capDrop       []string
	ulimits       []string
	shmSize       string
	restart       string // only "no": policies need a daemon that outlives the command
}

func init() {
	commandAdders = append(commandAdders, func(root *cobra.Command, g *globalOptions) {
		root.AddCommand(newRunCommand(g), newContainerInitCommand(), newStepMountCommand())
	})
}

func newRunCommand(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Annotations: map[string]string{rootOnly: "125"},
		Use:         "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short:       "Run a command in a new container made from an image",
		Long: `Run a command in a new working container made from IMAGE, in new mount, pid,
uts and ipc namespaces (the host's network), with a fresh /proc, a minimal /dev
and a read-only /sys. The image's Env, WorkingDir, User, Entrypoint and Cmd
apply, as in docker. The exit status is the command's (128+N if signal N killed it;
125 if the container could not start, 126/127 if the command could not run).

The container is kept afterwards (unmounted) so that its changes can be
committed: layerfs run --name busy1 -it busybox sh; ...; layerfs commit busy1 me/img:v2.
--rm removes it when the command exits.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.child {
				if err := o.fromParent(); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
					return exitError{build.ExitSetup}
				}
			}
			o.entrypointSet = o.entrypointSet || cmd.Flags().Changed("entrypoint")
			if err := o.check(); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
				return exitError{build.ExitSetup}
			}
			if !o.detach && !o.child {
				if err := checkTTYInput(o); err != nil {
					return err
				}
			}
			if !o.child && !o.privileged && addsCap(o.capAdd, "SYS_ADMIN") {
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: CAP_SYS_ADMIN lets the container mount devices and open them: layerfs has no device cgroup")
			}
			if len(o.publish) > 0 && !o.child {
				// Containers share the host's network: a port is already published.
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: Published ports are discarded when using host network mode")
			}
			if !o.child && !o.reuse {
				if err := pullForRun(cmd, g, o.pull, args[0]); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
					return exitError{build.ExitSetup}
				}
				if o.platform == "" {
					warnForeignPlatform(cmd.ErrOrStderr(), g, args[0])
				}
			}
			if o.detach && !o.child {
				return runDetached(cmd, g, o, args[0], args[1:], "")
			}
			code, err := runContainer(cmd.Context(), g, o, args[0], args[1:])
			if err != nil {
				// docker run's 125: the container could not be made or started.
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
				if code == 0 {
					code = build.ExitSetup
				}
				return exitError{code}
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	addRunFlags(f, o)
	f.BoolVarP(&o.detach, "detach", "d", false, "run the container in the background and print its ID")
	f.BoolVar(&o.child, "detached-child", false, "internal: the monitor process of run -d")
	f.MarkHidden("detached-child")
	f.StringVar(&o.id, "detached-id", "", "internal: the container's ID (run -d)")
	f.MarkHidden("detached-id")
	f.BoolVar(&o.reuse, "reuse", false, "internal: start the existing container NAME (start)")
	f.MarkHidden("reuse")
	cmd.Flags().Bool("help", false, "help for run") // -h is --hostname, as in docker
	return cmd
}

// addRunFlags registers the flags run and create share.
func addRunFlags(f *pflag.FlagSet, o *runOptions) {
	f.SetInterspersed(false) // flags after IMAGE belong to the command
	f.StringVar(&o.name, "name", "", "assign a name to the container")
	f.BoolVar(&o.rm, "rm", false, "remove the container when it exits")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "keep STDIN open")
	f.BoolVarP(&o.tty, "tty", "t", false, "allocate a pseudo-TTY")
	f.VarP(envValue{&o.env}, "env", "e", "set environment variables (KEY=VALUE, or KEY to pass the host's)")
	f.StringArrayVar(&o.envFiles, "env-file", nil, "read environment variables from a file (KEY=VALUE lines; -e wins)")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
	f.StringArrayVarP(&o.volumes, "volume", "v", nil, "bind mount a host path: HOST:CONTAINER[:ro] (a missing HOST dir is created)")
	f.StringVar(&o.entrypoint, "entrypoint", "", "overwrite the default ENTRYPOINT of the image (\"\" clears it)")
	f.StringVarP(&o.hostname, "hostname", "h", "", "container host name")
	f.BoolVar(&o.init, "init", false, "run an init inside the container that forwards signals and reaps processes")
	f.StringArrayVarP(&o.publish, "publish", "p", nil, "accepted for docker compatibility; ignored: containers use the host's network")
	f.BoolP("publish-all", "P", false, "accepted for docker compatibility; ignored: containers use the host's network")
	f.StringVar(&o.pull, "pull", "missing", `pull image before running ("always", "missing", "never")`)
	f.StringVar(&o.network, "network", "default", "network mode: default, host and bridge all share the host's network; none: loopback only")
	f.StringVar(&o.network, "net", "default", "network mode (--network)")
	f.MarkHidden("net")
	f.StringArrayVar(&o.tmpfs, "tmpfs", nil, "mount a tmpfs: PATH[:size=64m,ro,mode=1777]")
	f.StringArrayVar(&o.devices, "device", nil, "add a host device to the container: HOST[:CONTAINER[:PERMISSIONS]] (no device cgroup here: PERMISSIONS is checked, not enforced)")
	f.StringArrayVar(&o.mounts, "mount", nil, "attach a mount: type=bind,source=HOST,target=PATH[,readonly] or type=tmpfs,target=PATH[,tmpfs-size=N]")
	f.StringArrayVar(&o.addHosts, "add-host", nil, "add a custom host-to-IP mapping (HOST:IP)")
	f.StringArrayVarP(&o.labels, "label", "l", nil, "set metadata on the container (KEY=VALUE)")
	f.StringVar(&o.stopSignal, "stop-signal", "", "signal stop sends first (default: the image's STOPSIGNAL, else SIGTERM)")
	f.Var(&o.stopTimeout, "stop-timeout", "seconds stop waits before it kills the container (-1: no limit)")
	f.Lookup("stop-timeout").DefValue = "10" // -1 stands for "not given": the help shows what that means
	f.BoolVar(&o.readOnly, "read-only", false, "mount the container's root filesystem as read only")
	f.StringVar(&o.platform, "platform", "", "the platform (only this host's: containers run natively)")
	f.BoolVar(&o.privileged, "privileged", false, "give every capability, the host's devices and a writable /sys to the container (default: docker's set)")
	f.StringSliceVar(&o.capAdd, "cap-add", nil, "add Linux capabilities (NAME, CAP_NAME or ALL)")
	f.StringSliceVar(&o.capDrop, "cap-drop", nil, "drop Linux capabilities (NAME, CAP_NAME or ALL)")
	f.StringArrayVar(&o.ulimits, "ulimit", nil, "ulimit options (NAME=SOFT[:HARD], e.g. nofile=1024:2048)")
	f.StringVar(&o.shmSize, "shm-size", "", "size of /dev/shm (default 64m)")
	f.StringVar(&o.restart, "restart", "no", `restart policy: only "no" (no daemon here restarts containers)`)
}

// errNotTTY is docker's refusal of -it with a stdin that is no terminal.
var errNotTTY = errors.New("the input device is not a TTY")

// checkTTYInput refuses a foreground container with a pty (-t) fed from our
// stdin (-i) when stdin is no terminal: the pty's input would never end, so a
// command reading it would hang (docker run -it, docker attach).
func checkTTYInput(o *runOptions) error {
	if o.tty && o.interactive && !isTerminal(os.Stdin) {
		return errNotTTY
	}
	return nil
}

// newContainerInitCommand is the hidden entry point of build's re-executed init.
func newContainerInitCommand() *cobra.Command {
	return &cobra.Command{
		Use:                build.InitCommand,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitError{build.InitMain()}
		},
	}
}

// newStepMountCommand is the hidden entry point of the server of a build
// step's mount (build.StepMountMain).
func newStepMountCommand() *cobra.Command {
	return &cobra.Command{
		Use:                build.StepMountCommand,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitError{build.StepMountMain(cmd.Context())}
		},
	}
}

// runState is work/<name>/run.json while the container's command runs.
type runState struct {
	ID        string    `json:"id"`
	Pid       int       `json:"pid"`       // the container's pid 1, as the host sees it
	StartTime uint64    `json:"startTime"` // of that pid (from /proc/<pid>/stat), against pid reuse
	Config    runConfig `json:"config"`
	Started   time.Time `json:"started"`
	// StopSignal is what stop sends first: run's --stop-signal, else the image's
	// STOPSIGNAL ("" = SIGTERM).
	StopSignal string `json:"stopSignal,omitempty"`
	// StopTimeout is run's --stop-timeout: how long stop waits unless -t says;
	// nil is the default.
	StopTimeout *int `json:"stopTimeout,omitempty"`
	// Monitor is the process that waits for the command and records its exit
	// (run, or run -d's monitor), with its start time: once it is gone with
	// no exit recorded, the run was killed (lostRun).
	Monitor      int    `json:"monitor,omitempty"`
	MonitorStart uint64 `json:"monitorStart,omitempty"`
}

// runConfig is what exec needs of the run's process config.
type runConfig struct {
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	User string   `json:"user"`
	// Caps are the container's capabilities, which exec's processes get too
	// (none recorded: build's default set).
	Caps []string `json:"caps"` // null: the default set; [] none
	// Hostname is the container's, for exec's HOSTNAME ("" in run.json of
	// older versions: run-config.json's then).
	Hostname string `json:"hostname,omitempty"`
}

func runStatePath(w *workContainer) string { return filepath.Join(w.Dir(), "run.json") }

// runImage is the image a run uses: ref's, or for a start (reuse) the one the
// container has, read from its state as mount does, so that a container whose
// image rmi -f removed (or commit --rebase replaced) still starts, as docker's.
func runImage(s *blobstore.Store, g *globalOptions, o *runOptions, ref string) (*blobstore.Image, error) {
	if o.reuse {
		return containerImage(s, g, o.name)
	}
	img, err := s.Resolve(ref)
	if err != nil {
		return nil, imageErr(ref, err)
	}
	return img, nil
}

func runContainer(ctx context.Context, g *globalOptions, o *runOptions, ref string, args []string) (code int, err error) {
	s, err := openStore(g)
	if err != nil {
		return 0, err
	}
	img, err := runImage(s, g, o, ref)
	if err != nil {
		return 0, err
	}
	spec, err := processSpec(o, img, args)
	if err != nil {
		return 0, err
	}
	if o.name != "" && !o.reuse {
		w, err := newWorkContainer(g.root, o.name)
		if err != nil {
			return 0, err
		}
		if w.nameTaken() {
			return 0, errNameInUse(o.name)
		}
	}
	var anonVols []string
	spec.Binds, anonVols = anonymousVolumes(spec.Binds)
	if err := makeBindSources(spec.Binds); err != nil {
		return 0, err
	}
	w, err := mountForRun(ctx, g, s, img, ref, o.name, o.id, o.reuse)
	if err != nil {
		return 0, err
	}
	var made *build.RuntimePaths // mountpoints the image lacks, made for the run
	server := 0                  // our mount server's pid
	defer func() {
		if uerr := unmountAfterRun(w, o.rm, made, server); err == nil && uerr != nil {
			err = uerr
		}
	}()
	st, err := w.load()
	if err != nil {
		return 0, err
	}
	server = st.PID
	made = build.NoteRuntimePaths(st.Mountpoint, w.upperPath(st))
	// For commit and diff meanwhile; a killed run's stubs are still the runtime's.
	made.Keep(loadRuntimePaths(w))
	if err := saveRuntimePaths(w, made); err != nil {
		return 0, err
	}
	vols, err := imageVolumes(w, img, st.Mountpoint, spec.Binds, anonVols...)
	if err != nil {
		return 0, err
	}
	// nodev as every bind (build's nodevUnlessPrivileged): an image's device
	// nodes are copied into its VOLUMEs
	spec.Binds = append(spec.Binds, vols...)
	id := containerID(st)
	spec.Rootfs = st.Mountpoint
	if spec.Hostname == "" {
		spec.Hostname = id[:12]
	}
	os.Remove(restartingPath(w)) // this is the run a restart waited for
	if err := saveRunConfig(w, o, img, args, spec.Hostname); err != nil {
		return 0, err
	}
	etc, err := build.EtcFiles(filepath.Join(w.Dir(), "etc"), spec.Hostname, o.addHosts...)
	if err != nil {
		return 0, err
	}
	for i := range etc { // docker's: writable only with the rootfs (moby's NetworkMounts)
		etc[i].ReadOnly = o.readOnly
	}
	spec.Binds = append(etc, spec.Binds...)
	// Parents before what is mounted inside them, whatever the flags' order
	// (docker sorts its mounts so too); among equals, the given order.
	sort.SliceStable(spec.Binds, func(i, j int) bool {
		return mountDepth(spec.Binds[i].Target) < mountDepth(spec.Binds[j].Target)
	})
	if o.interactive {
		spec.Stdin = os.Stdin
		if !o.tty && !o.child && isTerminal(os.Stdin) {
			// -i without -t from a terminal: the container reads a pipe that
			// layerfs fills, as docker's client attaches it, not the caller's
			// terminal itself: it read on while layerfs was stopped (^Z),
			// taking what was typed to the shell, and `[ -t 0 ]` was true.
			pr, pw, err := os.Pipe()
			if err != nil {
				return 0, err
			}
			defer pr.Close()
			spec.Stdin = pr
			go func() {
				io.Copy(pw, os.Stdin)
				pw.Close()
			}()
		}
	}
	// The container's output goes to the log, and in the foreground to ours.
	var detached *detachedIO
	var cio *containerIO
	if o.child {
		if detached, spec.Stdout, spec.Stderr, err = openDetachedIO(w, o); err != nil {
			return 0, err
		}
		defer detached.Close() // after Wait: what the container wrote last is copied
		cio, spec.Stdin = detached.out, detached.stdin
	} else {
		if cio, spec.Stdout, spec.Stderr, err = openContainerIO(w, o.tty, os.Stdout, os.Stderr); err != nil {
			return 0, err
		}
		defer cio.Close()
	}
	p, err := build.Start(spec)
	cio.started()
	if err != nil {
		return 0, err
	}
	stopSignal := img.Config.Config.StopSignal
	if o.stopSignal != "" {
		stopSignal = o.stopSignal
	}
	rs := runState{ID: id, Pid: p.Pid(), StartTime: procStartTime(p.Pid()), Started: time.Now().UTC(),
		StopSignal: stopSignal, Monitor: os.Getpid(), MonitorStart: procStartTime(os.Getpid()),
		Config: runConfig{Env: spec.Env, Dir: spec.Dir, User: spec.User, Caps: spec.Caps, Hostname: spec.Hostname}}
	rs.StopTimeout = o.stopTimeout.ptr()
	if b, err := json.Marshal(rs); err == nil {
		writeFileAtomic(runStatePath(w), b, 0o600)
	}
	startErr := p.StartError()
	if detached != nil {
		if startErr != "" {
			// run -d's caller prints it and exits with the code, as docker's
			fmt.Fprintf(os.Stderr, "layerfs: %s\n", startErr)
		} else {
			detached.started() // run -d returns now
		}
	}
	exited := make(chan struct{})
	go killWithoutMount(w, p, exited)
	code, err = p.Wait()
	close(exited)
	rec := exitRecord{ExitCode: code, Started: rs.Started, Finished: time.Now().UTC(), Error: startErr}
	if err != nil {
		rec.Error = err.Error()
	}
	if startErr != "" {
		// docker's container whose start failed stays created (if it never ran)
		prev := loadExit(w)
		rec.NeverStarted = prev == nil || prev.NeverStarted
	}
	saveExit(w, rec) // before unmountAfterRun drops run.json: wait looks here then
	return code, err
}

// killWithoutMount kills the container if its mount server goes away under it
// (rm -f, umount -f): a container must not run on a dead mount.
func killWithoutMount(w *workContainer, p *build.Process, exited <-chan struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-exited:
			return
		case <-t.C:
			if !w.serverAlive() {
				p.Signal(os.Kill)
				return
			}
		}
	}
}

// processSpec merges the image config with run's flags, as docker does.
func processSpec(o *runOptions, img *blobstore.Image, args []string) (build.ProcessSpec, error) {
	cfg := img.Config.Config
	entrypoint := cfg.Entrypoint
	cmdArgs := cfg.Cmd
	if o.entrypoint != "" || o.entrypointSet {
		entrypoint = nil // --entrypoint "" clears it, as in docker
		if o.entrypoint != "" {
			entrypoint = []string{o.entrypoint}
		}
		cmdArgs = nil // docker drops the image's CMD with --entrypoint
	}
	if len(args) > 0 {
		cmdArgs = args
	}
	argv := append(append([]string(nil), entrypoint...), cmdArgs...)
	if len(argv) == 0 {
		return build.ProcessSpec{}, errors.New("no command specified")
	}
	env := append([]string(nil), cfg.Env...)
	for _, e := range hostEnv(o.env) {
		env = setEnvVar(env, e)
	}
	dir := cfg.WorkingDir
	if o.workdir != "" {
		if !filepath.IsAbs(o.workdir) {
			return build.ProcessSpec{}, fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", o.workdir)
		}
		dir = o.workdir
	}
	user := cfg.User
	if o.user != "" {
		user = o.user
	}
	binds, err := parseVolumes(o.volumes)
	if err != nil {
		return build.ProcessSpec{}, err
	}
	devices, err := parseDevices(o.devices)
	if err != nil {
		return build.ProcessSpec{}, err
	}
	binds = append(binds, devices...)
	tmpfs, err := parseTmpfs(o.tmpfs)
	if err != nil {
		return build.ProcessSpec{}, err
	}
	mounts, err := parseMounts(o.mounts)
	if err != nil {
		return build.ProcessSpec{}, err
	}
	binds = append(append(binds, mounts...), tmpfs...)
	seen := map[string]bool{}
	for _, b := range binds {
		t := filepath.Clean(b.Target)
		if seen[t] {
			return build.ProcessSpec{}, fmt.Errorf("duplicate mount point: %s", t)
		}
		seen[t] = true
	}
	caps, err := build.RunCaps(o.privileged, o.capAdd, o.capDrop)
	if err != nil {
		return build.ProcessSpec{}, err
	}
	limits, shm, err := parseLimits(o.ulimits, o.shmSize)
	if err != nil {
		return build.ProcessSpec{}, err
	}
	return build.ProcessSpec{Args: argv, Env: env, Dir: dir, User: user, Hostname: o.hostname,
		Binds: binds, Tty: o.tty, Init: o.init, NoNetwork: o.network == "none", ReadOnlyRootfs: o.readOnly,
		Caps: caps, Privileged: o.privileged, Ulimits: limits, ShmSize: shm}, nil
}

// parseVolumes parses -v HOST:CONTAINER[:OPTIONS] (bind mounts: named volumes
// need a daemon) and -v CONTAINER, an anonymous volume: a Bind without Source,
// made as an image's VOLUME is (anonymousVolumes). A missing HOST dir is no
// error: makeBindSources creates it when the container starts, as docker does
// for -v. OPTIONS are docker's, comma-separated: ro or rw; z, Z (SELinux
// labels: none here), consistent, cached, delegated (macOS) are accepted and
// change nothing; private and rprivate are what every bind is.
func parseVolumes(vs []string) ([]build.Bind, error) {
	var out []build.Bind
	for _, v := range vs {
		parts := strings.Split(v, ":")
		if len(parts) == 1 && filepath.IsAbs(v) {
			out = append(out, build.Bind{Target: filepath.Clean(v)})
			continue
		}
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("invalid volume specification: '%s' (want HOST:CONTAINER[:ro], or CONTAINER)", v)
		}
		if !filepath.IsAbs(parts[0]) && !strings.HasPrefix(parts[0], ".") {
			return nil, fmt.Errorf("invalid volume specification: '%s': named volumes are not supported, give a host path", v)
		}
		src, err := filepath.Abs(parts[0])
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(src); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("invalid volume specification: '%s': %w", v, err)
		}
		if !filepath.IsAbs(parts[1]) {
			return nil, fmt.Errorf("invalid volume specification: '%s': mount path must be absolute", v)
		}
		b := build.Bind{Source: src, Target: parts[1]}
		if len(parts) == 3 {
			classes := map[string]int{} // at most one option of each, as docker's
			for _, m := range strings.Split(parts[2], ",") {
				switch m {
				case "ro", "rw":
					b.ReadOnly = m == "ro"
					classes["rw"]++
				case "z", "Z":
					classes["label"]++
				case "consistent", "cached", "delegated":
					classes["consistency"]++
				case "private", "rprivate":
					classes["propagation"]++
				case "shared", "rshared", "slave", "rslave":
					return nil, fmt.Errorf("invalid volume specification: '%s': %s propagation is not supported (every bind is rprivate)", v, m)
				case "nocopy":
					return nil, fmt.Errorf("invalid volume specification: '%s': nocopy is for named volumes", v)
				default:
					return nil, fmt.Errorf("invalid mode: %s", parts[2])
				}
			}
			for _, n := range classes {
				if n > 1 {
					return nil, fmt.Errorf("invalid mode: %s", parts[2])
				}
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// anonymousVolumes takes the anonymous volumes (-v CONTAINER) out of binds:
// their paths, made like the image's VOLUMEs.
func anonymousVolumes(binds []build.Bind) (rest []build.Bind, anon []string) {
	for _, b := range binds {
		if b.Source == "" && !b.Tmpfs && !b.Device {
			anon = append(anon, b.Target)
			continue
		}
		rest = append(rest, b)
	}
	return rest, anon
}

// parseDevices parses --device HOST[:CONTAINER[:PERMISSIONS]] as docker: HOST a
// character or block device node, CONTAINER (default HOST) an absolute path,
// PERMISSIONS of r, w and m. Each is a bind of the node, which opens in the
// container (every other device node there does not: build.Bind.Device).
// PERMISSIONS is only checked: there is no device cgroup to enforce it.
func parseDevices(ds []string) ([]build.Bind, error) {
	var out []build.Bind
	for _, d := range ds {
		parts := strings.Split(d, ":")
		if len(parts) > 3 || parts[0] == "" {
			return nil, fmt.Errorf("invalid device specification: %s", d)
		}
		host, ctr := parts[0], parts[0]
		if len(parts) > 1 && parts[1] != "" {
			ctr = parts[1]
		}
		if len(parts) == 3 && (parts[2] == "" || strings.Trim(parts[2], "rwm") != "") {
			return nil, fmt.Errorf("invalid device mode: %s", parts[2])
		}
		if !filepath.IsAbs(ctr) {
			return nil, fmt.Errorf("invalid device specification: %s: the container path must be absolute", d)
		}
		src, err := filepath.Abs(host)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("error gathering device information while adding custom device %q: %w", host, err)
		}
		if fi.Mode()&os.ModeDevice == 0 {
			return nil, fmt.Errorf("error gathering device information while adding custom device %q: not a device node", host)
		}
		out = append(out, build.Bind{Source: src, Target: filepath.Clean(ctr), Device: true})
	}
	return out, nil
}

// makeBindSources creates the host dirs of -v binds that do not exist (0755,
// parents too), as docker does for -v at every start (not for --mount, which
// layerfs does not have).
func makeBindSources(binds []build.Bind) error {
	for _, b := range binds {
		if b.Tmpfs {
			continue
		}
		if _, err := os.Lstat(b.Source); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := os.MkdirAll(b.Source, 0o755); err != nil {
			return fmt.Errorf("create bind source %s: %w", b.Source, err)
		}
	}
	return nil
}

// runMountpoint is where run mounts a container: outside the store root, one dir
// per root.
func runMountpoint(root, name string) string {
	abs, _ := filepath.Abs(root)
	h := sha256.Sum256([]byte(abs))
	return filepath.Join(os.TempDir(), "layerfs-run-"+hex.EncodeToString(h[:4]), name)
}

// prepareRunMountpoint makes runMountpoint's dir for name, in a parent dir
// that is this user's and nobody else's to write: in a shared TMPDIR, another
// user who made it first could move a live mount's dir and put a symlink in its
// place (found by a review).
//
// A run or cp that ends removes the parent once it is empty, at any moment:
// name's dir is made here, in the parent just checked, and all of it again if
// the parent went meanwhile (prepareMountpoint's MkdirAll would fail then, or
// make the parent again unchecked). Once name's dir is in it, the parent stays.
func prepareRunMountpoint(root, name string) (string, error) {
	mp := runMountpoint(root, name)
	dir := filepath.Dir(mp)
	for try := 1; ; try++ {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("mountpoint dir %s: %w", dir, err)
		}
		var st unix.Stat_t
		err := unix.Lstat(dir, &st)
		if errors.Is(err, unix.ENOENT) && try < runDirTries {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("mountpoint dir %s: %w", dir, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
			return "", fmt.Errorf("mountpoint dir %s is not a private dir of this user (another made it?): remove it", dir)
		}
		err = os.Mkdir(mp, 0o755)
		if errors.Is(err, os.ErrNotExist) && try < runDirTries {
			continue
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("mountpoint %s: %w", mp, err)
		}
		return prepareMountpoint(root, mp)
	}
}

// runDirTries bounds prepareRunMountpoint's tries: each lost one is another
// run's end.
const runDirTries = 100

// mountForRun creates a new working container for img (named name, or derived)
// (with ID id, "" for a random one) and mounts it with a detached server, as mount
// does.
// With reuse (start) the container must exist; without, a name must be new:
// both are checked under the container's lock, as a rename or rm racing the
// check before it could otherwise start a fresh container under an old name,
// or hand a run another container's changes.
func mountForRun(ctx context.Context, g *globalOptions, s *blobstore.Store, img *blobstore.Image, ref, name, id string, reuse bool) (w *workContainer, err error) {
	release, err := s.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	w, st, created, unlock, err := claimContainer(ctx, g, s, name, id, img, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	claimed := w // the error returns below set w to nil
	defer func() {
		if err != nil && created && !claimed.serverAlive() {
			claimed.remove()
		}
	}()
	switch {
	case reuse && created:
		return nil, fmt.Errorf("%w: %s", errNoSuchContainer, name)
	case !reuse && name != "" && !created:
		return nil, errNameInUse(name)
	}
	mp, err := prepareRunMountpoint(g.root, w.name)
	if err != nil {
		return nil, err
	}
	lowers, err := ensureLayers(ctx, g, s, img)
	if err != nil {
		return nil, err
	}
	if err := w.resetScratch(); err != nil {
		return nil, err
	}
	st.Mountpoint, st.PID, st.Lowers, st.Incomplete = mp, 0, lowers, false
	st.Run = st.Run || created
	if err := w.save(st); err != nil {
		return nil, err
	}
	pid, err := startServer(ctx, g, w, true) // down with the run (or its monitor) if it is killed
	if err != nil {
		return nil, err
	}
	st.PID = pid
	return w, w.save(st)
}

// unmountAfterRun stops the container's mount server (if it still is ours,
// server) and removes the mountpoint dir, and the container too with rm. The
// mountpoints the runtime made (made) go from the upper dir again, and their
// record (run_stubs.go): like docker's init layer, they are not the container's
// changes. run.json goes last, so that whoever waits for it (stop) finds the
// container unmounted.
func unmountAfterRun(w *workContainer, rm bool, made *build.RuntimePaths, server int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, unlock, err := lockAndLoad(ctx, w)
	if err != nil {
		return err // removed under us (rm -f)
	}
	defer unlock()
	defer os.Remove(runStatePath(w))
	if st.PID != server {
		return nil // unmounted and mounted again by someone else meanwhile
	}
	mp := st.Mountpoint
	if err := unmountContainer(ctx, w, st, true); err != nil { // force: the container is gone, nothing may keep its mount busy
		return err
	}
	if mp != "" && !isMountpoint(mp) {
		os.Remove(mp)
		os.Remove(filepath.Dir(mp)) // the root's run dir, once no run uses it
		if made != nil {
			// The upper dir the container ends on, and the record as a commit
			// --rebase left it (it changes both).
			if saved := loadRuntimePaths(w); saved != nil {
				made = saved
			}
			made.UndoIn(w.upperPath(st))
			removeRuntimePaths(w)
		}
	}
	if rm {
		if _, err := os.Stat(restartingPath(w)); err == nil {
			return nil // restart stopped it to start it again: docker keeps it too
		}
		return w.remove()
	}
	return nil
}

// mountDepth is how deep target is: "/" 0, "/a" 1, "/a/b" 2.
func mountDepth(target string) int {
	t := filepath.Clean("/" + target)
	if t == "/" {
		return 0
	}
	return strings.Count(t, "/")
}

// restartingPath marks a container restart stops and starts again: its run's
// --rm does not remove it on the way (the next run drops the mark).
func restartingPath(w *workContainer) string { return filepath.Join(w.Dir(), "restarting") }

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// procStartTime is field 22 of /proc/<pid>/stat (0 if unreadable).
func procStartTime(pid int) uint64 {
	_, n := procStat(pid)
	return n
}

// procStat is pid's state letter and start time (0, 0 if it is gone).
func procStat(pid int) (state byte, start uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "" {
		return 0, 0
	}
	fmt.Sscan(f[19], &start)
	return f[0][0], start
}

// pullForRun is docker run's --pull: with "missing" (the default) an image the
// store lacks is pulled first ("Unable to find image ... locally", progress on
// stderr, as docker), with "always" every time, with "never" not at all.
func pullForRun(cmd *cobra.Command, g *globalOptions, policy, ref string) error {
	switch policy {
	case "never":
		return nil
	case "missing", "always":
	default:
		return fmt.Errorf("invalid pull option: %q: must be one of \"always\", \"missing\" or \"never\"", policy)
	}
	named, err := blobstore.ParseReference(ref)
	if err != nil {
		return nil // not a name (an ID): resolving it says what is wrong
	}
	s, err := openStore(g)
	if err != nil {
		return err
	}
	errOut := cmd.ErrOrStderr()
	if policy == "missing" {
		_, err := s.Resolve(ref)
		if err == nil || !errors.Is(err, blobstore.ErrNotFound) || errors.Is(err, blobstore.ErrMissingBlob) {
			return nil // there, or broken: resolving it again says how
		}
		fmt.Fprintf(errOut, "Unable to find image '%s' locally\n", blobstore.FamiliarString(named.String()))
	}
	c, err := (&registryFlags{}).client(g, errOut)
	if err != nil {
		return err
	}
	progress, done := newTransferProgress(errOut, false)
	res, err := c.Pull(cmd.Context(), s, ref, registry.PullOptions{Progress: progress, CheckLayer: checkLayer})
	done()
	if err != nil {
		return err
	}
	fmt.Fprintf(errOut, "Digest: %s\n", res.Digest)
	if res.Updated {
		fmt.Fprintf(errOut, "Status: Downloaded newer image for %s\n", blobstore.FamiliarString(res.Ref))
	}
	return nil
}

// warnForeignPlatform warns, as docker run does, when the image ref names is
// built for another platform than this host's (an image index without this
// host's, or an image of another architecture): its programs will most likely
// not run here ("exec format error"). Nothing when ref does not resolve: the
// run says why.
func warnForeignPlatform(w io.Writer, g *globalOptions, ref string) {
	s, err := openStore(g)
	if err != nil {
		return
	}
	img, err := s.Resolve(ref)
	if err != nil || img.Config.Architecture == "" {
		return
	}
	osName := img.Config.OS
	if osName == "" {
		osName = "linux"
	}
	p := osName + "/" + img.Config.Architecture
	if native := registry.DefaultPlatform(); p != native {
		if img.Config.Variant != "" {
			p += "/" + img.Config.Variant
		}
		fmt.Fprintf(w, "WARNING: The requested image's platform (%s) does not match the detected host platform (%s) and no specific platform was requested\n", p, native)
	}
}
