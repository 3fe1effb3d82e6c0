package mountcmd

// run's (and create's) options past the basics: checks, the hand-off to run -d's
// monitor, and docker's --tmpfs and --mount syntaxes.

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	units "github.com/docker/go-units"

	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/registry"
)

// runOptionsFD is the monitor's fd on which run -d hands over its options (a
// savedRun in JSON).
const runOptionsFD = 3

// fromParent reads the options run -d handed over on runOptionsFD.
func (o *runOptions) fromParent() error {
	f := os.NewFile(runOptionsFD, "run options")
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("run options: %w", err)
	}
	var sr savedRun
	if err := json.Unmarshal(b, &sr); err != nil {
		return fmt.Errorf("run options: %w", err)
	}
	n := sr.options(o.name)
	n.child, n.reuse, n.pull, n.id = o.child, o.reuse, "never", o.id
	*o = *n
	if o.id != "" && (len(o.id) != 64 || !isHexString(o.id)) {
		return fmt.Errorf("--detached-id %q: want 64 hex digits", o.id)
	}
	return nil
}

// check reads --env-file and refuses values layerfs cannot honour, naming the
// flag; it normalises --add-host's host-gateway.
func (o *runOptions) check() error {
	if len(o.envFiles) > 0 {
		fileEnv, err := readEnvFiles(o.envFiles)
		if err != nil {
			return err
		}
		o.env, o.envFiles = append(fileEnv, o.env...), nil // -e wins
	}
	switch o.network {
	case "", "default", "host", "bridge", "none":
	default:
		return fmt.Errorf("invalid argument %q for \"--network\" flag: want host or none (containers use the host's network or none)", o.network)
	}
	if err := checkPlatform(o.platform, "containers run natively"); err != nil {
		return err
	}
	hosts, err := checkAddHosts(o.addHosts)
	if err != nil {
		return err
	}
	o.addHosts = hosts
	if o.mounts, err = absMountSources(o.mounts); err != nil {
		return err
	}
	if err := checkLabels(o.labels); err != nil {
		return err
	}
	if o.stopSignal != "" {
		if sig, err := parseSignal(o.stopSignal); err != nil || sig <= 0 || sig > 64 {
			return fmt.Errorf("invalid argument %q for \"--stop-signal\" flag: not a signal", o.stopSignal)
		}
	}
	caps, err := build.RunCaps(o.privileged, o.capAdd, o.capDrop)
	if err != nil {
		return fmt.Errorf("invalid --cap-add or --cap-drop: %w", err)
	}
	if o.init && !slices.Equal(caps, []string{build.AllCaps}) && slices.Contains(caps, "CAP_SYS_PTRACE") && !build.CanCapAllThreads() {
		// A cgo-linked layerfs's init keeps every capability: a container
		// that may ptrace could take it over and have them all.
		return errors.New("--init with CAP_SYS_PTRACE is refused: the container could take over the init, which keeps every capability in a cgo-linked layerfs (build it with CGO_ENABLED=0, or --privileged if that is meant)")
	}
	if _, _, err := parseLimits(o.ulimits, o.shmSize); err != nil {
		return err
	}
	if o.restart != "" && o.restart != "no" {
		return fmt.Errorf("--restart %s: layerfs has no daemon to restart containers: only \"no\" (restart them with layerfs start, or a service manager)", o.restart)
	}
	if o.stopTimeout.set && o.stopTimeout.v < -1 {
		return fmt.Errorf("invalid argument %d for \"--stop-timeout\" flag: want seconds, 0 or more, or -1 for no limit", o.stopTimeout.v)
	}
	return nil
}

// checkPlatform refuses a --platform other than this host's (why says why).
func checkPlatform(platform, why string) error {
	if platform == "" {
		return nil
	}
	native := registry.DefaultPlatform()
	if p := strings.TrimSuffix(platform, "/"); p != native && !strings.HasPrefix(native, p+"/") && "linux/"+p != native {
		return fmt.Errorf("--platform %s: only %s here (%s)", platform, native, why)
	}
	return nil
}

