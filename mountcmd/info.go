package mountcmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/registry"
)

func init() { addVerb(newInfoCommand) }

type infoOptions struct {
	format string
}

// newInfoCommand is docker info (also `system info`): what the store holds and
// what this machine offers layerfs.
func newInfoCommand(g *globalOptions) *cobra.Command {
	o := &infoOptions{}
	cmd := &cobra.Command{
		Use:   "info [--format TEMPLATE]",
		Short: "Display system-wide information",
		Long: `Display system-wide information, shaped as docker info's. There is no daemon:
the Server section is the store under --root and this machine. Containers count
working containers by status: mounted (docker's running), paused, dead and
unmounted (docker's stopped). Passthrough is the data mode of mount --passthrough;
it needs root and Linux 6.9 or later, and the kernel has the last word at each
mount (it falls back to the default mode by itself).

--format takes a Go template over docker's names (.Containers .ContainersRunning
.ContainersPaused .ContainersStopped .Images .Driver .DriverStatus .KernelVersion
.OperatingSystem .OSType .Architecture .NCPU .MemTotal .Name .DockerRootDir
.IndexServerAddress .ServerVersion (layerfs's version) .Debug) and layerfs's (.ContainersDead .LayerfsRootDir
.BackingFilesystem .LayersCached .Passthrough .FUSE .ClientInfo), or "json".`,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := gatherInfo(cmd.Context(), g)
			if err != nil {
				return err
			}
			return writeInfo(cmd.OutOrStdout(), cmd.ErrOrStderr(), info, o.format)
		},
	}
	cmd.Flags().StringVarP(&o.format, "format", "f", "", "format output: json or a Go template")
	return cmd
}

// systemInfo is what info shows; docker's field names where one applies.
type systemInfo struct {
	ClientInfo         clientInfo
	Containers         int
	ContainersRunning  int // mounted
	ContainersPaused   int
	ContainersStopped  int // unmounted
	ContainersDead     int
	Images             int
	Driver             string
	DriverStatus       [][2]string
	BackingFilesystem  string
	LayersCached       int
	Passthrough        passthroughInfo
	KernelVersion      string
	OperatingSystem    string
	OSType             string
	Architecture       string
	NCPU               int
	MemTotal           int64
	Name               string
	ServerVersion      string // layerfs's version: scripts test docker's with it
	LayerfsRootDir     string
	IndexServerAddress string
	RegistryConfig     registryInfo
	FUSE               fuseInfo
	Debug              bool
	Warnings           []string
}

type clientInfo struct {
	Version string
	Debug   bool
}

// passthroughInfo: whether mount --passthrough can pass file data through here.
type passthroughInfo struct {
	Available bool
	Reason    string `json:",omitempty"` // why not, when not
}

type registryInfo struct {
	Mirrors            []string
	InsecureRegistries []string
}

type fuseInfo struct {
	Device        string
	DevicePresent bool
	Fusermount    string // fusermount3's path, "" when not found
}

// DockerRootDir is docker's name for the root dir, for docker users' templates.
func (i systemInfo) DockerRootDir() string { return i.LayerfsRootDir }

// hubIndexServer is docker's IndexServerAddress: where unqualified names go.
const hubIndexServer = "https://index.docker.io/v1/"

func gatherInfo(ctx context.Context, g *globalOptions) (*systemInfo, error) {
	i := &systemInfo{
		ClientInfo:         clientInfo{Version: Version, Debug: g.debug},
		ServerVersion:      Version,
		Driver:             "layerfs",
		OSType:             runtime.GOOS,
		NCPU:               runtime.NumCPU(),
		LayerfsRootDir:     g.root,
		IndexServerAddress: hubIndexServer,
		Debug:              g.debug,
	}
	_, imgs, err := openImages(g)
	if err != nil {
		return nil, err
	}
	i.Images = len(imgs)
	rows, _, err := psRows(ctx, g, false)
	if err != nil {
		return nil, err
	}
	i.Containers = len(rows)
	for _, r := range rows {
		switch r.Mount {
		case statusMounted:
			i.ContainersRunning++
		case statusPaused:
			i.ContainersPaused++
		case statusDead:
			i.ContainersDead++
		default:
			i.ContainersStopped++
		}
	}
	i.BackingFilesystem = backingFilesystem(g.root)
	i.LayersCached = countLayerDirs(filepath.Join(g.root, "layers"))
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		i.KernelVersion = unix.ByteSliceToString(uts.Release[:])
		i.Architecture = unix.ByteSliceToString(uts.Machine[:])
	}
	i.Passthrough = passthroughAvailable(os.Geteuid(), i.KernelVersion)
	i.OperatingSystem = osPrettyName()
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err == nil {
		i.MemTotal = int64(si.Totalram) * int64(si.Unit)
	}
	i.Name, _ = os.Hostname()
	if cfg, err := registry.LoadConfig(""); err == nil {
		i.RegistryConfig = registryInfo{Mirrors: cfg.Mirrors, InsecureRegistries: cfg.Insecure}
	} else {
		i.Warnings = append(i.Warnings, fmt.Sprintf("WARNING: %v", err))
	}
	i.FUSE.Device = "/dev/fuse"
	if fi, err := os.Stat(i.FUSE.Device); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		i.FUSE.DevicePresent = true
	} else {
		i.Warnings = append(i.Warnings, "WARNING: /dev/fuse is missing: mount, run and build cannot work")
	}
	if p, err := exec.LookPath("fusermount3"); err == nil {
		i.FUSE.Fusermount = p
	} else if os.Geteuid() != 0 {
		i.Warnings = append(i.Warnings, "WARNING: fusermount3 not found: a non-root user cannot mount")
	}
	pt := "available"
	if !i.Passthrough.Available {
		pt = "unavailable (" + i.Passthrough.Reason + ")"
	}
	i.DriverStatus = [][2]string{
		{"Backing Filesystem", i.BackingFilesystem},
		{"Layers Cached", strconv.Itoa(i.LayersCached)},
		{"Default Data Mode", "no-open"},
		{"Passthrough", pt},
	}
	return i, nil
}

