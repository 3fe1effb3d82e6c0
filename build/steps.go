package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
)

// lowerDirs unpacks the image's layers (if needed) and returns their dirs, top first.
func (b *builder) lowerDirs(ctx context.Context) ([]string, error) {
	return b.layerDirs(ctx, b.img.RootFS.DiffIDs, b.descs)
}

// layerDirs unpacks layers (if needed) and returns their dirs, top first.
func (b *builder) layerDirs(ctx context.Context, ids []digest.Digest, descs []ocispec.Descriptor) ([]string, error) {
	if len(ids) != len(descs) {
		return nil, fmt.Errorf("%w: %d layers but %d diff_ids", ErrBuild, len(descs), len(ids))
	}
	if n, most := len(ids), fs.MaxLayers()-1; n > most {
		return nil, fmt.Errorf("%w: %w", ErrBuild, fs.TooManyLayers(n, most)) // before unpacking them
	}
	srcs := make([]cow.LayerSource, len(ids))
	for i, d := range descs {
		srcs[i] = cow.LayerSource{DiffID: ids[i], Open: func() (io.ReadCloser, error) { return b.o.Store.OpenLayer(d) }}
	}
	paths, err := b.layers.EnsureAll(ctx, srcs)
	if err != nil {
		return nil, err
	}
	slices.Reverse(paths)
	return paths, nil
}

// withMount mounts the image so far with a fresh upper dir, calls fn with the
// mountpoint, unmounts, and turns the upper dir into a layer: nil if fn changed
// nothing. Everything fn made is the step's change: a COPY or WORKDIR that
// makes an empty /dev, /proc, /sys, /etc or /etc/hosts keeps it, as buildkit
// and buildah do (they were taken out as if they were a RUN's mount stubs).
func (b *builder) withMount(ctx context.Context, fn func(rootfs string) error) (*ocispec.Descriptor, digest.Digest, error) {
	return b.stepLayer(ctx, false, nil, fn)
}

// withMountPaths is withMount for a RUN, whose runtime makes mountpoints in the
// rootfs (/proc, /dev, /sys, /etc/hosts ...) and mountpoints more for its
// --mount targets: those the rootfs lacked are not part of the layer while
// still empty (NoteRuntimePaths), as buildkit removes the stubs of an exec.
func (b *builder) withMountPaths(ctx context.Context, mountpoints []string, fn func(rootfs string) error) (*ocispec.Descriptor, digest.Digest, error) {
	return b.stepLayer(ctx, true, mountpoints, fn)
}