// checkAddHosts checks --add-host HOST:IP (or HOST=IP) values and returns them
// with host-gateway made the loopback address: containers share the host's
// network, so the host is 127.0.0.1.
func checkAddHosts(hosts []string) ([]string, error) {
	var out []string
	for _, h := range hosts {
		sep := "="
		name, ip, ok := strings.Cut(h, sep)
		if !ok {
			sep = ":"
			name, ip, ok = strings.Cut(h, sep)
		}
		if !ok || name == "" || (net.ParseIP(ip) == nil && ip != "host-gateway") {
			return nil, fmt.Errorf("invalid argument %q for \"--add-host\" flag: want HOST:IP", h)
		}
		if ip == "host-gateway" {
			h = name + sep + "127.0.0.1"
		}
		out = append(out, h)
	}
	return out, nil
}

// tmpfsDefaults are docker's flags for a container's tmpfs mounts, before the
// user's own.
var tmpfsDefaults = []string{"nosuid", "nodev", "noexec"}

// parseTmpfs parses docker's --tmpfs PATH[:OPTIONS]: docker's defaults
// (nosuid,nodev,noexec), then size=, mode=, ro/rw and the mount options
// build.TmpfsOptions knows, in order.
func parseTmpfs(specs []string) ([]build.Bind, error) {
	var out []build.Bind
	for _, spec := range specs {
		target, opts, _ := strings.Cut(spec, ":")
		if !filepath.IsAbs(target) {
			return nil, fmt.Errorf("invalid tmpfs %q: the mount path must be absolute", spec)
		}
		b := build.Bind{Target: filepath.Clean(target), Tmpfs: true, Options: append([]string(nil), tmpfsDefaults...)}
		for _, opt := range strings.Split(opts, ",") {
			k, v, _ := strings.Cut(opt, "=")
			var err error
			switch k {
			case "":
			case "size":
				if b.Size, err = tmpfsSize(v); err != nil {
					return nil, fmt.Errorf("invalid tmpfs %q: %w", spec, err)
				}
			case "mode":
				if b.Mode, err = tmpfsMode(v); err != nil {
					return nil, fmt.Errorf("invalid tmpfs %q: %w", spec, err)
				}
			case "ro", "rw":
				b.ReadOnly = opt == "ro"
			default:
				b.Options = append(b.Options, opt)
			}
		}
		if _, _, err := build.TmpfsOptions(b); err != nil {
			return nil, fmt.Errorf("invalid tmpfs %q: %w", spec, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// parseMounts parses docker's --mount (CSV of key=value): type=bind (the source
// must exist, as docker wants) and type=tmpfs. Volumes need a daemon.
func parseMounts(specs []string) ([]build.Bind, error) {
	var out []build.Bind
	for _, spec := range specs {
		fields, err := csv.NewReader(strings.NewReader(spec)).Read()
		if err != nil {
			return nil, fmt.Errorf("invalid --mount %q: %w", spec, err)
		}
		typ := "volume"
		var b build.Bind
		for _, f := range fields {
			k, v, hasValue := strings.Cut(f, "=")
			switch strings.ToLower(k) {
			case "type":
				typ = v
			case "source", "src":
				b.Source = v
			case "target", "destination", "dst":
				b.Target = v
			case "readonly", "ro":
				ro := true
				if hasValue {
					if ro, err = strconv.ParseBool(v); err != nil {
						return nil, fmt.Errorf("invalid --mount %q: %s=%s", spec, k, v)
					}
				}
				b.ReadOnly = ro
			case "tmpfs-size":
				if b.Size, err = tmpfsSize(v); err != nil {
					return nil, fmt.Errorf("invalid --mount %q: tmpfs-%w", spec, err)
				}
			case "tmpfs-mode":
				if b.Mode, err = tmpfsMode(v); err != nil {
					return nil, fmt.Errorf("invalid --mount %q: tmpfs-%w", spec, err)
				}
			case "bind-propagation", "consistency", "bind-recursive":
			default:
				return nil, fmt.Errorf("invalid --mount %q: unknown field %q", spec, k)
			}
		}
		if !filepath.IsAbs(b.Target) {
			return nil, fmt.Errorf("invalid --mount %q: the target must be an absolute path", spec)
		}
		b.Target = filepath.Clean(b.Target)
		switch typ {
		case "bind":
			if b.Size != 0 || b.Mode != 0 {
				return nil, fmt.Errorf("invalid --mount %q: tmpfs options on a bind mount", spec)
			}
			if b.Source == "" {
				return nil, fmt.Errorf("invalid --mount %q: a bind mount needs a source", spec)
			}
			abs, err := filepath.Abs(b.Source)
			if err != nil {
				return nil, err
			}
			if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("invalid --mount %q: bind source path does not exist: %s", spec, abs)
			} else if err != nil {
				return nil, fmt.Errorf("invalid --mount %q: %w", spec, err)
			}
			b.Source = abs
		case "tmpfs":
			if b.Source != "" {
				return nil, fmt.Errorf("invalid --mount %q: a tmpfs takes no source", spec)
			}
			b.Tmpfs, b.Options = true, append([]string(nil), tmpfsDefaults...)
		default:
			return nil, fmt.Errorf("invalid --mount %q: type %q: bind and tmpfs only (named volumes need a daemon)", spec, typ)
		}
		out = append(out, b)
	}
	return out, nil
}

// checkLabels refuses a --label without a key.
func checkLabels(labels []string) error {
	for _, l := range labels {
		if k, _, _ := strings.Cut(l, "="); k == "" {
			return fmt.Errorf("invalid argument %q for \"--label\" flag: no key", l)
		}
	}
	return nil
}

// parseLimits parses --ulimit values and --shm-size (docker's units; "" is the
// default size).
func parseLimits(ulimits []string, shmSize string) ([]build.Ulimit, int64, error) {
	var out []build.Ulimit
	for _, u := range ulimits {
		l, err := build.ParseUlimit(u)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, l)
	}
	var shm int64
	if shmSize != "" {
		n, err := units.RAMInBytes(shmSize)
		if err != nil || n <= 0 {
			return nil, 0, fmt.Errorf("invalid argument %q for \"--shm-size\" flag: want a size (64m, 1g)", shmSize)
		}
		shm = n
	}
	return out, shm, nil
}

// absMountSources makes the bind sources of --mount values absolute, in the
// caller's working dir: run -d's monitor runs in /, and start anywhere.
func absMountSources(specs []string) ([]string, error) {
	var out []string
	for _, spec := range specs {
		fields, err := csv.NewReader(strings.NewReader(spec)).Read()
		if err != nil {
			return nil, fmt.Errorf("invalid --mount %q: %w", spec, err)
		}
		changed := false
		for i, f := range fields {
			k, v, _ := strings.Cut(f, "=")
			if k := strings.ToLower(k); (k == "source" || k == "src") && v != "" && !filepath.IsAbs(v) {
				abs, err := filepath.Abs(v)
				if err != nil {
					return nil, err
				}
				fields[i], changed = k+"="+abs, true
			}
		}
		if changed {
			var b strings.Builder
			w := csv.NewWriter(&b)
			w.Write(fields)
			w.Flush()
			spec = strings.TrimSuffix(b.String(), "\n")
		}
		out = append(out, spec)
	}
	return out, nil
}

// addsCap reports whether --cap-add gives the capability name (without CAP_),
// or ALL.
func addsCap(add []string, name string) bool {
	for _, a := range add {
		switch strings.TrimPrefix(strings.ToUpper(a), "CAP_") {
		case name, "ALL":
			return true
		}
	}
	return false
}

// tmpfsSize is a tmpfs size in docker's units (64m, 1g).
func tmpfsSize(v string) (int64, error) {
	n, err := units.RAMInBytes(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q", v)
	}
	return n, nil
}

// tmpfsMode is a tmpfs root mode in octal.
func tmpfsMode(v string) (uint32, error) {
	m, err := strconv.ParseUint(v, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("mode %q", v)
	}
	return uint32(m), nil
}

// optionalInt is an int flag that knows whether it was given (run's
// --stop-timeout: -1 is docker's "no limit", apart from not given).
type optionalInt struct {
	v   int
	set bool
}

func (o *optionalInt) String() string {
	if !o.set {
		return ""
	}
	return strconv.Itoa(o.v)
}

func (o *optionalInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	o.v, o.set = v, true
	return nil
}

func (o *optionalInt) Type() string { return "int" }

// ptr is the value to record (nil: not given).
func (o optionalInt) ptr() *int {
	if !o.set {
		return nil
	}
	v := o.v
	return &v
}