// passthroughAvailable is mount --passthrough's precondition as fs.Mount
// checks it (root), plus the kernel release FUSE passthrough came with (6.9);
// whether the kernel grants it (CONFIG_FUSE_PASSTHROUGH) is known only at a
// mount, where fs falls back to the default mode.
func passthroughAvailable(euid int, release string) passthroughInfo {
	if euid != 0 {
		return passthroughInfo{Reason: "needs root"}
	}
	major, minor, ok := kernelMajorMinor(release)
	if !ok {
		return passthroughInfo{Reason: "unknown kernel release " + strconv.Quote(release)}
	}
	if major < 6 || major == 6 && minor < 9 {
		return passthroughInfo{Reason: fmt.Sprintf("needs Linux 6.9 or later, this is %d.%d", major, minor)}
	}
	return passthroughInfo{Available: true}
}

// kernelMajorMinor parses "6.18.44-fc" as 6, 18.
func kernelMajorMinor(release string) (major, minor int, ok bool) {
	a, rest, found := strings.Cut(release, ".")
	if !found {
		return 0, 0, false
	}
	b := rest
	if n := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); n >= 0 {
		b = rest[:n]
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, err1 == nil && err2 == nil
}

// backingFilesystem is the type of the filesystem holding root (its nearest
// existing ancestor), from the mount table: the mount with the longest
// mountpoint containing it, the last of equals (mounted on top).
func backingFilesystem(root string) string {
	p := root
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
			break
		}
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	best, fstype := -1, "unknown"
	for _, m := range readMounts() {
		mp := m.Mountpoint
		if p == mp || mp == "/" || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/") {
			if len(mp) >= best {
				best, fstype = len(mp), m.FSType
			}
		}
	}
	return fstype
}

// countLayerDirs counts the unpacked layers under dir.
func countLayerDirs(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() && digest.NewDigestFromEncoded(digest.SHA256, e.Name()).Validate() == nil {
			n++
		}
	}
	return n
}

// osPrettyName is os-release(5)'s PRETTY_NAME, "Linux" when there is none.
func osPrettyName() string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			break
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
				if u, err := strconv.Unquote(v); err == nil {
					return u
				}
				return strings.Trim(v, `"'`)
			}
		}
		break
	}
	return "Linux"
}

func writeInfo(out, errOut io.Writer, i *systemInfo, format string) error {
	switch format {
	case "":
	case "json":
		return writeJSON(out, i, "")
	default:
		tmpl, _, err := parseFormat(format)
		if err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		if err := tmpl.Execute(out, i); err != nil {
			return err
		}
		_, err = fmt.Fprintln(out)
		return err
	}
	b := &strings.Builder{}
	p := func(indent int, k string, v any) { fmt.Fprintf(b, "%s%s: %v\n", strings.Repeat(" ", indent), k, v) }
	b.WriteString("Client:\n")
	p(1, "Version", i.ClientInfo.Version)
	p(1, "Debug Mode", i.ClientInfo.Debug)
	b.WriteString("\nServer:\n")
	p(1, "Containers", i.Containers)
	p(2, "Mounted", i.ContainersRunning)
	p(2, "Paused", i.ContainersPaused)
	p(2, "Dead", i.ContainersDead)
	p(2, "Unmounted", i.ContainersStopped)
	p(1, "Images", i.Images)
	p(1, "Storage Driver", i.Driver)
	for _, kv := range i.DriverStatus {
		p(2, kv[0], kv[1])
	}
	b.WriteString(" FUSE:\n")
	dev := i.FUSE.Device
	if !i.FUSE.DevicePresent {
		dev += " (missing)"
	}
	p(2, "Device", dev)
	fm := i.FUSE.Fusermount
	if fm == "" {
		fm = "not found"
	}
	p(2, "fusermount3", fm)
	p(1, "Kernel Version", i.KernelVersion)
	p(1, "Operating System", i.OperatingSystem)
	p(1, "OSType", i.OSType)
	p(1, "Architecture", i.Architecture)
	p(1, "CPUs", i.NCPU)
	p(1, "Total Memory", units.BytesSize(float64(i.MemTotal)))
	p(1, "Name", i.Name)
	p(1, "Layerfs Root Dir", i.LayerfsRootDir)
	p(1, "Debug Mode", i.Debug)
	p(1, "Registry", i.IndexServerAddress)
	for _, l := range []struct {
		k  string
		vs []string
	}{{"Insecure Registries", i.RegistryConfig.InsecureRegistries}, {"Registry Mirrors", i.RegistryConfig.Mirrors}} {
		if len(l.vs) == 0 {
			continue
		}
		fmt.Fprintf(b, " %s:\n", l.k)
		for _, v := range l.vs {
			fmt.Fprintf(b, "  %s\n", v)
		}
	}
	if _, err := io.WriteString(out, b.String()); err != nil {
		return err
	}
	for _, w := range i.Warnings {
		fmt.Fprintln(errOut, w)
	}
	return nil
}
