package build

// Stages: FROM (an image, scratch, or an earlier stage) and ONBUILD triggers.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
)

// stageResult is a finished build stage, for FROM <stage> and COPY --from.
type stageResult struct {
	raw    []byte
	id     digest.Digest
	descs  []ocispec.Descriptor
	parent *blobstore.Image
	// args are the stage's build args at its end: a stage FROM it starts with
	// them (buildkit's dispatchState.init; docker's "inherited by child stages").
	args map[string]string
}

// endStage records the stage just built under its index and its name.
func (b *builder) endStage(i int, name string) {
	r := &stageResult{raw: b.raw, id: b.id, descs: append([]ocispec.Descriptor(nil), b.descs...), parent: b.parent, args: maps.Clone(b.args)}
	b.stages[strconv.Itoa(i)] = r
	if name != "" {
		b.stages[strings.ToLower(name)] = r
	}
}

// from starts the build from the stage's base image (or scratch).
func (b *builder) from(ctx context.Context, st instructions.Stage) error {
	lex := shell.NewLex(b.escape)
	base, _, err := lex.ProcessWord(st.BaseName, shell.EnvsFromSlice(envSlice(b.metaArgs, nil)))
	if err != nil {
		return fmt.Errorf("%w: FROM %s: %w", ErrBuild, st.BaseName, err)
	}
	b.descs, b.parent = nil, nil
	b.args = map[string]string{}
	named, dirBase := false, ""
	if v, ok := b.namedContext(base); ok {
		ref, isImage := strings.CutPrefix(v, "docker-image://")
		if isImage {
			base = ref
		} else {
			dirBase = v
		}
		named = true
	}
	if dirBase != "" {
		// A --build-context dir as the base, as buildkit allows: an image of
		// one layer, the dir's files (its .dockerignore honoured, root's).
		if err := b.fromDir(ctx, dirBase); err != nil {
			return fmt.Errorf("%w: FROM %s: %w", ErrBuild, base, err)
		}
	} else if prev, ok := b.stages[strings.ToLower(base)]; ok && !named {
		// FROM an earlier stage: go on from its result.
		b.raw, b.id, b.parent = prev.raw, prev.id, prev.parent
		b.descs = append([]ocispec.Descriptor(nil), prev.descs...)
		b.args = maps.Clone(prev.args)
		b.img = dockerspec.DockerOCIImage{}
		if err := json.Unmarshal(b.raw, &b.img); err != nil {
			return err
		}
	} else if base == "scratch" {
		if err := b.fromLayers(nil, nil); err != nil {
			return err
		}
	} else {
		img, err := b.resolveImage(ctx, base)
		if err != nil {
			return fmt.Errorf("%w: FROM %s: %w", ErrBuild, base, err)
		}
		b.parent = img
		b.img = dockerspec.DockerOCIImage{}
		b.raw = img.RawConfig
		if len(b.raw) == 0 {
			if b.raw, err = json.Marshal(img.Config); err != nil {
				return err
			}
		}
		if err := json.Unmarshal(b.raw, &b.img); err != nil {
			return fmt.Errorf("%w: FROM %s: config: %w", ErrBuild, base, err)
		}
		b.id = img.ID
		b.descs = append([]ocispec.Descriptor(nil), img.Manifest.Layers...)
		if len(b.descs) != len(b.img.RootFS.DiffIDs) {
			return fmt.Errorf("%w: FROM %s: %d layers but %d diff_ids", ErrBuild, base, len(b.descs), len(b.img.RootFS.DiffIDs))
		}
	}
	if getenv(b.img.Config.Env, "PATH") == "" {
		// As buildkit does: steps see (and the image records) the default PATH.
		b.img.Config.Env = append([]string{"PATH=" + DefaultPath}, b.img.Config.Env...)
	}
	b.editor = &ConfigEditor{Config: &b.img.Config, Escape: b.escape}
	return nil
}

// onBuildTriggers runs the base image's ONBUILD instructions right after FROM, as
// docker does; the new image does not inherit them.
func (b *builder) onBuildTriggers(ctx context.Context) error {
	triggers := b.img.Config.OnBuild
	if len(triggers) == 0 {
		return nil
	}
	b.img.Config.OnBuild = nil
	s := "s"
	if len(triggers) == 1 {
		s = ""
	}
	fmt.Fprintf(b.out, "# Executing %d build trigger%s\n", len(triggers), s)
	for _, tr := range triggers {
		res, err := parser.Parse(strings.NewReader(tr))
		if err != nil {
			return fmt.Errorf("%w: ONBUILD %s: %w", ErrBuild, tr, err)
		}
		for _, n := range res.AST.Children {
			c, err := instructions.ParseCommand(n)
			if err != nil {
				return fmt.Errorf("%w: ONBUILD %s: %w", ErrBuild, tr, err)
			}
			switch c.(type) {
			case *instructions.OnbuildCommand, *instructions.MaintainerCommand:
				return fmt.Errorf("%w: ONBUILD %s: not allowed as a trigger", ErrBuild, tr)
			}
			if _, err := b.dispatch(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// fromLayers starts from an image with no config but these layers (none:
// scratch).
func (b *builder) fromLayers(diffIDs []digest.Digest, descs []ocispec.Descriptor) error {
	b.img = dockerspec.DockerOCIImage{Image: ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: append([]digest.Digest{}, diffIDs...)},
	}}
	raw, err := json.Marshal(b.img)
	if err != nil {
		return err
	}
	b.raw, b.id, b.descs = raw, digest.FromBytes(raw), descs
	return nil
}

// fromDir starts from the files of a dir (a --build-context): copied as COPY
// copies a context, then stored as one layer.
func (b *builder) fromDir(ctx context.Context, dir string) error {
	bc, err := openContext(dir, "", false)
	if err != nil {
		return err
	}
	srcs, err := bc.resolve(".")
	if err != nil {
		return err
	}
	top, release, err := newScratchDir(b.tmpRoot, "base-")
	if err != nil {
		return err
	}
	defer func() { os.RemoveAll(top); release() }()
	rootfs := filepath.Join(top, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return err
	}
	cp, err := newCopier(rootfs, "", nil)
	if err != nil {
		return err
	}
	err = cp.copyAll(bc, srcs, nil, nil, "/", false, false)
	cp.close()
	if err != nil {
		return err
	}
	rc := cow.Diff(ctx, rootfs, cow.DiffOptions{})
	desc, diffID, err := b.o.Store.AppendLayer(ctx, rc, blobstore.Gzip)
	rc.Close()
	if err != nil {
		return err
	}
	return b.fromLayers([]digest.Digest{diffID}, []ocispec.Descriptor{desc})
}
