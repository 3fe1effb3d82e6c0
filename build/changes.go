// Package build runs commands in mounted images and builds images from Dockerfiles.
// changes.go is the one home of Dockerfile instructions that only edit an image's
// config (docker's `commit -c`, `import -c`, and the config steps of a build).
package build

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// ErrInvalidChange is wrapped by every error about a `-c`/`--change` instruction:
// a parse error, an instruction that is not a config change, or a bad value.
var ErrInvalidChange = errors.New("invalid change")

// ErrNotConfigInstruction is returned by ConfigEditor.Dispatch for instructions that do
// more than edit the config (RUN, COPY, ADD, FROM, ARG, SHELL, MAINTAINER).
var ErrNotConfigInstruction = errors.New("not a config instruction")

// ChangeInstructions are the instructions `commit -c` and `import -c` accept: docker's
// list (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR, HEALTHCHECK)
// plus STOPSIGNAL.
var ChangeInstructions = []string{"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// defaultShell prefixes the shell form of CMD and ENTRYPOINT when the config sets no SHELL.
var defaultShell = []string{"/bin/sh", "-c"}

// ParseChanges parses docker `--change` values in Dockerfile syntax (JSON and shell
// forms, line continuations, several instructions in one value separated by newlines)
// and checks that each is a config change. As docker does, the values are joined with
// newlines and parsed as one Dockerfile, so a value ending in a backslash continues
// into the next. It applies nothing; use it to reject bad input before doing
// expensive work. Errors wrap ErrInvalidChange.
func ParseChanges(changes []string) ([]instructions.Command, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	res, err := parser.Parse(strings.NewReader(strings.Join(changes, "\n")))
	if err != nil {
		// Name the value at fault where one alone fails.
		for _, ch := range changes {
			if blankChange(ch) {
				continue // fails alone ("no instructions"), not in the whole
			}
			if _, err1 := parser.Parse(strings.NewReader(ch)); err1 != nil {
				return nil, fmt.Errorf("%w %q: %w", ErrInvalidChange, ch, err1)
			}
		}
		return nil, fmt.Errorf("%w %q: %w", ErrInvalidChange, strings.Join(changes, "\n"), err)
	}
	var cmds []instructions.Command
	for _, n := range res.AST.Children {
		name := strings.ToUpper(n.Value)
		if !isChangeInstruction(name) {
			return nil, fmt.Errorf("%w %q: %s is not a valid change command", ErrInvalidChange, n.Original, name)
		}
		cmd, err := instructions.ParseCommand(n)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrInvalidChange, n.Original, err)
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// blankChange reports whether a --change value holds no instruction: only blank
// lines and comments.
func blankChange(ch string) bool {
	for _, l := range strings.Split(ch, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// ApplyChanges applies docker `--change` instructions to cfg in order, with docker's
// semantics: $VAR references expand against the config's Env as it stands before each
// instruction; shell-form CMD and ENTRYPOINT run under the config's SHELL (default
// /bin/sh -c); ENTRYPOINT clears an inherited CMD unless a CMD came earlier in the same
// changes; a relative WORKDIR is joined to the current one. cfg is only modified when
// every change parses and applies (errors wrap ErrInvalidChange).
func ApplyChanges(cfg *dockerspec.DockerOCIImageConfig, changes []string) error {
	cmds, err := ParseChanges(changes)
	if err != nil {
		return err
	}
	work := CopyConfig(*cfg)
	ed := &ConfigEditor{Config: &work}
	for _, c := range cmds {
		if err := ed.Dispatch(c); err != nil {
			return fmt.Errorf("%w %q: %w", ErrInvalidChange, instructionText(c), err)
		}
	}
	*cfg = work
	return nil
}

// ApplyChangesOCI is ApplyChanges for a plain OCI config, which has no place for the
// docker extensions: ONBUILD, HEALTHCHECK and SHELL are refused there.
func ApplyChangesOCI(cfg *ocispec.ImageConfig, changes []string) error {
	d := dockerspec.DockerOCIImageConfig{ImageConfig: *cfg}
	if err := ApplyChanges(&d, changes); err != nil {
		return err
	}
	if d.Healthcheck != nil || len(d.OnBuild) > 0 || len(d.Shell) > 0 {
		return fmt.Errorf("%w: ONBUILD and HEALTHCHECK need a docker image config", ErrInvalidChange)
	}
	*cfg = d.ImageConfig
	return nil
}

// ConfigEditor applies config-only Dockerfile instructions to a config one by one,
// keeping the state docker keeps across a build stage (whether CMD was set, so that a
// later ENTRYPOINT does not clear it). A Dockerfile build hands every instruction to
// Dispatch and handles the ones it refuses with ErrNotConfigInstruction itself.
// Not safe for concurrent use.
type ConfigEditor struct {
	Config *dockerspec.DockerOCIImageConfig
	// BuildArgs are extra variables for $VAR expansion (ARG values in a build);
	// the config's Env wins over them, as in docker.
	BuildArgs []string
	// Escape is the Dockerfile escape token for expansion; 0 means '\'.
	Escape rune

	cmdSet bool
}

// Dispatch expands and applies one instruction. It returns ErrNotConfigInstruction
// (unwrapped) for instructions that are not config changes, and leaves Config alone then.
func (e *ConfigEditor) Dispatch(c instructions.Command) error {
	cfg := e.Config
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(e.expander()); err != nil {
			return err
		}
	}
	switch c := c.(type) {
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.CmdCommand:
		cfg.Cmd = e.cmdLine(c.ShellDependantCmdLine)
		e.cmdSet = true
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = e.cmdLine(c.ShellDependantCmdLine)
		if !e.cmdSet {
			cfg.Cmd = nil
		}
	case *instructions.ExposeCommand:
		ports, err := e.exposedPorts(c.Ports)
		if err != nil {
			return err
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return errors.New("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.WorkdirCommand:
		if c.Path == "" {
			return errors.New("WORKDIR needs a path")
		}
		cfg.WorkingDir = normalizeWorkdir(cfg.WorkingDir, c.Path)
	case *instructions.StopSignalCommand:
		if err := checkSignal(c.Signal); err != nil {
			return err
		}
		cfg.StopSignal = c.Signal
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
	case *instructions.HealthCheckCommand:
		h := *c.Health
		h.Test = append([]string(nil), h.Test...)
		cfg.Healthcheck = &h
	default:
		return ErrNotConfigInstruction
	}
	return nil
}

func (e *ConfigEditor) expander() instructions.SingleWordExpander {
	lex, getter := e.lex()
	return func(word string) (string, error) {
		s, _, err := lex.ProcessWord(word, getter)
		return s, err
	}
}

// lex returns the shell lexer and the variables $VAR references expand against.
func (e *ConfigEditor) lex() (*shell.Lex, shell.EnvGetter) {
	esc := e.Escape
	if esc == 0 {
		esc = parser.DefaultEscapeToken
	}
	env := append(append([]string(nil), e.BuildArgs...), e.Config.Env...)
	return shell.NewLex(esc), shell.EnvsFromSlice(env)
}

// cmdLine resolves the exec or shell form of CMD/ENTRYPOINT as docker does: an empty
// exec form is an empty (not absent) list.
func (e *ConfigEditor) cmdLine(c instructions.ShellDependantCmdLine) []string {
	if len(c.CmdLine) == 0 {
		return []string{}
	}
	if !c.PrependShell {
		return append([]string(nil), c.CmdLine...)
	}
	sh := e.Config.Shell
	if len(sh) == 0 {
		sh = defaultShell
	}
	return append(append([]string(nil), sh...), c.CmdLine...)
}

// exposedPorts turns EXPOSE arguments (80, 80/udp, 8000-8010/tcp, $PORT) into the
// config's "port/proto" keys, one per port of a range. As in docker, EXPOSE is the one
// instruction whose variables expand to several words: with PORTS="80 443",
// EXPOSE $PORTS exposes two ports.
func (e *ConfigEditor) exposedPorts(args []string) ([]string, error) {
	lex, getter := e.lex()
	var specs []string
	for _, a := range args {
		words, err := lex.ProcessWords(a, getter)
		if err != nil {
			return nil, err
		}
		specs = append(specs, words...)
	}
	var out []string
	for _, spec := range specs {
		ports, proto, ok := strings.Cut(spec, "/")
		if !ok || proto == "" {
			proto = "tcp"
		}
		proto = strings.ToLower(proto)
		switch proto {
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("invalid proto %q in EXPOSE %s", proto, spec)
		}
		lo, hi, isRange := strings.Cut(ports, "-")
		start, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("invalid port %q in EXPOSE %s", lo, spec)
		}
		end := start
		if isRange {
			if end, err = parsePort(hi); err != nil || end < start {
				return nil, fmt.Errorf("invalid port range %q in EXPOSE %s", ports, spec)
			}
		}
		for p := start; p <= end; p++ {
			out = append(out, strconv.Itoa(p)+"/"+proto)
		}
	}
	return out, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// setEnv replaces KEY's entry in place (keeping the order docker keeps) or appends it.
func setEnv(env []string, key, value string) []string {
	kv := key + "=" + value
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

func normalizeWorkdir(current, requested string) string {
	if path.IsAbs(requested) {
		return path.Clean(requested)
	}
	return path.Join("/", current, requested)
}

// checkSignal accepts what docker's signal.ParseSignal accepts: a number, or a name
// with or without SIG (any case), including RTMIN+n and RTMAX-n.
func checkSignal(s string) error {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		if n == 0 || n > 64 {
			return fmt.Errorf("invalid signal: %s", s)
		}
		return nil
	}
	name := "SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if unix.SignalNum(name) != 0 {
		return nil
	}
	for _, base := range []string{"SIGRTMIN", "SIGRTMAX"} {
		if name == base {
			return nil
		}
		rest, ok := strings.CutPrefix(name, base)
		if !ok || len(rest) < 2 || (base == "SIGRTMIN") != (rest[0] == '+') || (base == "SIGRTMAX") != (rest[0] == '-') {
			continue
		}
		if n, err := strconv.Atoi(rest[1:]); err == nil && n >= 1 && n <= 15 {
			return nil
		}
	}
	return fmt.Errorf("invalid signal: %s", s)
}

func isChangeInstruction(name string) bool {
	for _, n := range ChangeInstructions {
		if n == name {
			return true
		}
	}
	return false
}

func instructionText(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return c.Name()
}

// CopyConfig returns a deep copy of c, so edits to the copy never alias the parent's
// slices and maps.
func CopyConfig(c dockerspec.DockerOCIImageConfig) dockerspec.DockerOCIImageConfig {
	out := c
	out.Env = cloneSlice(c.Env)
	out.Entrypoint = cloneSlice(c.Entrypoint)
	out.Cmd = cloneSlice(c.Cmd)
	out.OnBuild = cloneSlice(c.OnBuild)
	out.Shell = cloneSlice(c.Shell)
	out.ExposedPorts = cloneMap(c.ExposedPorts)
	out.Volumes = cloneMap(c.Volumes)
	out.Labels = cloneMap(c.Labels)
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		h.Test = cloneSlice(h.Test)
		out.Healthcheck = &h
	}
	return out
}

func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
