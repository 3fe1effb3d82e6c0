package blobstore

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression of a layer blob.
type Compression string

const (
	Gzip Compression = "gzip" // the default
	Zstd Compression = "zstd"
	None Compression = "none"
)

// Docker media types read alongside the OCI ones.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	MediaTypeDockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mediaTypeOCINonDistZstd     = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

// LayerCompression is the compression a layer media type says, and whether the
// media type is a layer type the store knows.
func LayerCompression(mediaType string) (Compression, bool) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer, MediaTypeDockerLayer, ocispec.MediaTypeImageLayerNonDistributable: //nolint:staticcheck
		return None, true
	case ocispec.MediaTypeImageLayerGzip, MediaTypeDockerLayerGzip, MediaTypeDockerForeignGzip, ocispec.MediaTypeImageLayerNonDistributableGzip: //nolint:staticcheck
		return Gzip, true
	case ocispec.MediaTypeImageLayerZstd, MediaTypeDockerLayerZstd, mediaTypeOCINonDistZstd:
		return Zstd, true
	}
	return "", false
}

// LayerMediaType is the OCI media type of a layer with compression c.
func LayerMediaType(c Compression) string {
	switch c {
	case None:
		return ocispec.MediaTypeImageLayer
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.MediaTypeImageLayerGzip
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// sniff tells the compression of a stream from its first bytes.
func sniff(b []byte) Compression {
	switch {
	case bytes.HasPrefix(b, gzipMagic):
		return Gzip
	case bytes.HasPrefix(b, zstdMagic):
		return Zstd
	}
	return None
}

// decompress wraps r (already peeked into br) by compression c. The returned closer
// releases decoder resources; it does not close r.
func decompress(r io.Reader, c Compression) (io.Reader, func(), error) {
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case Zstd:
		// a window cap keeps a hostile frame header from reserving gigabytes
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// autoDecompress sniffs r and returns the decompressed stream. Besides the layer
// compressions it reads the whole-archive ones docker load and import take:
// bzip2 and xz (through xz(1), as docker does); those report None, as no layer
// media type names them.
func autoDecompress(r io.Reader) (io.Reader, Compression, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(len(xzMagic))
	switch {
	case bytes.HasPrefix(head, bzip2Magic):
		return bzip2.NewReader(br), None, func() {}, nil
	case bytes.HasPrefix(head, xzMagic):
		xr, err := newXZReader(br)
		if err != nil {
			return nil, None, nil, err
		}
		return xr, None, xr.close, nil
	}
	c := sniff(head)
	dr, done, err := decompress(br, c)
	return dr, c, done, err
}

var (
	bzip2Magic = []byte("BZh")
	xzMagic    = []byte("\xfd7zXZ\x00")
)

// xzReader is the output of `xz -dc` reading r; xz's failure (a damaged stream)
// is the error at its end.
type xzReader struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr bytes.Buffer
	waited bool
}

func newXZReader(r io.Reader) (*xzReader, error) {
	x := &xzReader{cmd: exec.Command("xz", "-dc")}
	x.cmd.Stdin, x.cmd.Stderr = r, &x.stderr
	x.cmd.WaitDelay = time.Second // Wait must not hang on a stdin left unread
	out, err := x.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	x.out = out
	if err := x.cmd.Start(); err != nil {
		return nil, fmt.Errorf("xz-compressed stream (needs xz(1)): %w", err)
	}
	return x, nil
}

func (x *xzReader) Read(p []byte) (int, error) {
	n, err := x.out.Read(p)
	if err == io.EOF && !x.waited {
		x.waited = true
		if werr := x.cmd.Wait(); werr != nil {
			return n, fmt.Errorf("xz: %v: %s", werr, bytes.TrimSpace(x.stderr.Bytes()))
		}
	}
	return n, err
}

// close stops xz if its output was not read to the end.
func (x *xzReader) close() {
	if !x.waited {
		x.waited = true
		x.cmd.Process.Kill()
		x.cmd.Wait()
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// OpenLayer returns the uncompressed tar stream of a stored layer, decompressed by
// its media type (sniffing the content when the media type is not a known layer
// type). The blob's digest is verified as it is read: a damaged blob ends the
// stream with ErrDigestMismatch. The caller closes it.
func (s *Store) OpenLayer(desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := s.Open(desc.Digest)
	if err != nil {
		if foreignLayer(desc.MediaType) && errors.Is(err, ErrNotFound) {
			// Registries do not serve these, and save leaves them out: say
			// why it is missing (review rev23-oci).
			return nil, fmt.Errorf("open layer %s: %w (a foreign, non-distributable layer %s: fetch it from %s)", desc.Digest, err, desc.MediaType, foreignURLs(desc))
		}
		return nil, fmt.Errorf("open layer %s: %w", desc.Digest, err)
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	dr, done, err := decompressLayer(br, desc.MediaType)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("open layer %s: %w", desc.Digest, err)
	}
	return &layerReader{r: dr, raw: br, rc: rc, done: done, d: desc.Digest}, nil
}

// decompressLayer decompresses a layer blob as its media type says, sniffing the
// content when the media type is not a known layer type: the one way every layer
// is read (OpenLayer, LayerCheck). done releases the decoder, not br.
func decompressLayer(br *bufio.Reader, mediaType string) (_ io.Reader, done func(), _ error) {
	c, known := LayerCompression(mediaType)
	if !known {
		head, _ := br.Peek(4)
		c = sniff(head)
	}
	return decompress(br, c)
}

// LayerCheck runs a layer check (mountcmd passes cow.CheckLayer, as to
// LoadOptions.CheckLayer) in a goroutine on the uncompressed content of a layer
// blob whose bytes, as stored (compressed or not), are written to it, and hashes
// and sizes that content on the way: a layer is checked, and its diffID and
// content size learnt, while it streams into the store, without a second read. It
// decompresses exactly as OpenLayer does, so the check sees, and DiffID is the
// digest of, what a mount will unpack.
type LayerCheck struct {
	cw *checkWriter
	// set by the goroutine before its verdict
	diffID digest.Digest
	size   int64 // -1: unknown
}

// NewLayerCheck starts check (nil: no check, only the diffID and size) on the
// uncompressed content of a blob of mediaType. The caller writes the blob's bytes
// to it and then calls Close, exactly once (also when the blob was not read to its
// end), which ends the goroutine.
func NewLayerCheck(mediaType string, check func(io.Reader) error) *LayerCheck {
	c := &LayerCheck{size: -1}
	c.cw = newCheckWriter(func(r io.Reader) error {
		dr, done, err := decompressLayer(bufio.NewReaderSize(r, 64<<10), mediaType)
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		defer done()
		h := digest.SHA256.Digester()
		sc := newTarSizeCounter()
		content := io.TeeReader(dr, io.MultiWriter(h.Hash(), sc))
		size := int64(-1)
		if check != nil {
			if err := check(content); err != nil {
				return err
			}
		} else if n, err := sumTarHeaders(content); err == nil {
			// no check to read the tar: archive/tar reads it, as LayerSizes would
			size = n
		}
		// what the check left unread (a tar's end padding) is content too
		if _, err := io.Copy(io.Discard, content); err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if check != nil && sc.ok() {
			size = sc.size()
		}
		c.diffID, c.size = h.Digest(), size
		return nil
	})
	return c
}

// Write passes p on to the check. It never fails: once the check has given its
// verdict the rest of the blob is not needed and is dropped.
func (c *LayerCheck) Write(p []byte) (int, error) { return c.cw.Write(p) }

// Close ends the blob and returns the check's verdict: nil if the content passed
// and decompressed to its end. A blob cut short reads to the check as a truncated
// stream; its verdict (and its DiffID) then says nothing about the blob.
func (c *LayerCheck) Close() error { return c.cw.finish() }

// DiffID is the sha256 of the uncompressed content, the layer's diffID as an
// image config's rootfs.diff_ids lists it. It is set once Close has returned nil,
// and "" otherwise.
func (c *LayerCheck) DiffID() digest.Digest { return c.diffID }

// ContentSize is the layer's content size, docker's (see tarSizeCounter), the
// number LayerSizes would count from the stored blob, and whether it is known:
// only once Close has returned nil, and only for content that reads as a tar to
// its end. With no check, archive/tar reads the content and adds it up, as
// LayerSizes does; with one, which reads the tar with archive/tar and refuses what
// it cannot read (cow.CheckLayer), the header counter sums it beside the check and
// gives up on what it does not know (an old GNU sparse entry). An unknown size is
// left to LayerSizes, which counts it from the blob. Record a known one with
// Store.RecordLayerSizes under DiffID.
func (c *LayerCheck) ContentSize() (int64, bool) { return c.size, c.size >= 0 }

type layerReader struct {
	r    io.Reader
	raw  io.Reader
	rc   io.ReadCloser
	done func()
	d    digest.Digest
}

func (l *layerReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err == io.EOF {
		// drain the compressed blob so its digest is checked at its EOF.
		if _, derr := io.Copy(io.Discard, l.raw); derr != nil {
			return n, fmt.Errorf("layer %s: %w", l.d, derr)
		}
	} else if err != nil {
		err = fmt.Errorf("layer %s: %w", l.d, err)
	}
	return n, err
}

func (l *layerReader) Close() error {
	l.done()
	return l.rc.Close()
}

// Decompress sniffs r for gzip, zstd, bzip2 or xz and returns the decompressed
// stream (r itself when it is none of them). Closing it releases the decoder, not r.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	dr, _, done, err := autoDecompress(r)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	return readCloser{dr, done}, nil
}

// DecompressDetect is Decompress that also says which compression it found
// (None: r's bytes as they are).
func DecompressDetect(r io.Reader) (io.ReadCloser, Compression, error) {
	dr, c, done, err := autoDecompress(r)
	if err != nil {
		return nil, c, fmt.Errorf("decompress: %w", err)
	}
	return readCloser{dr, done}, c, nil
}

type readCloser struct {
	io.Reader
	done func()
}

func (r readCloser) Close() error { r.done(); return nil }

// foreignLayer reports a layer media type registries do not serve (docker's
// foreign layers, OCI's non-distributable ones).
func foreignLayer(mt string) bool {
	return strings.Contains(mt, ".foreign.") || strings.Contains(mt, ".nondistributable.")
}

// foreignURLs is where a foreign layer's descriptor says its blob is.
func foreignURLs(desc ocispec.Descriptor) string {
	if len(desc.URLs) == 0 {
		return "where its image came from (its descriptor names no URL)"
	}
	return strings.Join(desc.URLs, ", ")
}