// stepLayer is withMount; with run, withMountPaths.
func (b *builder) stepLayer(ctx context.Context, run bool, mountpoints []string, fn func(rootfs string) error) (*ocispec.Descriptor, digest.Digest, error) {
	lowers, err := b.lowerDirs(ctx)
	if err != nil {
		return nil, "", err
	}
	dir, release, err := newScratchDir(b.tmpRoot, "step-")
	if err != nil {
		return nil, "", err
	}
	defer release()
	upper, work, mnt := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs")
	for _, d := range []string{upper, work, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, "", err
		}
	}
	m, err := mountStep(stepMountSpec{Dir: mnt, Lowers: lowers, Upper: upper, Work: work, Format: cow.FormatOCI, FsName: "layerfs:build"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	// What a RUN's runtime makes to mount over is not the step's change.
	var rp *RuntimePaths
	if run {
		rp = NoteRuntimePaths(mnt, upper, mountpoints...)
	}
	ferr := fn(mnt)
	if err := m.Unmount(); err != nil {
		// Never remove a dir that may still be mounted: leave it for the user.
		return nil, "", fmt.Errorf("unmount build step %s: %w", mnt, err)
	}
	defer os.RemoveAll(dir)
	if ferr != nil {
		return nil, "", ferr
	}
	if rp != nil {
		rp.Undo()
	}
	ents, err := os.ReadDir(upper)
	if err != nil {
		return nil, "", err
	}
	if len(ents) == 0 {
		return nil, "", nil
	}
	rc := cow.Diff(ctx, upper, cow.DiffOptions{Format: cow.FormatOCI})
	desc, diffID, err := b.o.Store.AppendLayer(ctx, rc, blobstore.Gzip)
	rc.Close()
	if err != nil {
		return nil, "", fmt.Errorf("layer of build step: %w", err)
	}
	return &desc, diffID, nil
}

func newContainerID() string {
	buf := make([]byte, 32)
	rand.Read(buf)
	return hex.EncodeToString(buf)
}

// runStep runs a RUN instruction in a container on the image so far.
func (b *builder) runStep(ctx context.Context, c *instructions.RunCommand) (bool, error) {
	mounts, err := b.prepareRunMounts(ctx, c)
	defer mounts.close()
	if err != nil {
		return false, b.stepErr(c, err)
	}
	args := append([]string(nil), c.CmdLine...)
	var script *heredocScript
	if len(c.Files) > 0 {
		var err error
		if args, script, err = runHeredoc(c); err != nil {
			return false, b.stepErr(c, err)
		}
	}
	if c.PrependShell {
		sh := b.img.Config.Shell
		if len(sh) == 0 {
			sh = defaultShell
		}
		args = append(append([]string(nil), sh...), strings.Join(args, " "))
	}
	if len(args) == 0 {
		return false, b.stepErr(c, errors.New("no command"))
	}
	createdBy := strings.Join(args, " ")
	if ak := b.argsKey(); len(ak) > 0 {
		createdBy = fmt.Sprintf("|%d %s %s", len(ak), strings.Join(ak, " "), createdBy)
	}
	extra := mounts.key
	if b.o.NoNetwork {
		extra += "network none\n" // build --network=none, as RUN --network=none
	}
	for _, h := range b.o.AddHosts {
		extra += "add-host " + h + "\n"
	}
	key := b.cacheKey("RUN "+createdBy, extra)
	if ok, err := b.useCache(key); err != nil || ok {
		return ok, err
	}
	if os.Geteuid() != 0 {
		// The step's container needs namespaces, mounts and a chroot; the
		// rest of a build (COPY, ENV, WORKDIR, a cached RUN) does not.
		return false, b.stepErr(c, errors.New("RUN needs root: its container is made with namespaces, mounts and a chroot only root may make"))
	}
	if err := mounts.setup(); err != nil {
		return false, b.stepErr(c, err)
	}
	env := append(append([]string(nil), b.img.Config.Env...), envSlice(b.args, b.img.Config.Env)...)
	env = append(env, b.proxyEnv(env)...)
	env = append(env, mounts.env...)
	id := newContainerID()[:12]
	fmt.Fprintf(b.out, " ---> Running in %s\n", id)
	layer, diffID, err := b.withMountPaths(ctx, mounts.targets, func(rootfs string) error {
		etcDir := filepath.Join(filepath.Dir(rootfs), "etc")
		binds, err := EtcFiles(etcDir, id, b.o.AddHosts...)
		if err != nil {
			return err
		}
		if script != nil {
			// As buildkit: the script is a read-only file at /dev/pipes/<name>.
			p := filepath.Join(filepath.Dir(rootfs), "pipes", script.name)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(script.data), 0o755); err != nil {
				return err
			}
			binds = append(binds, Bind{Source: p, Target: "/dev/pipes/" + script.name, ReadOnly: true})
		}
		binds = append(binds, mounts.binds...)
		secretsDir := ""
		if len(mounts.secrets) > 0 {
			secretsDir = filepath.Join(filepath.Dir(rootfs), "secrets")
			if err := os.Mkdir(secretsDir, 0o700); err != nil {
				return err
			}
		}
		p, err := Start(ProcessSpec{
			Rootfs: rootfs, Args: args, Env: env, Dir: b.img.Config.WorkingDir, User: b.img.Config.User,
			Hostname: id, Binds: binds, Stdout: b.out, Stderr: b.out,
			NoNetwork: mounts.noNet || b.o.NoNetwork, Secrets: mounts.secrets, SecretsDir: secretsDir,
			Caps: runCaps(mounts.insecure), Privileged: mounts.insecure, Ulimits: b.o.Ulimits, ShmSize: b.o.ShmSize,
		})
		if err != nil {
			return b.stepErr(c, err)
		}
		// A cancelled build (^C) kills the step's container at once (its pid 1
		// may ignore SIGINT) and keeps nothing of it, as docker build does.
		stop := context.AfterFunc(ctx, func() { p.Signal(os.Kill) })
		code, err := p.Wait()
		stop()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return b.stepErr(c, err)
		}
		if code != 0 {
			return &StepError{Step: commandText(c), Code: code,
				Err: fmt.Errorf("The command '%s' returned a non-zero code: %d", strings.Join(args, " "), code)} //nolint:staticcheck // docker's message
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	fmt.Fprintf(b.out, "Removing intermediate container %s\n", id)
	return false, b.commitStep(key, createdBy, layer, diffID)
}

// heredocScript is a RUN heredoc that starts with #!: run as a file.
type heredocScript struct{ name, data string }

// runHeredoc turns RUN with heredocs into the command line buildkit makes of
// it: a lone heredoc runs its content in the shell, or as a script when it
// starts with #!; a command with heredocs gets them back as shell heredocs.
func runHeredoc(c *instructions.RunCommand) ([]string, *heredocScript, error) {
	args := c.CmdLine
	if len(args) != 1 || !c.PrependShell {
		return nil, nil, fmt.Errorf("parsing produced an invalid run command: %v", args)
	}
	if h := parser.MustParseHeredoc(args[0]); h != nil {
		data := c.Files[0].Data
		if c.Files[0].Chomp {
			data = parser.ChompHeredocContent(data)
		}
		if strings.HasPrefix(data, "#!") {
			name := path.Base("/" + c.Files[0].Name)
			if name == "/" || name == "." || name == ".." {
				name = "script"
			}
			return []string{"/dev/pipes/" + name}, &heredocScript{name: name, data: data}, nil
		}
		return []string{data}, nil, nil
	}
	var sb strings.Builder
	sb.WriteString(args[0])
	for _, f := range c.Files {
		sb.WriteByte('\n')
		sb.WriteString(f.Data)
		sb.WriteString(f.Name)
	}
	return []string{sb.String()}, nil, nil
}

// workdirStep sets the working dir and creates it if the image lacks it.
func (b *builder) workdirStep(ctx context.Context, c *instructions.WorkdirCommand) (bool, error) {
	text := commandText(c)
	key := b.cacheKey(text, "")
	if ok, err := b.useCache(key); err != nil || ok {
		return ok, err
	}
	if err := b.editor.Dispatch(c); err != nil {
		return false, b.stepErr(c, err)
	}
	wd := b.img.Config.WorkingDir
	layer, diffID, err := b.withMount(ctx, func(rootfs string) error {
		rfd, err := openRootDir(rootfs)
		if err != nil {
			return err
		}
		defer rfd.Close()
		if f, err := openat2InRoot(rfd, wd, unix.O_PATH|unix.O_DIRECTORY); err == nil {
			f.Close()
			return nil
		}
		// The dirs it makes belong to the USER so far, as buildkit makes them.
		uid, gid := -1, -1
		if user := b.img.Config.User; user != "" {
			if uid, gid, err = workdirOwner(user, rootfs); err != nil {
				return err
			}
		}
		f, err := mkdirAllInRootOwned(rfd, wd, uid, gid)
		if err != nil {
			return fmt.Errorf("create WORKDIR %s: %w", wd, err)
		}
		return f.Close()
	})
	if err != nil {
		return false, b.stepErr(c, err)
	}
	// As the classic builder: the SHELL in effect, "#(nop) WORKDIR" one word.
	createdBy := strings.Join(append(slices.Clone(b.shell()), "#(nop) WORKDIR "+wd), " ")
	return false, b.commitStep(key, createdBy, layer, diffID)
}

// workdirOwner is the owner of the dirs WORKDIR makes after USER spec, as
// buildkit's readUser gives it (llb.WithUser): a numeric uid alone gets gid =
// uid, as --chown=<uid> does (parseChown); a name its passwd uid and gid; a
// group its gid. Unlike --chown, a name the image does not know is root
// (group: left as it was), not an error: buildkit builds such a Dockerfile.
func workdirOwner(spec, rootfs string) (int, int, error) {
	user, group, _ := strings.Cut(spec, ":")
	uid, gid := 0, 0
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		uid, gid = int(n), int(n)
	} else if user != "root" {
		u, err := LookupUserInRoot(user, rootfs)
		if err != nil && !errors.Is(err, ErrNoSuchUser) {
			return 0, 0, err
		}
		if err == nil {
			uid, gid = int(u.UID), int(u.GID)
		}
	}
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		gid = int(n)
	} else if group == "root" {
		gid = 0
	} else if group != "" {
		g, err := LookupUserInRoot("0:"+group, rootfs)
		if err != nil && !errors.Is(err, ErrNoSuchUser) {
			return 0, 0, err
		}
		if err == nil {
			gid = int(g.GID)
		}
	}
	return uid, gid, nil
}

