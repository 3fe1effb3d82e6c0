package mountcmd

// inspect of working containers, in docker container inspect's shape: what a
// docker user's scripts read (.State.Running, .State.ExitCode, .Config.Cmd,
// .Mounts, .GraphDriver.Data.UpperDir ...), with layerfs's own facts where
// docker has none (the mount's status, its data mode).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
)

// inspectContainerState is docker's .State.
type inspectContainerState struct {
	// Status is docker's word where one fits: running (run's command runs),
	// paused, dead, exited (a run ended), created (never run, not mounted),
	// and layerfs's mounted (mounted, no command running).
	Status     string
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int // the command's pid 1 as the host sees it, while it runs
	ExitCode   int
	Error      string
	StartedAt  string
	FinishedAt string
	// Mount is the union mount's status, as ps shows it: mounted, paused, dead
	// or unmounted; ServerPid its server's pid while mounted.
	Mount     string
	ServerPid int `json:",omitempty"`
}

// inspectMount is one element of docker's .Mounts.
type inspectMount struct {
	Type        string
	Name        string `json:",omitempty"` // a volume's (its dir's name)
	Source      string
	Destination string
	Driver      string `json:",omitempty"` // a volume's: local
	Mode        string
	RW          bool
	Propagation string
}

// volumeMount is the .Mounts element of an anonymous volume kept in dir.
func volumeMount(dir, dest string) inspectMount {
	return inspectMount{Type: "volume", Name: filepath.Base(dir), Source: dir, Destination: dest, Driver: "local", RW: true}
}

// inspectEndpoint is one of NetworkSettings.Networks.
type inspectEndpoint struct {
	NetworkID   string
	EndpointID  string
	Gateway     string
	IPAddress   string
	IPPrefixLen int
	MacAddress  string
}

// inspectContainer is one working container in docker container inspect's shape.
type inspectContainer struct {
	Id              string //nolint:revive // docker's field name
	Created         string
	Path            string
	Args            []string
	State           inspectContainerState
	Image           string
	ResolvConfPath  string
	HostnamePath    string
	HostsPath       string
	LogPath         string
	Name            string
	RestartCount    int
	Driver          string
	Platform        string
	MountLabel      string
	ProcessLabel    string
	AppArmorProfile string
	HostConfig      struct {
		Binds          []string
		NetworkMode    string
		ReadonlyRootfs bool
		ExtraHosts     []string
		Privileged     bool
		CapAdd         []string
		CapDrop        []string
		Init           *bool `json:",omitempty"`
		RestartPolicy  struct {
			Name              string
			MaximumRetryCount int
		}
		// What run's flags set, in docker's shapes (null or empty as docker's
		// when not given): scripts read these with inspect -f.
		AutoRemove   bool
		ShmSize      int64
		Ulimits      []inspectUlimit
		Tmpfs        map[string]string `json:",omitempty"`
		Devices      []inspectDevice
		PortBindings map[string]any
	}
	// NetworkSettings: the host's network (or none), so no address of the
	// container's own; the fields docker's scripts read are there, empty.
	NetworkSettings struct {
		Bridge     string
		SandboxKey string
		Ports      map[string]any
		IPAddress  string
		Gateway    string
		MacAddress string
		Networks   map[string]inspectEndpoint
	}
	GraphDriver struct {
		Data map[string]string
		Name string
	}
	SizeRw     *int64 `json:",omitempty"`
	SizeRootFs *int64 `json:",omitempty"`
	Mounts     []inspectMount
	Config     inspectConfig
}

// inspectUlimit is docker's HostConfig.Ulimits entry.
type inspectUlimit struct {
	Name       string
	Hard, Soft int64
}

// inspectDevice is docker's HostConfig.Devices entry.
type inspectDevice struct {
	PathOnHost, PathInContainer, CgroupPermissions string
}

