package build

// Dockerfile builds, the way docker's classic builder does them, except that of a
// multi-stage Dockerfile only the stages the target needs are built, in order, as
// buildkit does (reach.go); the target, or else the last stage, is the image.
//
// The Dockerfile is parsed with buildkit's parser and instructions packages. Each
// instruction after FROM is a step on the image so far:
//
//   - RUN, COPY, ADD and WORKDIR run against a union mount (package fs) of the
//     image's layers and a fresh upper dir, in-process; RUN runs its command in a
//     container (Start). If the upper dir is not empty afterwards, cow.Diff of it
//     becomes a new layer (Store.AppendLayer); otherwise the step records an
//     empty_layer history entry, as every config-only step does.
//   - ENV, CMD, ENTRYPOINT, LABEL, EXPOSE, VOLUME, USER, STOPSIGNAL, HEALTHCHECK,
//     ONBUILD and WORKDIR's config part go through ConfigEditor (changes.go), the
//     same code as commit -c; ARG, SHELL and MAINTAINER are handled here.
//
// Caching: each step's result (its image config bytes and its layer, if any) is
// recorded in <state>/build-cache/<key>.json, where key hashes the parent config's
// digest, the instruction, the build args RUN would see (those no ENV overrides)
// and, for COPY and ADD, the content of every file the step reads; a config-only
// step's key is what it makes (its config and history line). A step whose key is cached
// (and whose layer blob is still in the store) is not run: its recorded config
// is reused byte for byte, so an unchanged rebuild gives the same image ID.
//
// Concurrency: builds in different processes may run at once; cache entries are
// written atomically and a lost race only costs a rebuild of that step.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
)

// ErrBuild is wrapped by errors about the Dockerfile or a step that failed.
var ErrBuild = errors.New("build failed")

// StepError is a build step that failed, worded as docker's classic builder words
// it ("COPY failed: ...", "The command '...' returned a non-zero code: 3"). Code
// is what `build` exits with: a failed RUN's exit code, else 1. It is ErrBuild.
type StepError struct {
	Step string // the instruction as written
	Code int
	Err  error
}

func (e *StepError) Error() string        { return e.Err.Error() }
func (e *StepError) Unwrap() error        { return e.Err }
func (e *StepError) Is(target error) bool { return target == ErrBuild }

// Options configure one build.
type Options struct {
	Store     *blobstore.Store
	LayersDir string // <root>/layers: unpacked layers (cow.LayerCache)
	// LayerPinned names layers whose dir must not be unpacked again though an
	// older format made it (cow.LayerCache.Pinned); nil: none.
	LayerPinned func(digest.Digest) bool
	StateDir    string // <root>: build-cache/ and tmp/ are made under it

	Context    string            // the build context dir
	Dockerfile string            // "" is <Context>/Dockerfile
	Tags       []string          // refs to tag the result with
	BuildArgs  map[string]string // --build-arg
	NoCache    bool              // run every step (the cache is still written)
	Target     string            // --target: the stage (by name) that is the image; "" is the last
	// ContextInRoot: Context is untrusted (a tar from stdin): its Dockerfile and
	// .dockerignore resolve inside it, so that a symlink cannot make them a
	// host file (whose lines parse errors would print).
	ContextInRoot bool
	// Secrets are --secret values by id, for RUN --mount=type=secret.
	Secrets map[string][]byte
	// Pull downloads an image into Store (a base, or COPY --from's); nil: only
	// local images. It is called for an image the store lacks, or, with
	// PullAlways (--pull), once per image the build names.
	Pull       func(ctx context.Context, ref string) error
	PullAlways bool
	Labels     map[string]string // --label: set on the image built
	NoNetwork  bool              // --network=none: every RUN without network
	// AllowInsecure is --allow security.insecure: RUN --security=insecure gets
	// every capability (without it, such a RUN is refused).
	AllowInsecure bool
	AddHosts      []string // --add-host HOST:IP lines for RUN's /etc/hosts
	Ulimits       []Ulimit // --ulimit for every RUN
	ShmSize       int64    // --shm-size: RUN's /dev/shm (0: 64 MiB)
	// NamedContexts are buildx's --build-context NAME=VALUE: a local dir, or
	// docker-image://REF, that FROM NAME, COPY --from=NAME and a RUN mount's
	// from=NAME mean instead of a stage or image of that name.
	NamedContexts map[string]string

	Out io.Writer // the classic builder's step lines and RUN output; nil discards
}

