package blobstore

import (
	"context"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The layer pipeline of commit, import and build, with the work spread over every
// core. The tar stream is read in 1 MiB buffers; each buffer goes to a goroutine that
// computes the diffID (sha256 of the uncompressed stream) while the compressor works
// on it: parallel gzip or parallel zstd frames (commit_parallel.go); the blob writer hashes the compressed bytes as it writes them. Settings
// are fixed, so the same tar gives the same blob on any machine.

// CommitGzipLevel is the deflate level of commit's gzip layers: klauspost's level 1
// runs about 2x its level 6 for about 12% more bytes on typical filesystem trees (see
// bench/README.md, "Commit benchmarks").
const CommitGzipLevel = 1

const appendBufSize = 1 << 20

// AppendOption sets an optional knob of AppendLayer.
type AppendOption func(*appendConfig)

type appendConfig struct {
	written *atomic.Int64
	level   int
}

// WithWrittenCounter adds the compressed bytes written to n as they are written (for
// progress displays reading n from another goroutine).
func WithWrittenCounter(n *atomic.Int64) AppendOption {
	return func(c *appendConfig) { c.written = n }
}

// WithGzipLevel overrides CommitGzipLevel (1..9).
func WithGzipLevel(level int) AppendOption {
	return func(c *appendConfig) { c.level = level }
}

// AppendLayer stores a new layer from an uncompressed tar stream in one pass, using
// every core: the diffID (sha256 of the stream) is hashed on its own goroutine while
// c ("" is gzip) compresses; gzip is parallel (deterministic, CommitGzipLevel) and
// zstd is a stream of independent 4 MiB frames compressed in parallel (deterministic
// too). tarStream is read to EOF, not closed. Returns the layer descriptor for a
// manifest and the diffID for the config. The blob is unreferenced until an image
// names it: hold a Lease until then. Safe for concurrent use.
func (s *Store) AppendLayer(ctx context.Context, tarStream io.Reader, c Compression, opts ...AppendOption) (_ ocispec.Descriptor, _ digest.Digest, err error) {
	defer func() { err = s.noSpace(err) }()
	cfg := appendConfig{level: CommitGzipLevel}
	for _, o := range opts {
		o(&cfg)
	}
	if c == "" {
		c = Gzip
	}
	release, err := s.Lease(ctx)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer release()
	bw, err := s.newBlobWriter()
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer bw.abort()
	var out io.Writer = bw
	if cfg.written != nil {
		out = countingWriter{bw, cfg.written}
	}
	cw, err := parallelCompressor(out, c, cfg.level)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	sc := newTarSizeCounter()
	diffID, err := copyHashing(ctx, cw, tarStream, sc)
	if cerr := cw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("append layer: %w", err)
	}
	d, size, err := bw.commit("")
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("append layer: %w", err)
	}
	if sc.ok() {
		// best effort: LayerSizes counts a layer without a record from its blob
		_ = s.recordLayerSizes(ctx, map[digest.Digest]int64{diffID: sc.size()})
	}
	return ocispec.Descriptor{MediaType: LayerMediaType(c), Digest: d, Size: size}, diffID, nil
}

func parallelCompressor(w io.Writer, c Compression, level int) (io.WriteCloser, error) {
	workers := runtime.GOMAXPROCS(0)
	switch c {
	case None:
		return nopWriteCloser{w}, nil
	case Gzip:
		return newParallelGzip(w, level, workers)
	case Zstd:
		return newParallelZstd(w, workers)
	}
	return nil, fmt.Errorf("compression %q: %w", c, ErrUnknownMediaType)
}

// copyHashing copies r to w in appendBufSize buffers and returns the sha256 of what
// it copied, hashed on another goroutine while w works on the same buffer (w must
// not keep a buffer past Write, which io.Writer forbids anyway). The hashing
// goroutine also writes every buffer to sinks (their errors are ignored).
func copyHashing(ctx context.Context, w io.Writer, r io.Reader, sinks ...io.Writer) (digest.Digest, error) {
	const nbuf = 4
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, appendBufSize)
	}
	toHash := make(chan []byte, nbuf)
	dh := digest.SHA256.Digester()
	hashed := make(chan struct{})
	go func(h hash.Hash) {
		for b := range toHash {
			h.Write(b)
			for _, s := range sinks {
				s.Write(b)
			}
			free <- b[:cap(b)]
		}
		close(hashed)
	}(dh.Hash())
	var err error
	for {
		if err = ctx.Err(); err != nil {
			break
		}
		buf := <-free
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			toHash <- buf[:n]
			if _, werr := w.Write(buf[:n]); werr != nil {
				err = werr
				break
			}
		} else {
			free <- buf
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	close(toHash)
	<-hashed
	if err != nil {
		return "", err
	}
	return dh.Digest(), nil
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