// containerState derives docker's .State from the mount, run.json and exit.json.
func containerState(ctx context.Context, w *workContainer, st *workState) inspectContainerState {
	out := inspectContainerState{StartedAt: zeroTime, FinishedAt: zeroTime}
	out.Mount = w.status(st)
	if out.Mount == statusMounted {
		out.ServerPid = st.PID
		if ss := queryStatus(ctx, w); ss != nil {
			out.ServerPid = ss.PID
			if ss.Paused {
				out.Mount = statusPaused
			}
		}
	}
	rec := loadExit(w)
	rs := loadRunState(w)
	if lost := lostRun(w, rs, rec); lost != nil { // killed with its monitor, not settled yet
		rec = lost
	}
	if rec != nil {
		out.ExitCode, out.Error = rec.ExitCode, rec.Error
		out.StartedAt, out.FinishedAt = rfc3339(rec.Started), rfc3339(rec.Finished)
	}
	running := rs.alive() && out.Mount != statusUnmounted
	out.Status = dockerStatus(out.Mount, running, ranBefore(w))
	if out.Status == "exited" && noExitRecorded(w, rs, rec) {
		out.ExitCode, out.Error = unknownExitCode, unknownExitError
	}
	switch out.Status {
	case "paused":
		out.Paused = true
	case "dead":
		out.Dead = true
	}
	if running {
		out.Running, out.Pid = true, rs.Pid
		out.StartedAt, out.ExitCode, out.Error = rfc3339(rs.Started), 0, ""
		if rec != nil && !rec.Finished.Before(rs.Started) {
			out.FinishedAt = zeroTime
		}
	}
	return out
}

// dockerStatus is docker's word for a container's state, from its mount's
// status, whether run's command runs in it, and whether a run of it ended.
func dockerStatus(mount string, running, exited bool) string {
	switch {
	case mount == statusPaused || mount == statusDead:
		return mount
	case running:
		return "running"
	case mount == statusMounted:
		return statusMounted
	case exited:
		return "exited"
	}
	return "created"
}

// savedCommand is the process a container made by run (or create) runs: its
// saved options over its image's config; ok=false for one run never made.
func savedCommand(w *workContainer, img *blobstore.Image) (sr *savedRun, spec build.ProcessSpec, ok bool) {
	sr = loadSavedRun(w)
	if sr == nil || img == nil {
		return sr, spec, false
	}
	o := &runOptions{env: sr.Env, workdir: sr.Workdir, user: sr.User, entrypoint: sr.Entrypoint,
		entrypointSet: sr.entrypointSet(), volumes: sr.Volumes}
	spec, err := processSpec(o, img, sr.Args)
	return sr, spec, err == nil && len(spec.Args) > 0
}