// Result is a finished build.
type Result struct {
	Image  *blobstore.Image
	Steps  int
	Cached int // steps that came from the cache
}

// builder is one build in progress.
type builder struct {
	o       Options
	out     io.Writer
	ctxDir  *buildContext
	cache   *stepCache
	layers  *cow.LayerCache
	tmpRoot string

	// the image so far
	img    dockerspec.DockerOCIImage
	raw    []byte // img as stored (the bytes its ID is the digest of)
	id     digest.Digest
	descs  []ocispec.Descriptor
	parent *blobstore.Image

	editor   *ConfigEditor
	args     map[string]string // ARGs in scope with a value (one declared without stays out)
	metaArgs map[string]string // global ARGs with a value, and the platform ARGs
	escape   rune
	usedArgs map[string]bool // --build-arg names some ARG declared

	stages map[string]*stageResult // finished stages by name and by index
	df     []instructions.Stage    // every stage of the Dockerfile
	needed []bool                  // by index: the stages the target needs
	cur    int                     // the index of the stage being built
	pulled map[string]bool         // images pulled in this build
}

// Build builds the Dockerfile in o.Context and tags the result.
func Build(ctx context.Context, o Options) (*Result, error) {
	b := &builder{o: o, out: o.Out}
	if b.out == nil {
		b.out = io.Discard
	}
	dfPath := o.Dockerfile
	if dfPath == "" {
		dfPath = filepath.Join(o.Context, "Dockerfile")
		if _, err := os.Lstat(dfPath); errors.Is(err, os.ErrNotExist) {
			// docker reads a lowercase "dockerfile" too (moby/moby#10858)
			if lower := filepath.Join(o.Context, "dockerfile"); fileExists(lower) {
				dfPath = lower
			}
		}
	}
	df, err := readContextFile(o.Context, dfPath, o.ContextInRoot)
	if err != nil {
		return nil, fmt.Errorf("read Dockerfile: %w", err)
	}
	ast, stages, metaArgs, err := parseDockerfile(df)
	if err != nil {
		return nil, err
	}
	b.escape = ast.EscapeToken
	if len(stages) == 0 {
		return nil, fmt.Errorf("%w: the Dockerfile has no FROM", ErrBuild)
	}
	target := len(stages) - 1
	if o.Target != "" {
		// The target is the image; later stages are not built, as in docker.
		target = slices.IndexFunc(stages, func(s instructions.Stage) bool { return strings.EqualFold(s.Name, o.Target) })
		if target < 0 {
			return nil, fmt.Errorf("%w: failed to reach build target %s in Dockerfile", ErrBuild, o.Target)
		}
	}
	if b.ctxDir, err = openContext(o.Context, o.Dockerfile, o.ContextInRoot); err != nil {
		return nil, err
	}
	b.cache = &stepCache{dir: filepath.Join(o.StateDir, "build-cache"), store: o.Store}
	b.layers = &cow.LayerCache{Dir: o.LayersDir, Pinned: o.LayerPinned}
	b.tmpRoot = filepath.Join(o.StateDir, "tmp")
	// What builds killed before left (dead mounts and their dirs) goes first.
	if _, err := RemoveStaleScratch(o.StateDir, false); err != nil {
		fmt.Fprintf(b.out, "WARNING: %v\n", err)
	}
	b.usedArgs = map[string]bool{}
	b.pulled = map[string]bool{}
	b.stages = map[string]*stageResult{}
	b.df = stages

	release, err := o.Store.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer release()

	b.metaArgs = platformArgs()
	lex := shell.NewLex(b.escape)
	for i := range metaArgs {
		for _, kv := range metaArgs[i].Args {
			// ARG TARGETARCH keeps its automatic value; an ARG without a value
			// (nor a --build-arg) stays unset, as in buildkit.
			v, set := b.metaArgs[kv.Key]
			if kv.Value != nil {
				// A default may use the ARGs before it, as in docker.
				if v, _, err = lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(envSlice(b.metaArgs, nil))); err != nil {
					return nil, fmt.Errorf("%w: %s: %w", ErrBuild, metaArgs[i].String(), err)
				}
				set = true
			}
			if bv, ok := o.BuildArgs[kv.Key]; ok {
				v, set = bv, true
				b.usedArgs[kv.Key] = true
			}
			if set {
				b.metaArgs[kv.Key] = v
			}
		}
	}
	// Only the stages the target needs are built (FROM bases can name global
	// ARGs, hence after them).
	b.needed = b.neededStages(stages, target)
	total := len(metaArgs)
	for i, st := range stages {
		if b.needed[i] {
			total += 1 + len(st.Commands)
		}
	}
	step := 0
	for i := range metaArgs {
		step++
		fmt.Fprintf(b.out, "Step %d/%d : %s\n", step, total, metaArgs[i].String())
	}
	cached := 0
	for i, stage := range stages {
		if !b.needed[i] {
			continue
		}
		b.cur = i
		step++
		fmt.Fprintf(b.out, "Step %d/%d : %s\n", step, total, stage.SourceCode)
		if err := b.from(ctx, stage); err != nil {
			return nil, err
		}
		fmt.Fprintf(b.out, " ---> %s\n", shortDigest(b.id))
		if err := b.onBuildTriggers(ctx); err != nil {
			return nil, err
		}
		for _, c := range stage.Commands {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			step++
			fmt.Fprintf(b.out, "Step %d/%d : %s\n", step, total, commandText(c))
			hit, err := b.dispatch(ctx, c)
			if err != nil {
				return nil, err
			}
			if hit {
				cached++
			}
			fmt.Fprintf(b.out, " ---> %s\n", shortDigest(b.id))
		}
		b.endStage(i, stage.Name)
	}
	var unused []string
	for k := range o.BuildArgs {
		if !b.usedArgs[k] && !isProxyArg(k) {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(b.out, "[Warning] One or more build-args %v were not consumed\n", unused)
	}
	if len(o.Labels) > 0 {
		if err := b.setLabels(o.Labels); err != nil {
			return nil, err
		}
	}
	// The tags go in with the image, in one index.json update: a failure (a full
	// disk) leaves no untagged image behind.
	img, err := o.Store.WriteImageRaw(ctx, b.raw, b.descs, blobstore.WithParent(b.parent), blobstore.WithTags(o.Tags...))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.out, "Successfully built %s\n", shortDigest(img.ID))
	for _, t := range o.Tags {
		if n, err := reference.ParseNormalizedNamed(t); err == nil {
			t = reference.TagNameOnly(n).String() // docker's "t2:latest" for -t t2
		}
		fmt.Fprintf(b.out, "Successfully tagged %s\n", blobstore.FamiliarString(t))
	}
	return &Result{Image: img, Steps: step, Cached: cached}, nil
}

