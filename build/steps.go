package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
)

// lowerDirs unpacks the image's layers (if needed) and returns their dirs, top first.
func (b *builder) lowerDirs(ctx context.Context) ([]string, error) {
	ids := b.img.RootFS.DiffIDs
	if len(ids) != len(b.descs) {
		return nil, fmt.Errorf("%w: %d layers but %d diff_ids", ErrBuild, len(b.descs), len(ids))
	}
	srcs := make([]cow.LayerSource, len(ids))
	for i, d := range b.descs {
		srcs[i] = cow.LayerSource{DiffID: ids[i], Open: func() (io.ReadCloser, error) { return b.o.Store.OpenLayer(d) }}
	}
	paths, err := b.layers.EnsureAll(ctx, srcs)
	if err != nil {
		return nil, err
	}
	slices.Reverse(paths)
	return paths, nil
}

// mountpoints are the dirs a container mounts over; one the image lacks is made
// for the run and removed again if it is still empty, so it is not in the layer.
var mountpoints = []string{"proc", "dev", "sys"}

// withMount mounts the image so far with a fresh upper dir, calls fn with the
// mountpoint, unmounts, and turns the upper dir into a layer: nil if fn changed
// nothing.
func (b *builder) withMount(ctx context.Context, fn func(rootfs string) error) (*ocispec.Descriptor, digest.Digest, error) {
	lowers, err := b.lowerDirs(ctx)
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(b.tmpRoot, 0o700); err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp(b.tmpRoot, "step-")
	if err != nil {
		return nil, "", err
	}
	upper, work, mnt := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs")
	for _, d := range []string{upper, work, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, "", err
		}
	}
	m, err := fs.Mount(mnt, fs.Options{Lowers: lowers, Upper: upper, Work: work, Format: cow.FormatOCI, FsName: "layerfs:build"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	missing := map[string]bool{}
	for _, p := range mountpoints {
		if _, err := os.Lstat(filepath.Join(mnt, p)); err != nil {
			missing[p] = true
		}
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
	for p := range missing {
		os.Remove(filepath.Join(upper, p)) // only if empty
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
	if len(c.Files) > 0 {
		return false, b.stepErr(c, errors.New("heredocs are not supported"))
	}
	if len(c.FlagsUsed) > 0 {
		return false, b.stepErr(c, fmt.Errorf("RUN flags are not supported: %v", c.FlagsUsed))
	}
	args := append([]string(nil), c.CmdLine...)
	if c.PrependShell {
		sh := b.img.Config.Shell
		if len(sh) == 0 {
			sh = defaultShell
		}
		args = append(append([]string(nil), sh...), strings.Join(c.CmdLine, " "))
	}
	if len(args) == 0 {
		return false, b.stepErr(c, errors.New("no command"))
	}
	createdBy := strings.Join(args, " ")
	if ak := b.argsKey(); len(ak) > 0 {
		createdBy = fmt.Sprintf("|%d %s %s", len(ak), strings.Join(ak, " "), createdBy)
	}
	key := b.cacheKey("RUN "+createdBy, "")
	if ok, err := b.useCache(key); err != nil || ok {
		return ok, err
	}
	env := append(append([]string(nil), b.img.Config.Env...), envSlice(b.args, b.img.Config.Env)...)
	id := newContainerID()[:12]
	fmt.Fprintf(b.out, " ---> Running in %s\n", id)
	layer, diffID, err := b.withMount(ctx, func(rootfs string) error {
		code, err := RunProcess(ProcessSpec{
			Rootfs: rootfs, Args: args, Env: env, Dir: b.img.Config.WorkingDir, User: b.img.Config.User,
			Hostname: id, Stdout: b.out, Stderr: b.out,
		})
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
		f, err := mkdirAllInRoot(rfd, wd)
		if err != nil {
			return fmt.Errorf("create WORKDIR %s: %w", wd, err)
		}
		return f.Close()
	})
	if err != nil {
		return false, b.stepErr(c, err)
	}
	return false, b.commitStep(key, "/bin/sh -c #(nop) WORKDIR "+wd, layer, diffID)
}

// copyStep runs COPY or ADD: sources from the context (or URLs, for ADD) into
// the image, through a union mount.
func (b *builder) copyStep(ctx context.Context, text string, sd *instructions.SourcesAndDest, chown, chmod string, isAdd bool, c instructions.Command) (bool, error) {
	if len(sd.SourceContents) > 0 {
		return false, b.stepErr(c, errors.New("heredocs are not supported"))
	}
	if err := sd.Expand(b.expand); err != nil {
		return false, b.stepErr(c, err)
	}
	var err error
	if chown, err = b.expand(chown); err != nil {
		return false, b.stepErr(c, err)
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
	var urls []*download
	defer func() {
		for _, d := range urls {
			os.Remove(d.file)
		}
	}()
	for _, p := range sd.SourcePaths {
		if isAdd && isURL(p) {
			d, err := fetchURL(ctx, p, b.tmpRoot)
			if err != nil {
				return false, b.stepErr(c, err)
			}
			urls = append(urls, d)
			continue
		}
		s, err := b.ctxDir.resolve(p)
		if err != nil {
			return false, b.stepErr(c, err)
		}
		srcs = append(srcs, s...)
	}
	hash, err := b.ctxDir.hashSources(srcs)
	if err != nil {
		return false, b.stepErr(c, err)
	}
	for _, d := range urls {
		hash = digest.FromString(hash + " " + d.url + " " + d.sum).Encoded()
	}
	key := b.cacheKey(text, hash)
	if ok, err := b.useCache(key); err != nil || ok {
		return ok, err
	}
	kind := "file"
	if len(srcs)+len(urls) > 1 {
		kind = "multi"
	} else if len(srcs) == 1 && srcs[0].fi.IsDir() {
		kind = "dir"
	}
	name := "COPY"
	if isAdd {
		name = "ADD"
	}
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) %s %s:%s in %s ", name, kind, hash, dest)
	layer, diffID, err := b.withMount(ctx, func(rootfs string) error {
		cp, err := newCopier(rootfs, chown, mode)
		if err != nil {
			return err
		}
		defer cp.close()
		return cp.copyAll(b.ctxDir, srcs, urls, dest, isAdd)
	})
	if err != nil {
		return false, b.stepErr(c, err)
	}
	return false, b.commitStep(key, createdBy, layer, diffID)
}
