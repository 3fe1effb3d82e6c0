package build

import (
	"errors"
	"fmt"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer depth limits, as docker users know them: a warning from WarnLayers on, and no
// image with more than MaxLayers layers (the limit of overlay mount options that
// docker's graph drivers inherited; other tools refuse such images).
const (
	WarnLayers = 100
	MaxLayers  = 127
)

// ErrTooManyLayers is returned when a commit would make an image deeper than MaxLayers.
var ErrTooManyLayers = errors.New("too many layers")

// CommitOptions are what a commit records in the new image besides its layer.
type CommitOptions struct {
	Author  string // image author and history author (docker commit -a)
	Comment string // history comment (docker commit -m)
	// CreatedBy is the history's created_by. Empty means docker's choice for a
	// container started with the image's default command: the parent's Cmd joined
	// with spaces.
	CreatedBy string
	// Created is the image and history time; zero means now. A build with
	// SOURCE_DATE_EPOCH passes that time here for reproducible configs.
	Created time.Time
	// Changes are docker --change instructions, applied with ApplyChanges.
	Changes []string
}

func (o CommitOptions) created() time.Time {
	if o.Created.IsZero() {
		return time.Now().UTC()
	}
	return o.Created.UTC()
}

// ChildImage returns the config of the image a commit makes on top of parent: the
// parent's config plus the changes, diffID appended to rootfs.diff_ids, and one history
// entry. An empty diffID means the commit changed no files: no layer is added and the
// history entry is marked empty_layer, as docker does. parent is not modified.
// ErrTooManyLayers when the result would exceed MaxLayers.
func ChildImage(parent dockerspec.DockerOCIImage, diffID digest.Digest, o CommitOptions) (dockerspec.DockerOCIImage, error) {
	img := copyImage(parent)
	if err := applyCommitChanges(&img.Config, parent.Config, o.Changes); err != nil {
		return dockerspec.DockerOCIImage{}, err
	}
	if diffID != "" {
		if n := len(img.RootFS.DiffIDs) + 1; n > MaxLayers {
			return dockerspec.DockerOCIImage{}, fmt.Errorf("%w: the image would have %d layers, the limit is %d (commit --squash makes one layer)", ErrTooManyLayers, n, MaxLayers)
		}
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, diffID)
	}
	created := o.created()
	img.Created = &created
	img.Author = o.Author
	img.History = append(img.History, ocispec.History{
		Created:    &created,
		CreatedBy:  o.createdBy(parent),
		Author:     o.Author,
		Comment:    o.Comment,
		EmptyLayer: diffID == "",
	})
	return img, nil
}

// SquashImage returns the config of a one-layer image holding parent's merged view
// plus the commit's changes (diffID, which must be set): the parent's history is kept
// with every entry marked empty_layer, and a new entry records the merge, as docker's
// squash does. parent is not modified.
func SquashImage(parent dockerspec.DockerOCIImage, diffID digest.Digest, o CommitOptions) (dockerspec.DockerOCIImage, error) {
	if diffID == "" {
		return dockerspec.DockerOCIImage{}, errors.New("squash needs a layer")
	}
	img := copyImage(parent)
	if err := applyCommitChanges(&img.Config, parent.Config, o.Changes); err != nil {
		return dockerspec.DockerOCIImage{}, err
	}
	for i := range img.History {
		img.History[i].EmptyLayer = true
	}
	comment := o.Comment
	if comment == "" {
		comment = fmt.Sprintf("merge %d layers to %s", len(parent.RootFS.DiffIDs), diffID)
	}
	img.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}
	created := o.created()
	img.Created = &created
	img.Author = o.Author
	img.History = append(img.History, ocispec.History{
		Created:   &created,
		CreatedBy: o.createdBy(parent),
		Author:    o.Author,
		Comment:   comment,
	})
	return img, nil
}

// applyCommitChanges applies a commit's changes as docker commit does: the changes
// (ApplyChanges), then docker's merge of the result with the container's config
// (moby daemon/commit.go), which fills what the changes left empty. Two cases show:
// `ENTRYPOINT []` (or `CMD []`) leaves CMD empty, and the merge puts the container's
// CMD back, so `-c 'ENTRYPOINT []'` clears the entrypoint and keeps CMD; and a
// HEALTHCHECK without an option keeps the old healthcheck's interval, timeout,
// start period and retries. So does a USER that expands to nothing (`USER ""`,
// `USER $UNSET`): the container's user stays. Every other field the merge fills is
// one the changes can only add to or set (an empty WORKDIR or STOPSIGNAL is refused).
// Import and build do no such merge.
func applyCommitChanges(cfg *dockerspec.DockerOCIImageConfig, base dockerspec.DockerOCIImageConfig, changes []string) error {
	if err := ApplyChanges(cfg, changes); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	if cfg.User == "" {
		cfg.User = base.User
	}
	if len(cfg.Entrypoint) == 0 {
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = cloneSlice(base.Cmd)
		}
		if cfg.Entrypoint == nil {
			cfg.Entrypoint = cloneSlice(base.Entrypoint)
		}
	}
	if h, old := cfg.Healthcheck, base.Healthcheck; h != nil && old != nil {
		if len(h.Test) == 0 {
			h.Test = cloneSlice(old.Test)
		}
		if h.Interval == 0 {
			h.Interval = old.Interval
		}
		if h.Timeout == 0 {
			h.Timeout = old.Timeout
		}
		if h.StartPeriod == 0 {
			h.StartPeriod = old.StartPeriod
		}
		if h.StartInterval == 0 {
			h.StartInterval = old.StartInterval
		}
		if h.Retries == 0 {
			h.Retries = old.Retries
		}
	}
	return nil
}

func (o CommitOptions) createdBy(parent dockerspec.DockerOCIImage) string {
	if o.CreatedBy != "" {
		return o.CreatedBy
	}
	return strings.Join(parent.Config.Cmd, " ")
}

// DepthWarning returns a warning for a commit that makes an image of n layers, or "".
func DepthWarning(n int) string {
	if n >= WarnLayers && n <= MaxLayers {
		return fmt.Sprintf("the image will have %d layers; more than %d are refused (commit --squash makes one)", n, MaxLayers)
	}
	return ""
}

func copyImage(p dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	img := p
	img.Config = CopyConfig(p.Config)
	img.RootFS.DiffIDs = cloneSlice(p.RootFS.DiffIDs)
	if img.RootFS.Type == "" {
		img.RootFS.Type = "layers"
	}
	img.History = cloneSlice(p.History)
	return img
}
