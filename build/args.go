package build

// Build args: what RUN and $VAR expansion see of them.

import (
	"maps"
	"slices"
	"sort"
	"strings"
)

// envSlice is the build args as KEY=VALUE, in a stable order, minus keys the
// config's env sets (they win, even set to "": ENV X="" overrides ARG X).
func envSlice(args map[string]string, env []string) []string {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		if hasEnv(env, k) {
			continue
		}
		out = append(out, k+"="+args[k])
	}
	return out
}

// proxyArgs are docker's predefined ARGs (upper and lower case): a
// --build-arg of one reaches RUN's environment without an ARG line, and stays
// out of the cache key, the history and the image unless an ARG declares it.
var proxyArgs = []string{"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"}

func isProxyArg(k string) bool {
	u := strings.ToUpper(k)
	return slices.Contains(proxyArgs, u) && (k == u || k == strings.ToLower(k))
}

// proxyEnv is RUN's environment from the proxy build args, as buildkit gives
// it (llb.WithProxy): each in both cases, the lower-case arg winning when both
// are given; keys env already sets (ENV, a declared ARG) are left out.
func (b *builder) proxyEnv(env []string) []string {
	vals := map[string]string{}
	keys := slices.Sorted(maps.Keys(b.o.BuildArgs))
	for _, k := range keys {
		if v := b.o.BuildArgs[k]; isProxyArg(k) && v != "" {
			vals[strings.ToUpper(k)] = v
		}
	}
	var out []string
	for _, k := range proxyArgs {
		v, ok := vals[k]
		if !ok {
			continue
		}
		for _, kk := range []string{k, strings.ToLower(k)} {
			if !hasEnv(env, kk) {
				out = append(out, kk+"="+v)
			}
		}
	}
	return out
}

// hasEnv reports whether env sets k, to any value.
func hasEnv(env []string, k string) bool {
	return slices.ContainsFunc(env, func(e string) bool { kk, _, ok := strings.Cut(e, "="); return ok && kk == k })
}

// argsKey is the build args RUN sees, for cache keys and RUN's created_by: as
// the classic builder's (BuildArgs.FilterAllowed), those the config's Env does
// not set, sorted. An arg an ENV overrides changes nothing a step makes.
func (b *builder) argsKey() []string {
	return envSlice(b.args, b.img.Config.Env)
}