const zeroTime = "0001-01-01T00:00:00Z"

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return zeroTime
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// newInspectContainer builds what inspect shows of one container; imgs are the
// store's images (for the container's image config), size asks for SizeRw and
// SizeRootFs as docker inspect -s.
func newInspectContainer(ctx context.Context, g *globalOptions, s *blobstore.Store, imgs []*blobstore.Image, w *workContainer, st *workState, size bool) (inspectContainer, error) {
	out := inspectContainer{
		Id: containerID(st), Created: rfc3339(st.Created), Args: []string{},
		Image: st.ImageID.String(), Name: "/" + w.name, Driver: "layerfs", Platform: "linux",
		Mounts: []inspectMount{},
	}
	out.State = containerState(ctx, w, st)
	out.HostConfig.NetworkMode = "host"
	out.HostConfig.RestartPolicy.Name = "no"
	out.HostConfig.ReadonlyRootfs = st.ReadOnly
	out.NetworkSettings.Ports = map[string]any{}
	var img *blobstore.Image
	for _, i := range imgs {
		if i.ID == st.ImageID {
			img = i
			break
		}
	}
	var raw struct {
		Config dockerspec.DockerOCIImageConfig `json:"config"`
	}
	if img != nil {
		json.Unmarshal(img.RawConfig, &raw)
	}
	out.Config = dockerConfig(raw.Config)
	out.Config.Image = st.ImageRef
	if out.Config.Image == "" {
		out.Config.Image = st.ImageID.String()
	}
	if out.Config.Env == nil {
		out.Config.Env = []string{}
	}
	if sr, spec, ok := savedCommand(w, img); sr != nil {
		out.Config.Hostname = sr.Hostname
		out.Config.Tty, out.Config.OpenStdin = sr.Tty, sr.Interactive
		out.Config.AttachStdin = sr.Interactive
		if ok {
			out.Path, out.Args = spec.Args[0], append([]string{}, spec.Args[1:]...)
			out.Config.Env, out.Config.WorkingDir, out.Config.User = spec.Env, spec.Dir, spec.User
			if len(sr.Args) > 0 {
				out.Config.Cmd = sr.Args
			} else if sr.entrypointSet() {
				out.Config.Cmd = nil // --entrypoint drops the image's CMD
			}
			if sr.entrypointSet() {
				out.Config.Entrypoint = nil
				if sr.Entrypoint != "" {
					out.Config.Entrypoint = []string{sr.Entrypoint}
				}
			}
		}
		if sr.Init {
			out.HostConfig.Init = &sr.Init
		}
		if sr.Network == "none" {
			out.HostConfig.NetworkMode = "none"
		}
		out.HostConfig.ReadonlyRootfs = out.HostConfig.ReadonlyRootfs || sr.ReadOnly
		out.HostConfig.ExtraHosts = sr.AddHosts
		out.HostConfig.Privileged, out.HostConfig.CapAdd, out.HostConfig.CapDrop = sr.Privileged, sr.CapAdd, sr.CapDrop
		out.HostConfig.AutoRemove = sr.Rm
		if limits, shm, err := parseLimits(sr.Ulimits, sr.ShmSize); err == nil {
			if shm > 0 {
				out.HostConfig.ShmSize = shm
			}
			for _, u := range limits {
				out.HostConfig.Ulimits = append(out.HostConfig.Ulimits, inspectUlimit{Name: u.Name, Hard: u.Hard, Soft: u.Soft})
			}
		}
		for _, t := range sr.Tmpfs {
			if out.HostConfig.Tmpfs == nil {
				out.HostConfig.Tmpfs = map[string]string{}
			}
			target, opts, _ := strings.Cut(t, ":")
			out.HostConfig.Tmpfs[target] = opts
		}
		if devs, err := parseDevices(sr.Devices); err == nil {
			for i, d := range devs {
				perms := "rwm"
				if parts := strings.Split(sr.Devices[i], ":"); len(parts) == 3 {
					perms = parts[2]
				}
				out.HostConfig.Devices = append(out.HostConfig.Devices, inspectDevice{PathOnHost: d.Source, PathInContainer: d.Target, CgroupPermissions: perms})
			}
		}
		out.Config.Labels = containerLabels(img, sr)
		if sr.StopSignal != "" {
			out.Config.StopSignal = sr.StopSignal
		}
		out.Config.StopTimeout = sr.StopTimeout
		if anon := anonymousVolumePaths(sr.Volumes); len(anon) > 0 { // docker's Config.Volumes has run's -v CONTAINER
			vols := map[string]struct{}{}
			for k := range out.Config.Volumes {
				vols[k] = struct{}{}
			}
			for _, v := range anon {
				vols[v] = struct{}{}
			}
			out.Config.Volumes = vols
		}
		out.HostConfig.Binds = append([]string{}, sr.Volumes...)
		binds, _ := parseVolumes(sr.Volumes)
		more, _ := parseMounts(sr.Mounts)
		tmpfs, _ := parseTmpfs(sr.Tmpfs)
		for _, b := range append(append(binds, more...), tmpfs...) {
			m := inspectMount{Type: "bind", Source: b.Source, Destination: b.Target, RW: !b.ReadOnly, Propagation: "rprivate"}
			if b.Tmpfs {
				m.Type, m.Propagation = "tmpfs", ""
			} else if b.Source == "" { // -v CONTAINER: an anonymous volume
				m = volumeMount(volumeDir(w, b.Target), b.Target)
				m.RW = !b.ReadOnly
			}
			if b.ReadOnly {
				m.Mode = "ro"
			}
			out.Mounts = append(out.Mounts, m)
		}
		etc := filepath.Join(w.Dir(), "etc")
		out.HostnamePath = filepath.Join(etc, "hostname")
		out.HostsPath = filepath.Join(etc, "hosts")
		out.ResolvConfPath = filepath.Join(etc, "resolv.conf")
		if _, err := os.Stat(containerJSONLogPath(w)); err == nil {
			out.LogPath = containerJSONLogPath(w)
		}
	}
	out.Mounts = append(out.Mounts, imageVolumeMounts(w, img, out.Mounts)...)
	if out.HostConfig.Binds == nil {
		out.HostConfig.Binds = []string{}
	}
	if out.HostConfig.ShmSize == 0 {
		out.HostConfig.ShmSize = 64 << 20 // docker's default, as /dev/shm gets
	}
	if out.HostConfig.Ulimits == nil {
		out.HostConfig.Ulimits = []inspectUlimit{}
	}
	if out.HostConfig.Devices == nil {
		out.HostConfig.Devices = []inspectDevice{}
	}
	out.HostConfig.PortBindings = map[string]any{} // no published ports: host network
	lowers := st.Lowers
	if len(lowers) == 0 && img != nil {
		for i := len(img.Config.RootFS.DiffIDs) - 1; i >= 0; i-- {
			lowers = append(lowers, filepath.Join(g.root, "layers", img.Config.RootFS.DiffIDs[i].Encoded()))
		}
	}
	out.GraphDriver.Name = "layerfs"
	out.GraphDriver.Data = map[string]string{
		"LowerDir": strings.Join(lowers, ":"),
		"UpperDir": w.upperPath(st),
		"WorkDir":  w.ScratchDir(),
	}
	if out.State.Mount != statusUnmounted && st.Mountpoint != "" {
		out.GraphDriver.Data["MergedDir"] = st.Mountpoint
	}
	if st.Passthrough {
		out.GraphDriver.Data["DataMode"] = "passthrough"
	}
	if size {
		rw, err := treeSize(w.upperPath(st))
		if err != nil {
			return out, fmt.Errorf("container %s: size: %w", w.name, err)
		}
		rootfs := rw
		if img != nil {
			sizes, err := s.LayerSizes(ctx, img)
			if err != nil {
				return out, err
			}
			rootfs += img.ContentSize(sizes)
		}
		out.SizeRw, out.SizeRootFs = &rw, &rootfs
	}
	out.NetworkSettings.Networks = map[string]inspectEndpoint{out.HostConfig.NetworkMode: {}}
	return out, nil
}