// copyFlags are COPY's and ADD's flags.
type copyFlags struct {
	chown, chmod string
	from         string   // COPY --from
	exclude      []string // --exclude patterns, relative to each source
	checksum     string   // ADD --checksum of a URL's content
	unpack       *bool    // ADD --unpack (default: local archives, not URLs)
	parents      bool     // COPY --parents
	keepGitDir   bool     // ADD --keep-git-dir=true (refused)
	link         bool     // --link: no symlink on the destination path is followed
}

// copyStep runs COPY or ADD: sources from the context (or URLs, for ADD) into
// the image, through a union mount.
func (b *builder) copyStep(ctx context.Context, text string, sd *instructions.SourcesAndDest, flags copyFlags, isAdd bool, c instructions.Command) (bool, error) {
	chown, chmod, from := flags.chown, flags.chmod, flags.from
	if err := sd.Expand(b.expand); err != nil {
		return false, b.stepErr(c, err)
	}
	if err := sd.ExpandRaw(b.expandRaw); err != nil { // COPY <<EOF content
		return false, b.stepErr(c, err)
	}
	var inline []inlineFile
	for _, sc := range sd.SourceContents {
		inline = append(inline, inlineFile{name: path.Base("/" + sc.Path), data: sc.Data})
	}
	var err error
	// --chown, --chmod and --checksum take $VARs, as buildkit expands them.
	for _, f := range []*string{&chown, &chmod, &flags.checksum} {
		if *f, err = b.expand(*f); err != nil {
			return false, b.stepErr(c, err)
		}
	}
	mode, err := parseChmod(chmod)
	if err != nil {
		return false, b.stepErr(c, err)
	}
	dest := sd.DestPath
	if !path.IsAbs(dest) {
		wd := b.img.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		trailing := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
		dest = path.Join(wd, dest)
		if trailing {
			dest += "/"
		}
	}
	var srcs []source
	var psrcs []parentSource // with --parents
	var urls []*download
	defer func() {
		for _, d := range urls {
			os.Remove(d.file)
		}
	}()
	if flags.checksum != "" {
		// As buildkit: a checksum verifies the one URL ADD downloads.
		if len(sd.SourcePaths) != 1 || len(sd.SourceContents) != 0 {
			return false, b.stepErr(c, errors.New("checksum can't be specified for multiple sources"))
		}
		if !isURL(sd.SourcePaths[0]) {
			return false, b.stepErr(c, errors.New("checksum requires HTTP(S) or Git sources"))
		}
		if _, err := digest.Parse(flags.checksum); err != nil {
			return false, b.stepErr(c, fmt.Errorf("invalid checksum %q: %w", flags.checksum, err))
		}
	}
	bc := b.ctxDir
	fromKey := ""
	if from != "" {
		if from, err = b.expand(from); err != nil {
			return false, b.stepErr(c, err)
		}
		src, id, unmount, err := b.mountFrom(ctx, from)
		if err != nil {
			return false, b.stepErr(c, err)
		}
		defer unmount()
		bc, fromKey = src, "from "+id.String()+" "
	}
	if len(flags.exclude) > 0 {
		patterns := make([]string, len(flags.exclude))
		for i, p := range flags.exclude {
			if patterns[i], err = b.expand(p); err != nil {
				return false, b.stepErr(c, err)
			}
		}
		if bc, err = bc.withExcludes(patterns); err != nil {
			return false, b.stepErr(c, err)
		}
	}
	for _, p := range sd.SourcePaths {
		// A scheme or git@ makes a git source: a bare github.com/... is a
		// path in the context, as buildkit takes it.
		if isAdd && IsGitURL(p) && !strings.HasPrefix(p, "github.com/") {
			// ADD of a git repository (buildkit's): its files, alone.
			if len(sd.SourcePaths) != 1 || len(sd.SourceContents) != 0 || from != "" || flags.parents || flags.checksum != "" {
				return false, b.stepErr(c, errors.New("ADD of a git repository takes it as its only source, without --from, --parents or --checksum"))
			}
			if flags.keepGitDir {
				return false, b.stepErr(c, errors.New("ADD --keep-git-dir=true is not supported: the .git dir is left out"))
			}
			tmp, err := os.MkdirTemp(b.tmpRoot, "git-add-")
			if err != nil {
				return false, b.stepErr(c, err)
			}
			defer os.RemoveAll(tmp)
			dir, err := CloneGit(ctx, p, filepath.Join(tmp, "repo"))
			if err != nil {
				return false, b.stepErr(c, err)
			}
			bc = &buildContext{dir: dir, copyExcl: bc.copyExcl, hideDir: true}
			s, err := bc.resolve(".")
			if err != nil {
				return false, b.stepErr(c, err)
			}
			srcs = append(srcs, s...)
			continue
		}
		if isAdd && isURL(p) {
			d, err := fetchURL(ctx, p, b.tmpRoot)
			if err != nil {
				return false, b.stepErr(c, err)
			}
			urls = append(urls, d)
			if flags.checksum != "" {
				if got := digest.NewDigestFromEncoded(digest.SHA256, d.sum); got.String() != flags.checksum {
					return false, b.stepErr(c, fmt.Errorf("checksum mismatch for %s: got %s, want %s", p, got, flags.checksum))
				}
			}
			continue
		}
		if flags.parents {
			ps, err := bc.resolveParents(p)
			if err != nil {
				return false, b.stepErr(c, err)
			}
			psrcs = append(psrcs, ps...)
			continue
		}
		s, err := bc.resolve(p)
		if err != nil {
			return false, b.stepErr(c, err)
		}
		srcs = append(srcs, s...)
	}
	hash, err := bc.hashSources(srcs)
	if err != nil {
		return false, b.stepErr(c, err)
	}
	if flags.parents {
		if hash, err = bc.hashParents(psrcs); err != nil {
			return false, b.stepErr(c, err)
		}
	}
	if fromKey != "" {
		hash = digest.FromString(fromKey + hash).Encoded()
	}
	for _, d := range urls {
		hash = digest.FromString(hash + " " + d.url + " " + d.sum).Encoded()
	}
	for _, f := range inline {
		hash = digest.FromString(fmt.Sprintf("%s heredoc %q %q", hash, f.name, f.data)).Encoded()
	}
	key := b.cacheKey(text, hash)
	if ok, err := b.useCache(key); err != nil || ok {
		return ok, err
	}
	kind := "file"
	if len(srcs)+len(psrcs)+len(urls)+len(inline) > 1 {
		kind = "multi"
	} else if len(srcs) == 1 && srcs[0].fi.IsDir() {
		kind = "dir"
	}
	name := "COPY"
	if isAdd {
		name = "ADD"
	}
	createdBy := strings.Join(append(slices.Clone(b.shell()), fmt.Sprintf("#(nop) %s %s:%s in %s ", name, kind, hash, dest)), " ")
	layer, diffID, err := b.withMount(ctx, func(rootfs string) error {
		cp, err := newCopier(rootfs, chown, mode)
		if err != nil {
			return err
		}
		defer cp.close()
		cp.keepOwners = from != "" // COPY --from keeps owners; context files are root's
		cp.link = flags.link
		unpackLocal, unpackURLs := isAdd, false
		if isAdd && flags.unpack != nil {
			unpackLocal, unpackURLs = *flags.unpack, *flags.unpack
		}
		if flags.parents {
			if err := cp.copyParents(psrcs, dest); err != nil {
				return err
			}
			if len(inline) == 0 {
				return nil
			}
			dest = strings.TrimSuffix(dest, "/") + "/"
		}
		return cp.copyAll(bc, srcs, urls, inline, dest, unpackLocal, unpackURLs)
	})
	if errors.Is(err, errSeveralToFile) {
		err = fmt.Errorf("When using %s with more than one source file, the destination must be a directory and end with a /", name) //nolint:staticcheck // docker's message
	}
	if err != nil {
		return false, b.stepErr(c, err)
	}
	return false, b.commitStep(key, createdBy, layer, diffID)
}