// parseDockerfile parses df into its stages and the ARGs before the first
// FROM; an error is parseError's.
func parseDockerfile(df []byte) (*parser.Result, []instructions.Stage, []instructions.ArgCommand, error) {
	ast, err := parser.Parse(strings.NewReader(string(df)))
	if err != nil {
		return nil, nil, nil, parseError(err)
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, nil, nil, parseError(err)
	}
	return ast, stages, metaArgs, nil
}

// parseError is a Dockerfile parse error as ErrBuild, said once and naming
// the line: buildkit's instruction errors already start "dockerfile parse
// error on line N"; the parser's own (LABEL x, an unterminated heredoc, an
// old-style ENV with extra words) carry the line as a location only
// (parser.LocationError), which docker prints as "Dockerfile:N".
func parseError(err error) error {
	if strings.Contains(err.Error(), "dockerfile parse error") {
		return fmt.Errorf("%w: %w", ErrBuild, err)
	}
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return fmt.Errorf("%w: dockerfile parse error on line %d: %w", ErrBuild, le.Locations[0][0].Start.Line, err)
	}
	return fmt.Errorf("%w: dockerfile parse error: %w", ErrBuild, err)
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// platformArgs are the ARGs buildkit defines in the global scope for the
// platform built on and for (this host's: layerfs builds natively). A stage sees
// one after declaring it (ARG TARGETARCH), as in docker.
func platformArgs() map[string]string {
	variant := ""
	if runtime.GOARCH == "arm" {
		variant = "v7"
	}
	platform := "linux/" + runtime.GOARCH
	if variant != "" {
		platform += "/" + variant
	}
	args := map[string]string{}
	for _, p := range []string{"TARGET", "BUILD"} {
		args[p+"PLATFORM"] = platform
		args[p+"OS"] = "linux"
		args[p+"ARCH"] = runtime.GOARCH
		args[p+"VARIANT"] = variant
	}
	return args
}

