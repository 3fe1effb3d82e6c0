package mountcmd

// Environment variables for run, create and exec: -e values and --env-file
// files, read as docker reads them.

import (
	"encoding/csv"
	"fmt"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"
)

// readEnvFiles reads docker's --env-file files (docker/cli pkg/kvfile): one
// KEY=VALUE a line, the value verbatim (no quotes removed); a bare KEY takes
// the host's value, if set; leading whitespace, blank lines and # comments are
// skipped. A file that cannot be read is the open error alone ("open NAME: no
// such file or directory", as docker); one that cannot be parsed says
// "invalid env file (NAME): " and why, in docker's words.
func readEnvFiles(files []string) ([]string, error) {
	var out []string
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err // a *PathError: it names the file
		}
		env, err := parseEnvFile(b)
		if err != nil {
			return nil, fmt.Errorf("invalid env file (%s): %w", name, err)
		}
		out = append(out, env...)
	}
	return out, nil
}

// parseEnvFile parses one --env-file's content. It refuses what docker
// refuses: bytes that are not UTF-8, a line with no name ("=x"), and a name
// with a space or a tab in it ("A B=x", "A =x").
func parseEnvFile(b []byte) ([]string, error) {
	var out []string
	text := strings.TrimPrefix(string(b), "\ufeff")
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("invalid utf8 bytes at line %d: %v", i+1, []byte(line))
		}
		line = strings.TrimLeftFunc(line, unicode.IsSpace)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, hasValue := strings.Cut(line, "=")
		if k == "" {
			return nil, fmt.Errorf("no variable name on line '%s'", line)
		}
		if strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("variable '%s' contains whitespaces", k)
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

// envValue is the -e (--env) flag: KEY=VALUE or KEY values appended to a list.
// An empty KEY ("=x") is refused as the flag is parsed, as docker's
// opts.ValidateEnv does, so it is a flag error in docker's words (exit 125):
// invalid argument "=x" for "-e, --env" flag: invalid environment variable: =x
type envValue struct{ list *[]string }

func (v envValue) Set(s string) error {
	if k, _, _ := strings.Cut(s, "="); k == "" {
		return fmt.Errorf("invalid environment variable: %s", s)
	}
	*v.list = append(*v.list, s)
	return nil
}

// String is the list as pflag writes a stringArray (CSV in brackets, which
// GetStringArray reads back), "" when empty (no default in the help).
func (v envValue) String() string {
	if len(*v.list) == 0 {
		return ""
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	if err := w.Write(*v.list); err != nil {
		return ""
	}
	w.Flush()
	return "[" + strings.TrimSuffix(b.String(), "\n") + "]"
}

// Type keeps the help's "-e, --env stringArray" of the plain flag.
func (v envValue) Type() string { return "stringArray" }
