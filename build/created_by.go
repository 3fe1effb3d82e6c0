package build

// History lines (created_by) as docker's classic builder writes them.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// shell is the SHELL in effect: the config's, or /bin/sh -c.
func (b *builder) shell() []string {
	if sh := b.img.Config.Shell; len(sh) > 0 {
		return sh
	}
	return defaultShell
}

// nopCreatedBy is a config-only step's created_by as docker's classic builder
// writes it: the SHELL in effect, "#(nop) " and msg joined by spaces (so two
// spaces before msg).
func (b *builder) nopCreatedBy(msg string) string {
	return strings.Join(append(slices.Clone(b.shell()), "#(nop) ", msg), " ")
}

// nopMessage is the message the classic builder commits a config-only step
// with, from the instruction as expanded by its dispatch and the config it
// made: ENV and LABEL as KEY=VALUE, CMD and ENTRYPOINT as the final command
// line with %q (["/bin/sh" "-c" "x"] for the shell form), VOLUME and SHELL
// with %v, HEALTHCHECK with %q of the config.
func (b *builder) nopMessage(c instructions.Command) string {
	cfg := &b.img.Config
	kvs := func(name string, kvs instructions.KeyValuePairs) string {
		msg := name
		for _, kv := range kvs {
			msg += " " + kv.String()
		}
		return msg
	}
	switch c := c.(type) {
	case *instructions.EnvCommand:
		return kvs("ENV", c.Env)
	case *instructions.LabelCommand:
		return kvs("LABEL", c.Labels)
	case *instructions.CmdCommand:
		return fmt.Sprintf("CMD %q", cfg.Cmd)
	case *instructions.EntrypointCommand:
		return fmt.Sprintf("ENTRYPOINT %q", cfg.Entrypoint)
	case *instructions.ExposeCommand:
		lex, env := b.editor.lex()
		var ports []string
		for _, p := range c.Ports {
			words, err := lex.ProcessWords(p, env)
			if err != nil {
				return commandText(c)
			}
			ports = append(ports, words...)
		}
		return "EXPOSE " + strings.Join(ports, " ")
	case *instructions.UserCommand:
		return "USER " + c.User
	case *instructions.VolumeCommand:
		return fmt.Sprintf("VOLUME %v", c.Volumes)
	case *instructions.StopSignalCommand:
		return "STOPSIGNAL " + c.Signal
	case *instructions.HealthCheckCommand:
		// docker's %q of *HealthConfig, field by field (Retries as a rune).
		h := cfg.Healthcheck
		return fmt.Sprintf("HEALTHCHECK &{%q %q %q %q %q %q}", h.Test, h.Interval, h.Timeout, h.StartPeriod, h.StartInterval, rune(h.Retries))
	case *instructions.OnbuildCommand:
		return "ONBUILD " + c.Expression
	case *instructions.MaintainerCommand:
		return "MAINTAINER " + c.Maintainer
	case *instructions.ShellCommand:
		return fmt.Sprintf("SHELL %v", cfg.Shell)
	case *instructions.ArgCommand:
		var parts []string
		for _, kv := range c.Args {
			if kv.Value != nil {
				parts = append(parts, kv.Key+"="+*kv.Value)
			} else {
				parts = append(parts, kv.Key)
			}
		}
		return "ARG " + strings.Join(parts, " ")
	}
	return commandText(c)
}