func commandText(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return c.Name()
}

func shortDigest(d digest.Digest) string {
	h := d.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// dispatch runs one instruction (or takes it from the cache) and moves the image on.
func (b *builder) dispatch(ctx context.Context, c instructions.Command) (cached bool, err error) {
	b.editor.BuildArgs = envSlice(b.args, nil)
	switch c := c.(type) {
	case *instructions.ArgCommand:
		for i := range c.Args {
			kv := &c.Args[i]
			v, set := "", false
			if kv.Value != nil {
				if v, err = b.expand(*kv.Value); err != nil {
					return false, b.stepErr(c, err)
				}
				dv := v
				kv.Value, set = &dv, true // expanded, for the history line
			} else if mv, ok := b.metaArgs[kv.Key]; ok {
				v, set = mv, true
			}
			if bv, ok := b.o.BuildArgs[kv.Key]; ok {
				v, set = bv, true
				b.usedArgs[kv.Key] = true
			}
			if !set {
				// Declared without a value: unset for RUN and expansions (not
				// X=), as in buildkit; a value it had before is kept.
				continue
			}
			b.args[kv.Key] = v
		}
		return b.configStep(c, nil)
	case *instructions.MaintainerCommand:
		return b.configStep(c, func() error { b.img.Author = c.Maintainer; return nil })
	case *instructions.ShellCommand:
		return b.configStep(c, func() error { b.img.Config.Shell = append([]string(nil), c.Shell...); return nil })
	case *instructions.RunCommand:
		return b.runStep(ctx, c)
	case *instructions.CopyCommand:
		return b.copyStep(ctx, c.String(), &c.SourcesAndDest, copyFlags{chown: c.Chown, chmod: c.Chmod, from: c.From, exclude: c.ExcludePatterns, parents: c.Parents, link: c.Link}, false, c)
	case *instructions.AddCommand:
		return b.copyStep(ctx, c.String(), &c.SourcesAndDest, copyFlags{chown: c.Chown, chmod: c.Chmod, exclude: c.ExcludePatterns, checksum: c.Checksum, unpack: c.Unpack, link: c.Link,
			keepGitDir: c.KeepGitDir != nil && *c.KeepGitDir}, true, c)
	case *instructions.WorkdirCommand:
		return b.workdirStep(ctx, c)
	case *instructions.OnbuildCommand, *instructions.EnvCommand, *instructions.LabelCommand,
		*instructions.CmdCommand, *instructions.EntrypointCommand, *instructions.ExposeCommand,
		*instructions.UserCommand, *instructions.VolumeCommand, *instructions.StopSignalCommand,
		*instructions.HealthCheckCommand:
		hit, err := b.configStep(c, func() error { return b.editor.Dispatch(c) })
		if _, isCmd := c.(*instructions.CmdCommand); isCmd {
			b.editor.cmdSet = true // a later ENTRYPOINT keeps it, cached or not
		}
		return hit, err
	default:
		return false, b.stepErr(c, fmt.Errorf("instruction %s is not supported", strings.ToUpper(c.Name())))
	}
}

func (b *builder) stepErr(c instructions.Command, err error) error {
	return &StepError{Step: commandText(c), Code: 1, Err: fmt.Errorf("%s failed: %w", strings.ToUpper(c.Name()), err)}
}

func (b *builder) expand(word string) (string, error) {
	lex := shell.NewLex(b.escape)
	env := append(envSlice(b.args, b.img.Config.Env), b.img.Config.Env...)
	s, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(env))
	return s, err
}

