package mountcmd

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

type digestT = digest.Digest

// nowUTC is the clock for created times (tests may replace it).
var nowUTC = func() time.Time { return time.Now().UTC() }

// parsePlatform reads "os/arch[/variant]".
func parsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return ocispec.Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant]", s)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// applyChanges applies Dockerfile instructions (docker import/commit -c) to cfg:
// CMD, ENTRYPOINT (JSON or shell form), ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR,
// STOPSIGNAL. Anything else is an error naming the instruction.
func applyChanges(cfg *ocispec.ImageConfig, changes []string) error {
	for _, c := range changes {
		c = strings.TrimSpace(c)
		instr, rest, _ := strings.Cut(c, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "CMD":
			cfg.Cmd = cmdForm(rest)
		case "ENTRYPOINT":
			cfg.Entrypoint = cmdForm(rest)
		case "ENV":
			kvs, err := keyValues(rest, true)
			if err != nil {
				return fmt.Errorf("ENV %s: %w", rest, err)
			}
			for _, kv := range kvs {
				cfg.Env = setEnv(cfg.Env, kv[0], kv[1])
			}
		case "LABEL":
			kvs, err := keyValues(rest, false)
			if err != nil {
				return fmt.Errorf("LABEL %s: %w", rest, err)
			}
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			for _, kv := range kvs {
				cfg.Labels[kv[0]] = kv[1]
			}
		case "EXPOSE":
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				cfg.ExposedPorts[p] = struct{}{}
			}
		case "VOLUME":
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			var vols []string
			if json.Unmarshal([]byte(rest), &vols) != nil {
				vols = strings.Fields(rest)
			}
			for _, v := range vols {
				cfg.Volumes[v] = struct{}{}
			}
		case "USER":
			cfg.User = rest
		case "WORKDIR":
			cfg.WorkingDir = rest
		case "STOPSIGNAL":
			cfg.StopSignal = rest
		default:
			return fmt.Errorf("%s is not a valid change command", instr)
		}
	}
	return nil
}

// cmdForm is a CMD/ENTRYPOINT value: JSON array as is, else the shell form.
func cmdForm(s string) []string {
	var v []string
	if strings.HasPrefix(s, "[") && json.Unmarshal([]byte(s), &v) == nil {
		return v
	}
	return []string{"/bin/sh", "-c", s}
}

// keyValues parses "k=v k2="v 2"" or, for ENV's legacy form, "k v".
func keyValues(s string, legacy bool) ([][2]string, error) {
	words, err := shellWords(s)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("missing key")
	}
	if !strings.Contains(words[0], "=") {
		if !legacy {
			return nil, fmt.Errorf("want key=value")
		}
		k, v, _ := strings.Cut(strings.TrimSpace(s), " ")
		return [][2]string{{k, strings.TrimSpace(v)}}, nil
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want key=value", w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// shellWords splits on blanks, honouring double and single quotes and backslashes.
func shellWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, quote, esc := false, byte(0), false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			cur.WriteByte(c)
			esc = false
		case c == '\\' && quote != '\'':
			esc, in = true, true
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote")
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}
