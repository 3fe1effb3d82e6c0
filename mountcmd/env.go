package mountcmd

// Environment variables for run, create and exec: -e values and --env-file
// files, read as docker reads them.

import (
	"fmt"
	"os"
	"strings"
)

// readEnvFiles reads docker's --env-file format: one KEY=VALUE a line, the value
// verbatim (no quotes removed); a bare KEY takes the host's value, if set;
// leading whitespace, blank lines and # comments are skipped.
func readEnvFiles(files []string) ([]string, error) {
	var out []string
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		text := strings.TrimPrefix(string(b), "\ufeff")
		for i, line := range strings.Split(text, "\n") {
			line = strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, hasValue := strings.Cut(line, "=")
			if k == "" {
				return nil, fmt.Errorf("invalid environment variable: %s (%s line %d: no variable name)", line, name, i+1)
			}
			if strings.ContainsAny(k, " \t") {
				return nil, fmt.Errorf("variable '%s' contains whitespaces (%s line %d)", k, name, i+1)
			}
			if !hasValue {
				hv, ok := os.LookupEnv(k)
				if !ok {
					continue
				}
				v = hv
			}
			out = append(out, k+"="+v)
		}
	}
	return out, nil
}

// hostEnv is -e values as docker takes them: KEY=VALUE as given, a bare KEY
// with the caller's value (left out if the caller has none).
func hostEnv(list []string) []string {
	var out []string
	for _, e := range list {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		out = append(out, e)
	}
	return out
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