// containerLabels are the container's labels: its image's, then run's --label.
func containerLabels(img *blobstore.Image, sr *savedRun) map[string]string {
	labels := map[string]string{}
	if img != nil {
		for k, v := range img.Config.Config.Labels {
			labels[k] = v
		}
	}
	if sr != nil {
		for k, v := range parseLabels(sr.Labels) {
			labels[k] = v
		}
	}
	return labels
}

// loadSavedRun reads run-config.json; nil for a container run never ran.
func loadSavedRun(w *workContainer) *savedRun {
	return readJSONFile[savedRun](runConfigPath(w))
}

// imageVolumeMounts are the image's VOLUMEs a run gave the container (its
// volumes/ dirs, see imageVolumes), as docker lists anonymous volumes.
func imageVolumeMounts(w *workContainer, img *blobstore.Image, binds []inspectMount) []inspectMount {
	if img == nil {
		return nil
	}
	var out []inspectMount
next:
	for v := range img.Config.Config.Volumes {
		p := filepath.Clean("/" + v)
		for _, b := range binds {
			if filepath.Clean(b.Destination) == p {
				continue next
			}
		}
		dir := volumeDir(w, p)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		out = append(out, volumeMount(dir, p))
	}
	return out
}

// treeSize is the size of the files under dir as docker counts a container's
// SizeRw: regular files' sizes, each inode once.
func treeSize(dir string) (int64, error) { return sizeOfTree(dir, true) }

// sizeOfTree is treeSize; not strict, it counts what it can read and goes on
// past what it cannot.
func sizeOfTree(dir string, strict bool) (int64, error) {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || !strict {
				if d != nil && d.IsDir() && path != dir {
					return fs.SkipDir
				}
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			k := key{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += fi.Size()
		return nil
	})
	return total, err
}
