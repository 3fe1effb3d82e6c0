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
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
)

type runOptions struct {
	name        string
	rm          bool
	interactive bool
	tty         bool
	env         []string
	workdir     string
	user        string
	volumes     []string
	entrypoint  string
	hostname    string
	init        bool
}

func init() {
	commandAdders = append(commandAdders, func(root *cobra.Command, g *globalOptions) {
		root.AddCommand(newRunCommand(g), newContainerInitCommand())
	})
}

func newRunCommand(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new container made from an image",
		Long: `Run a command in a new working container made from IMAGE, in new mount, pid,
uts and ipc namespaces (the host's network), with a fresh /proc, a minimal /dev
and a read-only /sys. The image's Env, WorkingDir, User, Entrypoint and Cmd
apply, as in docker. The exit status is the command's (128+N if signal N killed it;
125 if the container could not start, 126/127 if the command could not run).

The container is kept afterwards (unmounted) so that its changes can be
committed: layerfs run --name busy1 -it busybox sh; ...; layerfs commit busy1 me/img:v2.
--rm removes it when the command exits.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	f.SetInterspersed(false) // flags after IMAGE belong to the command
	f.StringVar(&o.name, "name", "", "assign a name to the container")
	f.BoolVar(&o.rm, "rm", false, "remove the container when it exits")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "keep STDIN open")
	f.BoolVarP(&o.tty, "tty", "t", false, "allocate a pseudo-TTY")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set environment variables (KEY=VALUE, or KEY to pass the host's)")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
	f.StringArrayVarP(&o.volumes, "volume", "v", nil, "bind mount a host path: HOST:CONTAINER[:ro]")
	f.StringVar(&o.entrypoint, "entrypoint", "", "overwrite the default ENTRYPOINT of the image")
	f.StringVarP(&o.hostname, "hostname", "h", "", "container host name")
	f.BoolVar(&o.init, "init", false, "run an init inside the container that forwards signals and reaps processes")
	cmd.Flags().Bool("help", false, "help for run") // -h is --hostname, as in docker
	return cmd
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

// runState is work/<name>/run.json while the container's command runs.
type runState struct {
	ID        string    `json:"id"`
	Pid       int       `json:"pid"`       // the container's pid 1, as the host sees it
	StartTime uint64    `json:"startTime"` // of that pid (from /proc/<pid>/stat), against pid reuse
	Config    runConfig `json:"config"`
	Started   time.Time `json:"started"`
}

// runConfig is what exec needs of the run's process config.
type runConfig struct {
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	User string   `json:"user"`
}

func runStatePath(w *workContainer) string { return filepath.Join(w.Dir(), "run.json") }

func runContainer(ctx context.Context, g *globalOptions, o *runOptions, ref string, args []string) (code int, err error) {
	s, err := openStore(g)
	if err != nil {
		return 0, err
	}
	img, err := s.Resolve(ref)
	if err != nil {
		return 0, imageErr(ref, err)
	}
	spec, err := processSpec(o, img, args)
	if err != nil {
		return 0, err
	}
	if o.name != "" {
		w, err := newWorkContainer(g.root, o.name)
		if err != nil {
			return 0, err
		}
		if w.exists() {
			return 0, fmt.Errorf("Conflict. The container name %q is already in use. You have to remove (or rename) that container to be able to reuse that name", "/"+o.name) //nolint:staticcheck // docker's message
		}
	}
	w, err := mountForRun(ctx, g, s, img, ref, o.name)
	if err != nil {
		return 0, err
	}
	var made []string // mountpoint dirs the image lacks, made for the run
	defer func() {
		if uerr := unmountAfterRun(w, o.rm, made); err == nil && uerr != nil {
			err = uerr
		}
	}()
	st, err := w.load()
	if err != nil {
		return 0, err
	}
	for _, d := range []string{"proc", "dev", "sys"} {
		if _, err := os.Lstat(filepath.Join(st.Mountpoint, d)); err != nil {
			made = append(made, d)
		}
	}
	vols, err := imageVolumes(w, img, st.Mountpoint, spec.Binds)
	if err != nil {
		return 0, err
	}
	spec.Binds = append(spec.Binds, vols...)
	id := randomID()
	spec.Rootfs = st.Mountpoint
	if spec.Hostname == "" {
		spec.Hostname = id[:12]
	}
	if o.interactive {
		spec.Stdin = os.Stdin
	}
	spec.Stdout, spec.Stderr = os.Stdout, os.Stderr
	p, err := build.Start(spec)
	if err != nil {
		return 0, err
	}
	rs := runState{ID: id, Pid: p.Pid(), StartTime: procStartTime(p.Pid()), Started: time.Now().UTC(),
		Config: runConfig{Env: spec.Env, Dir: spec.Dir, User: spec.User}}
	if b, err := json.Marshal(rs); err == nil {
		writeFileAtomic(runStatePath(w), b, 0o600)
	}
	code, err = p.Wait()
	os.Remove(runStatePath(w))
	return code, err
}

// processSpec merges the image config with run's flags, as docker does.
func processSpec(o *runOptions, img *blobstore.Image, args []string) (build.ProcessSpec, error) {
	cfg := img.Config.Config
	entrypoint := cfg.Entrypoint
	cmdArgs := cfg.Cmd
	if o.entrypoint != "" {
		entrypoint = []string{o.entrypoint}
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
	for _, e := range o.env {
		k, _, ok := strings.Cut(e, "=")
		if !ok {
			v, set := os.LookupEnv(k)
			if !set {
				continue
			}
			e = k + "=" + v
		}
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
	return build.ProcessSpec{Args: argv, Env: env, Dir: dir, User: user, Hostname: o.hostname,
		Binds: binds, Tty: o.tty, Init: o.init}, nil
}

// imageVolumes gives each VOLUME of the image that no -v covers an anonymous
// volume, as docker does: a dir of the container (work/<name>/volumes/<hash>),
// filled on creation with what the image has at that path, bound there. What the
// container writes in it is not in its upper dir, so diff and commit leave it out;
// rm (and --rm) delete it with the container.
func imageVolumes(w *workContainer, img *blobstore.Image, rootfs string, binds []build.Bind) ([]build.Bind, error) {
	var paths []string
	for v := range img.Config.Config.Volumes {
		paths = append(paths, filepath.Clean("/"+v))
	}
	sort.Strings(paths)
	var out []build.Bind
next:
	for _, p := range paths {
		for _, b := range binds {
			if filepath.Clean(b.Target) == p {
				continue next
			}
		}
		h := sha256.Sum256([]byte(p))
		dir := filepath.Join(w.Dir(), "volumes", hex.EncodeToString(h[:8]))
		if _, err := os.Stat(dir); err != nil {
			if err := fillVolume(dir, rootfs, p); err != nil {
				return nil, fmt.Errorf("volume %s: %w", p, err)
			}
		}
		out = append(out, build.Bind{Source: dir, Target: p})
	}
	return out, nil
}

// fillVolume makes dir a copy of the image's path (resolved inside rootfs; empty if
// the image has none) with cp -a, through a temp dir renamed into place.
func fillVolume(dir, rootfs, p string) error {
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	src, err := build.OpenInRoot(rootfs, p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil {
		cmd := exec.Command("cp", "-a", "/proc/self/fd/3/.", tmp)
		cmd.ExtraFiles = []*os.File{src}
		out, err := cmd.CombinedOutput()
		src.Close()
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("copy the image's content: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return os.Rename(tmp, dir)
}

func setEnvVar(env []string, kv string) []string {
	k, _, _ := strings.Cut(kv, "=")
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// parseVolumes parses -v HOST:CONTAINER[:ro|rw] (bind mounts only: named volumes
// need a daemon).
func parseVolumes(vs []string) ([]build.Bind, error) {
	var out []build.Bind
	for _, v := range vs {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("invalid volume specification: '%s' (want HOST:CONTAINER[:ro])", v)
		}
		if !filepath.IsAbs(parts[0]) && !strings.HasPrefix(parts[0], ".") {
			return nil, fmt.Errorf("invalid volume specification: '%s': named volumes are not supported, give a host path", v)
		}
		src, err := filepath.Abs(parts[0])
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("invalid volume specification: '%s': %w", v, err)
		}
		if !filepath.IsAbs(parts[1]) {
			return nil, fmt.Errorf("invalid volume specification: '%s': mount path must be absolute", v)
		}
		b := build.Bind{Source: src, Target: parts[1]}
		if len(parts) == 3 {
			switch parts[2] {
			case "ro":
				b.ReadOnly = true
			case "rw":
			default:
				return nil, fmt.Errorf("invalid mode: %s", parts[2])
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// runMountpoint is where run mounts a container: outside the store root, one dir
// per root.
func runMountpoint(root, name string) string {
	abs, _ := filepath.Abs(root)
	h := sha256.Sum256([]byte(abs))
	return filepath.Join(os.TempDir(), "layerfs-run-"+hex.EncodeToString(h[:4]), name)
}

// mountForRun creates a new working container for img (named name, or derived)
// and mounts it with a detached server, as mount does.
func mountForRun(ctx context.Context, g *globalOptions, s *blobstore.Store, img *blobstore.Image, ref, name string) (w *workContainer, err error) {
	release, err := s.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	w, st, _, unlock, err := claimContainer(ctx, g, name, img, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer func() {
		if err != nil && !w.serverAlive() {
			w.remove()
		}
	}()
	mp, err := prepareMountpoint(g.root, runMountpoint(g.root, w.name))
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
	st.Mountpoint, st.PID, st.Lowers = mp, 0, lowers
	if err := w.save(st); err != nil {
		return nil, err
	}
	pid, err := startServer(ctx, g, w)
	if err != nil {
		return nil, err
	}
	st.PID = pid
	return w, w.save(st)
}

// unmountAfterRun stops the container's mount server and removes the mountpoint
// dir, and the container too with rm. The mountpoint dirs the runtime made
// (made, relative to /) go from the upper dir again if still empty: like docker's
// init layer, they are not the container's changes.
func unmountAfterRun(w *workContainer, rm bool, made []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unlock, err := lockContainer(ctx, w)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := w.load()
	if err != nil {
		return err
	}
	mp := st.Mountpoint
	if err := unmountContainer(ctx, w, st, true); err != nil { // force: the container is gone, nothing may keep its mount busy
		return err
	}
	if mp != "" && !isMountpoint(mp) {
		os.Remove(mp)
		for _, d := range made {
			os.Remove(filepath.Join(w.upperPath(st), d)) // only if empty
		}
	}
	if rm {
		return w.remove()
	}
	return nil
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// procStartTime is field 22 of /proc/<pid>/stat (0 if unreadable).
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	var n uint64
	fmt.Sscan(f[19], &n)
	return n
}
