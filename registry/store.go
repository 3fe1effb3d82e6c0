package registry

import (
	"context"
	"io"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Store is what pulls and pushes need from the image store; *blobstore.Store has it.
type Store interface {
	Has(d digest.Digest) bool
	Put(ctx context.Context, r io.Reader, want digest.Digest) (digest.Digest, int64, error)
	Stage(ctx context.Context, r io.Reader, want digest.Digest) (*blobstore.Staged, error)
	Open(d digest.Digest) (io.ReadCloser, error)
	Lease(ctx context.Context) (release func(), err error)
	Resolve(ref string) (*blobstore.Image, error)
	Tag(ctx context.Context, img *blobstore.Image, ref string) error
	AddManifest(ctx context.Context, desc ocispec.Descriptor, tags ...string) (*blobstore.Image, error)
	AddManifestRef(ctx context.Context, desc ocispec.Descriptor, repoDigest string, tags ...string) (*blobstore.Image, error)
	AddRepoDigest(ctx context.Context, manifest digest.Digest, repoDigest string) error
	BlobSources(d digest.Digest) ([]string, error)
	AddBlobSources(ctx context.Context, repository string, blobs ...digest.Digest) error
	GzipTwinOf(diffID digest.Digest) (blobstore.GzipTwin, bool)
	AddGzipTwin(ctx context.Context, diffID digest.Digest, tw blobstore.GzipTwin) error
	LayerSizes(ctx context.Context, imgs ...*blobstore.Image) (map[digest.Digest]int64, error)
	RecordLayerSizes(ctx context.Context, sizes map[digest.Digest]int64) error
	AppendLayer(ctx context.Context, tarStream io.Reader, c blobstore.Compression, opts ...blobstore.AppendOption) (ocispec.Descriptor, digest.Digest, error)
}

var _ Store = (*blobstore.Store)(nil)

// Progress receives what docker prints while pulling or pushing. Layer is called
// from several goroutines at once; implementations serialise their output.
type Progress interface {
	// Header is a whole line such as "latest: Pulling from library/busybox".
	Header(line string)
	// Layer reports one layer's state. id is docker's short id (12 hex digits);
	// Downloading and Pushing carry the bytes done so far and the total.
	Layer(id string, status Status, current, total int64)
}

// Status is one of docker's per-layer progress words.
type Status string

// Pull statuses, in the order a layer goes through them, then push statuses.
const (
	StatusPullingFSLayer Status = "Pulling fs layer"
	StatusWaiting        Status = "Waiting"
	StatusDownloading    Status = "Downloading"
	StatusVerifying      Status = "Verifying Checksum"
	StatusDownloaded     Status = "Download complete"
	StatusPullComplete   Status = "Pull complete"
	StatusAlreadyExists  Status = "Already exists"

	StatusPreparing      Status = "Preparing"
	StatusPushing        Status = "Pushing"
	StatusPushed         Status = "Pushed"
	StatusLayerExists    Status = "Layer already exists"
	StatusMountedPrefix  Status = "Mounted from " // followed by the source repository
	StatusSkippedForeign Status = "Skipped foreign layer"
)

// Final reports whether s ends a layer's progress.
func (s Status) Final() bool {
	switch s {
	case StatusPullComplete, StatusAlreadyExists, StatusPushed, StatusLayerExists, StatusSkippedForeign:
		return true
	}
	return len(s) > len(StatusMountedPrefix) && s[:len(StatusMountedPrefix)] == StatusMountedPrefix
}

type noProgress struct{}

func (noProgress) Header(string)                      {}
func (noProgress) Layer(string, Status, int64, int64) {}

// shortID is docker's 12-hex-digit form of a digest.
func shortID(d digest.Digest) string {
	h := d.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// countingReader reports bytes read to fn.
type countingReader struct {
	r  io.Reader
	n  int64
	fn func(n int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		c.fn(c.n)
	}
	return n, err
}

// ctxReader makes a long read stop when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