// expandRaw expands a COPY heredoc's content as buildkit does: variables only,
// quotes left as they are.
func (b *builder) expandRaw(word string) (string, error) {
	lex := shell.NewLex('\\')
	lex.SkipProcessQuotes = true
	env := append(envSlice(b.args, b.img.Config.Env), b.img.Config.Env...)
	s, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(env))
	return s, err
}

// configStep applies a config-only instruction by apply (nil: nothing to
// change, as for ARG), with an empty_layer history entry, or takes it from
// the cache. Its key is what it makes, the config and the history line, not
// the build args: as in the classic builder, ARG P=a and ENV P=x are cached
// whatever --build-arg P is.
func (b *builder) configStep(c instructions.Command, apply func() error) (bool, error) {
	if apply != nil {
		if err := apply(); err != nil {
			return false, b.stepErr(c, err)
		}
	}
	createdBy := b.nopCreatedBy(b.nopMessage(c))
	cfg, err := json.Marshal(b.img.Config)
	if err != nil {
		return false, err
	}
	key := b.resultKey(createdBy, fmt.Sprintf("config %s\nauthor %q", cfg, b.img.Author))
	if ok, err := b.useCache(key); err != nil || ok {
		return ok, err
	}
	return false, b.commitStep(key, createdBy, nil, "")
}

// cacheKey is a step's key in the build cache. The version changes when what a
// step makes changes (v3: COPY --from owners, --chown's parent dirs, context
// symlinks; v4: ADD --chmod keeps an unpacked archive's modes; v5: --chown
// with a user name alone takes its primary group; v6: docker's created_by for
// config steps, RUN's args sorted and without those ENV overrides; v7: WORKDIR
// after USER <uid> makes the dir uid:uid, after an unknown name root's), so an
// upgrade never reuses a result the new code would not make.
func (b *builder) cacheKey(text, content string) digest.Digest {
	var sb strings.Builder
	fmt.Fprintf(&sb, "instruction %q\n", text)
	for _, a := range b.argsKey() {
		fmt.Fprintf(&sb, "arg %q\n", a)
	}
	fmt.Fprintf(&sb, "content %s\n", content)
	return b.resultKey("", sb.String())
}

// resultKey is a cache key of the parent, a step's created_by and what else
// decides its result.
func (b *builder) resultKey(createdBy, rest string) digest.Digest {
	return digest.FromString(fmt.Sprintf("layerfs build cache v8\nparent %s\ncreated_by %q\n%s", b.id, createdBy, rest))
}

// useCache moves the image on to a cached step's result if there is one.
func (b *builder) useCache(key digest.Digest) (bool, error) {
	if b.o.NoCache {
		return false, nil
	}
	e, ok := b.cache.get(key)
	if !ok {
		return false, nil
	}
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(e.Config, &img); err != nil {
		return false, nil
	}
	fmt.Fprintln(b.out, " ---> Using cache")
	b.raw = []byte(e.Config)
	b.img = img
	b.editor.Config = &b.img.Config
	b.id = digest.FromBytes(b.raw)
	if e.Layer != nil {
		b.descs = append(b.descs, *e.Layer)
	}
	return true, nil
}