// mountFrom mounts, read-only, the source of COPY --from: an earlier stage (by
// name or index) or an image in the store, and returns it as a source tree whose
// paths resolve inside it, its config digest, and how to unmount it.
func (b *builder) mountFrom(ctx context.Context, from string) (*buildContext, digest.Digest, func(), error) {
	var ids []digest.Digest
	var descs []ocispec.Descriptor
	var id digest.Digest
	named, name := false, ""
	if v, ok := b.namedContext(from); ok {
		if ref, isImage := strings.CutPrefix(v, "docker-image://"); isImage {
			from, named = ref, true
		} else {
			// A local dir, with its own .dockerignore; its content is in the
			// cache keys of what reads it (hashSources).
			bc, err := openContext(v, "", false)
			if err != nil {
				return nil, "", nil, fmt.Errorf("build context %s: %w", from, err)
			}
			bc.from = "build context " + from + " or excluded by its .dockerignore"
			return bc, digest.FromString("context " + bc.dir), func() {}, nil
		}
	}
	if !named {
		if err := b.unbuiltStage(from); err != nil {
			return nil, "", nil, err
		}
	}
	if st, ok := b.stages[strings.ToLower(from)]; ok && !named {
		var img dockerspec.DockerOCIImage
		if err := json.Unmarshal(st.raw, &img); err != nil {
			return nil, "", nil, err
		}
		ids, descs, id = img.RootFS.DiffIDs, st.descs, st.id
		name = "stage " + from
	} else {
		img, err := b.resolveImage(ctx, from)
		if err != nil {
			return nil, "", nil, fmt.Errorf("--from=%s: no such stage or image: %w", from, err)
		}
		ids, descs, id = img.Config.RootFS.DiffIDs, img.Manifest.Layers, img.ID
		name = "image " + from
	}
	lowers, err := b.layerDirs(ctx, ids, descs)
	if err != nil {
		return nil, "", nil, err
	}
	top, release, err := newScratchDir(b.tmpRoot, "from-")
	if err != nil {
		return nil, "", nil, err
	}
	remove := func() {
		os.RemoveAll(top)
		release()
	}
	dir := filepath.Join(top, "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		remove()
		return nil, "", nil, err
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // the prefix realPathInRoot checks against
	}
	if len(lowers) == 0 { // an empty (scratch) stage: an empty dir will do
		return &buildContext{dir: dir, from: name, hideDir: true}, id, remove, nil
	}
	m, err := mountStep(stepMountSpec{Dir: dir, Lowers: lowers, ReadOnly: true, FsName: "layerfs:build"})
	if err != nil {
		remove()
		return nil, "", nil, err
	}
	unmount := func() {
		if m.Unmount() == nil {
			remove()
		} else {
			release() // a later build or gc clears it
		}
	}
	return &buildContext{dir: dir, from: name, hideDir: true}, id, unmount, nil
}

// runCaps is a RUN step's capabilities: buildkit's default set, every one with
// --security=insecure.
func runCaps(insecure bool) []string {
	if insecure {
		return []string{AllCaps}
	}
	return nil
}
