package mountcmd

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/registry"
)

type buildOptions struct {
	tags      []string
	file      string
	buildArgs []string
	noCache   bool
	target    string
	quiet     bool
	secrets   []string
	pull      bool
	progress  string
	labels    []string
	iidfile   string
	metadata  string // --metadata-file
	network   string
	platform  string
	addHosts  []string
	allow     []string // --allow entitlements
	contexts  []string
	accepted  bool // --rm, --force-rm, --load: what layerfs always does
	outputs   []string
	push      bool
	ulimits   []string
	shmSize   string
	// ignored and ignoredValue take buildx flags that mean nothing here.
	ignored      []string
	ignoredValue string
}

func init() { addVerb(newBuildCommand) }

func newBuildCommand(g *globalOptions) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH | -",
		Short: "Build an image from a Dockerfile",
		Long: `Build an image from the Dockerfile in PATH (the build context), as docker's
classic builder does: one layer per RUN, COPY, ADD or WORKDIR that changes
files, config-only history entries for the rest, and a cache that makes an
unchanged rebuild reuse every step and give the same image ID. RUN steps run
in containers as layerfs run does (host network). .dockerignore is honoured.
RUN takes buildkit's flags: --mount=type=cache|bind|tmpfs|secret (secrets
come from --secret), --network=none|host|default and --security. RUN gets
docker's default capabilities: a step may make device nodes (they land in the
layer), which open nothing (no device cgroup here: every writable mount is
nodev); RUN --security=insecure (with --allow security.insecure) gets every
capability.
Of a multi-stage Dockerfile only the stages the image needs are built, as
buildkit does: the target (--target, else the last stage) and, transitively, the
stages it names in FROM, COPY --from and RUN --mount from=. A stage FROM
another starts with that stage's ARGs.
PATH "-" reads the context from stdin: a tar archive (plain or compressed), or
a Dockerfile alone (no context); -f - reads the Dockerfile from stdin. A git URL
(https://host/repo.git, git://, git@host:repo, github.com/...) with an optional
#REF:SUBDIR is cloned (with the git command) and its SUBDIR is the context.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, t := range o.tags {
				if _, err := blobstore.ParseNewTag(t); err != nil {
					return fmt.Errorf("invalid argument %q for \"-t, --tag\" flag: %w", t, err)
				}
			}
			s, err := openStore(g)
			if err != nil {
				return err
			}
			bargs := map[string]string{}
			for _, a := range o.buildArgs {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					if v, ok = os.LookupEnv(k); !ok {
						continue // docker: KEY alone takes the value from the environment, if set
					}
				}
				bargs[k] = v
			}
			file, contextDir := o.file, args[0]
			inRoot := false
			tmp := filepath.Join(g.root, "tmp")
			switch {
			case contextDir == "-" && file == "-":
				return errors.New("invalid argument: can't use stdin for both build context and dockerfile")
			case contextDir == "-":
				// docker build - < Dockerfile, or < context.tar[.gz]
				dir, df, cleanup, err := build.StdinContext(cmd.InOrStdin(), tmp)
				if err != nil {
					return err
				}
				defer cleanup()
				contextDir = dir
				inRoot = df == "" // a tar: its symlinks stay in it
				if df != "" {
					file = df
				} else if file != "" {
					file = filepath.Join(dir, filepath.Clean("/"+file)) // -f names a file in the tar
				}
			case build.IsGitURL(contextDir) && !isLocalPath(contextDir):
				// docker build URL#REF:SUBDIR: a clone is the context.
				dir, cleanup, err := gitContext(cmd.Context(), contextDir, tmp)
				if err != nil {
					return err
				}
				defer cleanup()
				contextDir = dir
				inRoot = true // a repository's symlinks stay in it
				if file != "" && file != "-" {
					file = filepath.Join(dir, filepath.Clean("/"+file)) // -f names a file in the repository
				}
				if file == "-" {
					df, cleanup, err := build.StdinDockerfile(cmd.InOrStdin(), tmp)
					if err != nil {
						return err
					}
					defer cleanup()
					file = df
				}
			case file == "-":
				df, cleanup, err := build.StdinDockerfile(cmd.InOrStdin(), tmp)
				if err != nil {
					return err
				}
				defer cleanup()
				file = df
			}
			if file != "" && !filepath.IsAbs(file) {
				if abs, err := filepath.Abs(file); err == nil {
					file = abs
				}
			}
			secrets, err := readSecrets(o.secrets)
			if err != nil {
				return err
			}
			if err := o.check(); err != nil {
				return err
			}
			outputs, err := parseOutputs(o.outputs)
			if err != nil {
				return err
			}
			limits, shm, err := parseLimits(o.ulimits, o.shmSize)
			if err != nil {
				return err
			}
			warnIgnoredBuildFlags(cmd)
			named, err := parseBuildContexts(o.contexts)
			if err != nil {
				return err
			}
			if o.iidfile != "" {
				// As docker: a failed build leaves no ID of an older one behind.
				if err := os.Remove(o.iidfile); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("remove image ID file: %w", err)
				}
			}
			if o.metadata != "" {
				if err := os.Remove(o.metadata); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("remove metadata file: %w", err)
				}
			}
			o.tags = outputTags(o.tags, outputs) // tagged with the image, at once
			out := cmd.OutOrStdout()
			if writesStdout(outputs) {
				out = cmd.ErrOrStderr() // stdout is the tar
			}
			bo := build.Options{
				Ulimits: limits, ShmSize: shm,
				Secrets: secrets, PullAlways: o.pull, Labels: parseLabels(o.labels),
				NoNetwork: o.network == "none", AddHosts: o.addHosts, NamedContexts: named,
				AllowInsecure: slices.Contains(o.allow, "security.insecure"),
				Pull: func(ctx context.Context, ref string) error {
					c, err := (&registryFlags{}).client(g, cmd.ErrOrStderr())
					if err != nil {
						return err
					}
					pout := out
					if o.quiet {
						pout = io.Discard
					}
					progress, done := newTransferProgress(pout, o.quiet)
					_, err = c.Pull(ctx, s, ref, registry.PullOptions{Progress: progress, CheckLayer: checkLayer})
					done()
					return err
				},
				Store: s, LayersDir: filepath.Join(g.root, "layers"), LayerPinned: pinnedLayers(g), StateDir: g.root,
				Context: contextDir, Dockerfile: file, Tags: o.tags, BuildArgs: bargs, NoCache: o.noCache, Target: o.target, Out: out,
				ContextInRoot: inRoot,
			}
			var quietOut *lockedBuffer
			if o.quiet {
				// Kept, and shown on stderr if the build fails, as docker's
				// client does: the failing step's output is what a CI log
				// needs (it was dropped).
				quietOut = &lockedBuffer{}
				bo.Out = quietOut
			}
			res, err := build.Build(cmd.Context(), bo)
			if err != nil && quietOut != nil {
				cmd.ErrOrStderr().Write(quietOut.Bytes())
			}
			var se *build.StepError
			if errors.As(err, &se) {
				fmt.Fprintln(cmd.ErrOrStderr(), se.Error())
				return exitError{se.Code}
			}
			if err != nil {
				return err
			}
			pushLog := out
			if o.quiet {
				pushLog = io.Discard
			}
			if err := writeBuildOutputs(cmd, g, s, res.Image, outputs, o.push, o.tags, pushLog); err != nil {
				return err
			}
			if o.metadata != "" {
				if err := writeBuildMetadata(o.metadata, res.Image, o.tags); err != nil {
					return err
				}
			}
			if o.iidfile != "" {
				if err := os.WriteFile(o.iidfile, []byte(res.Image.ID.String()), 0o644); err != nil {
					return fmt.Errorf("write image ID file: %w", err)
				}
			}
			if o.quiet {
				fmt.Fprintln(out, res.Image.ID)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.tags, "tag", "t", nil, "name and optionally a tag in the name:tag format")
	f.StringVarP(&o.file, "file", "f", "", "name of the Dockerfile (default PATH/Dockerfile; - reads it from stdin)")
	f.Var(envValue{&o.buildArgs}, "build-arg", "set build-time variables (KEY=VALUE)")
	f.BoolVar(&o.noCache, "no-cache", false, "do not use cache when building the image")
	f.StringVar(&o.target, "target", "", "set the target build stage to build")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress the build output and print the image ID on success")
	f.StringArrayVar(&o.secrets, "secret", nil, "secret for RUN --mount=type=secret (id=ID[,src=FILE|,env=VAR])")
	f.BoolVar(&o.pull, "pull", false, "always attempt to pull a newer version of the images the build names")
	f.StringVar(&o.progress, "progress", "auto", "type of progress output (auto, plain, tty, quiet, rawjson): the output is the classic builder's; quiet is -q")
	f.StringArrayVar(&o.labels, "label", nil, "set metadata for the image (KEY=VALUE)")
	f.StringVar(&o.iidfile, "iidfile", "", "write the image ID to the file")
	f.StringVar(&o.metadata, "metadata-file", "", "write the build result metadata (buildx's keys) to the file")
	f.StringVar(&o.network, "network", "default", "networking mode for RUN instructions (default, host, none)")
	f.StringVar(&o.platform, "platform", "", "target platform: only this machine's ("+registry.DefaultPlatform()+"), as RUN steps run natively")
	f.StringArrayVar(&o.addHosts, "add-host", nil, "add a custom host-to-IP mapping for RUN (HOST:IP)")
	f.StringSliceVar(&o.allow, "allow", nil, "allow extra privileged entitlements: security.insecure (RUN --security=insecure gets every capability), network.host (RUN's network is the host's anyway)")
	f.StringArrayVar(&o.contexts, "build-context", nil, "additional build context (NAME=DIR or NAME=docker-image://REF) for FROM, COPY --from and RUN --mount from=")
	f.StringArrayVarP(&o.outputs, "output", "o", nil, "also write the image's files: PATH or type=local,dest=DIR (a dir), type=tar,dest=FILE|- (a tar); or the image: type=docker|oci,dest=FILE|- (an archive, as save); name=REF of type=image|registry|docker|oci tags it, as -t; type=registry pushes")
	f.BoolVar(&o.push, "push", false, "push each tag (-t, or an output's name=) to its registry after the build")
	f.StringArrayVar(&o.ulimits, "ulimit", nil, "ulimit options for RUN (NAME=SOFT[:HARD])")
	f.StringVar(&o.shmSize, "shm-size", "", "size of /dev/shm for RUN (default 64m)")
	addIgnoredBuildFlags(cmd, o)
	for _, name := range []string{"rm", "force-rm", "load"} {
		f.BoolVar(&o.accepted, name, true, "accepted for docker compatibility (layerfs always does this)")
	}
	return cmd
}

// isLocalPath reports whether p names something on this machine (docker build
// takes a local dir before a git URL of the same spelling: github.com/x/y).
func isLocalPath(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// gitContext clones a git build context under tmp; cleanup removes it.
func gitContext(ctx context.Context, url, tmp string) (string, func(), error) {
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", nil, err
	}
	parent, err := os.MkdirTemp(tmp, "git-context-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(parent) }
	dir, err := build.CloneGit(ctx, url, filepath.Join(parent, "repo"))
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return dir, cleanup, nil
}

// readSecrets reads build --secret values as buildx does: id=ID with src=FILE
// (or source=) or env=VAR; with neither, the variable named ID.
func readSecrets(specs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, spec := range specs {
		var id, src, env, typ string
		fields, err := csv.NewReader(strings.NewReader(spec)).Read() // buildx reads it as CSV
		if err != nil {
			return nil, fmt.Errorf("invalid secret %q: %w", spec, err)
		}
		for _, field := range fields {
			k, v, ok := strings.Cut(field, "=")
			if !ok {
				return nil, fmt.Errorf("invalid secret %q: %q is not key=value", spec, field)
			}
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "id":
				id = v
			case "src", "source":
				src = v
			case "env":
				env = v
			case "type":
				typ = v
			default:
				return nil, fmt.Errorf("invalid secret %q: unexpected key %q", spec, k)
			}
		}
		if id == "" {
			switch {
			case src != "":
				id = filepath.Base(src)
			case env != "":
				id = env
			default:
				return nil, fmt.Errorf("invalid secret %q: no id", spec)
			}
		}
		switch {
		case typ != "" && typ != "file" && typ != "env":
			return nil, fmt.Errorf("invalid secret %q: unsupported type %q", spec, typ)
		case typ == "env" && env == "":
			env, src = cmp.Or(src, id), "" // with type=env, src names the variable
		case typ == "file" && src == "":
			src = id
		}
		switch {
		case src != "":
			b, err := os.ReadFile(src)
			if err != nil {
				return nil, fmt.Errorf("secret %s: %w", id, err)
			}
			out[id] = b
		case env != "":
			v, ok := os.LookupEnv(env)
			if !ok {
				return nil, fmt.Errorf("secret %s: environment variable %s is not set", id, env)
			}
			out[id] = []byte(v)
		default:
			// Neither: the variable named ID, else the file named ID (buildx).
			if v, ok := os.LookupEnv(id); ok {
				out[id] = []byte(v)
				break
			}
			b, err := os.ReadFile(id)
			if err != nil {
				return nil, fmt.Errorf("secret %s: no src or env, no environment variable %s, and %w", id, id, err)
			}
			out[id] = b
		}
	}
	return out, nil
}

// check refuses build flags whose values layerfs cannot honour, naming them.
func (o *buildOptions) check() error {
	switch o.progress {
	case "auto", "plain", "tty", "rawjson":
	case "quiet":
		o.quiet = true
	default:
		return fmt.Errorf("invalid argument %q for \"--progress\" flag: want auto, plain, tty, quiet or rawjson", o.progress)
	}
	switch o.network {
	case "default", "host", "none":
	default:
		return fmt.Errorf("invalid argument %q for \"--network\" flag: want default, host or none", o.network)
	}
	if err := checkPlatform(o.platform, "RUN steps run natively"); err != nil {
		return err
	}
	hosts, err := checkAddHosts(o.addHosts)
	if err != nil {
		return err
	}
	o.addHosts = hosts
	if err := checkLabels(o.labels); err != nil {
		return err
	}
	for _, a := range o.allow {
		if a != "security.insecure" && a != "network.host" {
			return fmt.Errorf("invalid argument %q for \"--allow\" flag: want security.insecure or network.host", a)
		}
	}
	return nil
}

// parseLabels is --label KEY=VALUE (KEY alone: an empty value, as docker).
func parseLabels(list []string) map[string]string {
	if len(list) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, l := range list {
		k, v, _ := strings.Cut(l, "=")
		m[k] = v
	}
	return m
}

// parseBuildContexts reads buildx's --build-context NAME=VALUE: a local dir
// (made absolute) or docker-image://REF.
func parseBuildContexts(list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, c := range list {
		name, v, ok := strings.Cut(c, "=")
		if !ok || name == "" || v == "" {
			return nil, fmt.Errorf("invalid argument %q for \"--build-context\" flag: want NAME=DIR or NAME=docker-image://REF", c)
		}
		switch {
		case strings.HasPrefix(v, "docker-image://"):
			if _, err := blobstore.ParseReference(strings.TrimPrefix(v, "docker-image://")); err != nil {
				return nil, fmt.Errorf("--build-context %s: %w", name, err)
			}
		case strings.Contains(v, "://"):
			return nil, fmt.Errorf("--build-context %s: only a local dir or docker-image://REF is supported, not %s", name, v)
		default:
			abs, err := filepath.Abs(v)
			if err != nil {
				return nil, fmt.Errorf("--build-context %s: %w", name, err)
			}
			if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("--build-context %s: %s is not a directory", name, v)
			}
			v = abs
		}
		m[name] = v
	}
	return m, nil
}

// lockedBuffer is a bytes.Buffer for writers in several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns what was written so far.
func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