// commitStep records the step's result: history, the layer (if any), the new
// config bytes and ID, and the cache entry.
func (b *builder) commitStep(key digest.Digest, createdBy string, layer *ocispec.Descriptor, diffID digest.Digest) error {
	now := time.Now().UTC().Truncate(time.Nanosecond)
	b.img.Created = &now
	h := ocispec.History{Created: &now, CreatedBy: createdBy, EmptyLayer: layer == nil}
	b.img.History = append(b.img.History, h)
	if layer != nil {
		if n := len(b.img.RootFS.DiffIDs) + 1; n > MaxLayers {
			return fmt.Errorf("%w: %w: the image would have %d layers, the limit is %d", ErrBuild, ErrTooManyLayers, n, MaxLayers)
		}
		b.img.RootFS.DiffIDs = append(b.img.RootFS.DiffIDs, diffID)
		b.descs = append(b.descs, *layer)
	}
	if b.img.RootFS.Type == "" {
		b.img.RootFS.Type = "layers"
	}
	raw, err := json.Marshal(b.img)
	if err != nil {
		return err
	}
	b.raw = raw
	b.id = digest.FromBytes(raw)
	return b.cache.put(key, cacheEntry{Config: raw, Layer: layer})
}

// resolveImage finds an image the build names (FROM, COPY --from, a mount's
// from=) in the store, pulling it first with --pull, or when it is missing, as
// docker build does.
func (b *builder) resolveImage(ctx context.Context, ref string) (*blobstore.Image, error) {
	pull := func() error {
		b.pulled[ref] = true
		err := b.o.Pull(ctx, ref)
		if err != nil && !strings.HasPrefix(err.Error(), "pull ") { // some name it already
			err = fmt.Errorf("pull %s: %w", ref, err)
		}
		return err
	}
	if b.o.Pull != nil && b.o.PullAlways && !b.pulled[ref] {
		if err := pull(); err != nil {
			return nil, err
		}
	}
	img, err := b.o.Store.Resolve(ref)
	// Missing, not broken: a stored image with a missing blob says so.
	if errors.Is(err, blobstore.ErrNotFound) && !errors.Is(err, blobstore.ErrMissingBlob) && b.o.Pull != nil && !b.pulled[ref] {
		if err := pull(); err != nil {
			return nil, err
		}
		img, err = b.o.Store.Resolve(ref)
	}
	return img, err
}

// setLabels sets build --label labels on the image built (no history entry, as
// buildkit).
func (b *builder) setLabels(labels map[string]string) error {
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(b.raw, &img); err != nil {
		return err
	}
	if img.Config.Labels == nil {
		img.Config.Labels = map[string]string{}
	}
	for k, v := range labels {
		img.Config.Labels[k] = v
	}
	raw, err := json.Marshal(img)
	if err != nil {
		return err
	}
	b.raw, b.img, b.id = raw, img, digest.FromBytes(raw)
	return nil
}

// namedContext is the --build-context value for name: by the name as written,
// else as buildkit matches it, by its familiar form without :latest
// ("docker.io/library/alpine:latest" is "alpine").
func (b *builder) namedContext(name string) (string, bool) {
	if v, ok := b.o.NamedContexts[name]; ok {
		return v, true
	}
	n, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", false
	}
	short := strings.TrimSuffix(reference.FamiliarString(reference.TagNameOnly(n)), ":latest")
	for k, v := range b.o.NamedContexts {
		kn, err := reference.ParseNormalizedNamed(k)
		if err == nil && strings.TrimSuffix(reference.FamiliarString(reference.TagNameOnly(kn)), ":latest") == short {
			return v, true
		}
	}
	return "", false
}
