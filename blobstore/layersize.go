package blobstore

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"runtime"
	"strconv"
	"sync"

	"github.com/layerfs/layerfs/internal/tarhdr"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Layer content size, docker's notion of a layer's size: the sum of the Size of
// every header of the uncompressed layer tar (what moby's UnpackLayer and
// containerd's apply add up, so regular file bytes; directories, links and
// whiteouts count 0). `images` and `inspect` show the sum over an image's layers;
// `history` shows it per layer.
//
// tarSizeCounter computes it from the raw tar bytes as they stream past, looking
// only at the 512-byte headers (and PAX records, which may override a size): no
// goroutine and no copy of the file data, so the append and load pipelines get it
// for nothing. A stream that is not a tar makes it give up (ok() = false).

const tarBlock = 512

// maxPAXRecords bounds the PAX extended header kept to look for a size.
const maxPAXRecords = 1 << 20

type tarSizeCounter struct {
	total   int64
	skip    int64  // bytes of the current entry's data (and padding) still to pass
	hdr     []byte // partial header block
	pax     []byte // the PAX header's data being collected (nil when not in one)
	inPAX   bool
	paxSize int64 // data size from the last PAX header, -1 if none
	paxReal int64 // content size from the last PAX header (sparse files), -1 if none
	ended   bool  // saw the end-of-archive zero block
	bad     bool
}

func newTarSizeCounter() *tarSizeCounter {
	return &tarSizeCounter{paxSize: -1, paxReal: -1, hdr: make([]byte, 0, tarBlock)}
}

// ok reports whether everything written so far parsed as a tar.
func (c *tarSizeCounter) ok() bool { return !c.bad && c.skip == 0 && len(c.hdr) == 0 }

// size is the content size counted (meaningful when ok()).
func (c *tarSizeCounter) size() int64 { return c.total }

// Write never fails: a tar error is remembered, not returned, so a counter can sit
// in a MultiWriter beside the writers that matter.
func (c *tarSizeCounter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !c.bad && !c.ended {
		if c.skip > 0 {
			k := int64(len(p))
			if k > c.skip {
				k = c.skip
			}
			if c.inPAX && len(c.pax) < maxPAXRecords {
				c.pax = append(c.pax, p[:min(int(k), maxPAXRecords-len(c.pax))]...)
			}
			c.skip -= k
			p = p[k:]
			if c.skip == 0 && c.inPAX {
				c.paxSize, c.paxReal = paxSizes(c.pax)
				c.pax, c.inPAX = nil, false
			}
			continue
		}
		k := min(tarBlock-len(c.hdr), len(p))
		c.hdr = append(c.hdr, p[:k]...)
		p = p[k:]
		if len(c.hdr) == tarBlock {
			c.header(c.hdr)
			c.hdr = c.hdr[:0]
		}
	}
	return n, nil
}

func (c *tarSizeCounter) header(b []byte) {
	if bytes.Count(b, []byte{0}) == tarBlock {
		c.ended = true
		return
	}
	size, ok := tarhdr.Number(b[124:136])
	if !ok || size < 0 || !tarChecksumOK(b) {
		c.bad = true
		return
	}
	flag := b[156]
	switch flag {
	case 'x':
		c.inPAX, c.pax = true, []byte{}
	case 'g':
		// a global PAX header: archive/tar returns it as an entry of size 0, and
		// the records of a local one before it apply to nothing
		c.paxSize, c.paxReal = -1, -1
	case 'L', 'K':
		// GNU long name/link: consumed by readers, size 0
	case 'S':
		c.bad = true // old GNU sparse: let archive/tar count it (see layerContentSize)
		return
	default:
		if c.paxSize >= 0 {
			size = c.paxSize
		}
		if c.paxReal >= 0 {
			c.total += c.paxReal
		} else {
			c.total += size
		}
		c.paxSize, c.paxReal = -1, -1
		switch flag {
		case '1', '2', '3', '4', '5', '6':
			size = 0 // header-only types carry no data whatever the size field says
		}
	}
	c.skip = (size + tarBlock - 1) / tarBlock * tarBlock
	if c.skip == 0 && c.inPAX {
		c.paxSize, c.paxReal = -1, -1
		c.inPAX = false
	}
}

func tarChecksumOK(b []byte) bool {
	want, ok := tarhdr.Number(b[148:156])
	if !ok {
		return false
	}
	var unsigned, signed int64
	for i, x := range b {
		if i >= 148 && i < 156 {
			x = ' '
		}
		unsigned += int64(x)
		signed += int64(int8(x))
	}
	return want == unsigned || want == signed
}

// paxSizes finds the sizes a PAX extended header sets, as archive/tar reads
// them: the data size ("size") and the real size of a GNU sparse file; -1 for
// each it does not set. archive/tar takes a real size only from a sparse header
// it knows (versions 0.0, 0.1 and 1.0, or a map without a version), and
// GNU.sparse.size before GNU.sparse.realsize.
func paxSizes(recs []byte) (size, real int64) {
	size, real = -1, -1
	var major, minor, smap, ssize, sreal string
	for len(recs) > 0 {
		sp := bytes.IndexByte(recs, ' ')
		if sp <= 0 {
			break
		}
		n, err := strconv.Atoi(string(recs[:sp]))
		if err != nil || n <= sp || n > len(recs) {
			break
		}
		rec := recs[sp+1 : n]
		recs = recs[n:]
		k, v, ok := bytes.Cut(bytes.TrimSuffix(rec, []byte("\n")), []byte("="))
		if !ok {
			continue
		}
		switch string(k) {
		case "size":
			if x, err := strconv.ParseInt(string(v), 10, 64); err == nil && x >= 0 {
				size = x
			}
		case "GNU.sparse.major":
			major = string(v)
		case "GNU.sparse.minor":
			minor = string(v)
		case "GNU.sparse.map":
			smap = string(v)
		case "GNU.sparse.offset", "GNU.sparse.numbytes":
			smap = "0.0" // archive/tar makes a map of them
		case "GNU.sparse.size":
			ssize = string(v)
		case "GNU.sparse.realsize":
			sreal = string(v)
		}
	}
	sparse := major == "0" && (minor == "0" || minor == "1") || major == "1" && minor == "0" ||
		major == "" && minor == "" && smap != ""
	if !sparse {
		return size, -1
	}
	if ssize == "" {
		ssize = sreal
	}
	if x, err := strconv.ParseInt(ssize, 10, 64); err == nil && x >= 0 {
		real = x
	}
	return size, real
}

// Recorded sizes live in one small JSON file beside registry.json (diffID -> content
// size), written when a layer passes through the store anyway (AppendLayer, Load,
// and a pull, which learns them in its LayerCheck pass and hands them to
// RecordLayerSizes) and, for layers that arrived another way (another tool writing
// the layout, a stored layer a pull did not read back, a tar only archive/tar can
// sum), counted once from the blob the first time they are asked for.
const (
	layerSizesFile = "layersizes.json" // in the store's private dir
	layerSizesLock = "layersizes.lock"
)

func (s *Store) recordLayerSizes(ctx context.Context, add map[digest.Digest]int64) error {
	if len(add) == 0 {
		return nil
	}
	m := map[digest.Digest]int64{}
	return s.updateMeta(ctx, layerSizesLock, layerSizesFile, &m, func() { maps.Copy(m, add) })
}

// RecordLayerSizes records content sizes (diffID -> size) learnt as the layers
// passed through the caller, as LayerCheck.ContentSize gives them, so that
// LayerSizes need not read those layers again. Sizes the store has recorded
// already are left as they are, and when nothing is new the record file is not
// written. It is idempotent and safe for concurrent use; a failure leaves the
// layers to be counted by LayerSizes.
func (s *Store) RecordLayerSizes(ctx context.Context, sizes map[digest.Digest]int64) error {
	have := map[digest.Digest]int64{}
	if err := s.readMeta(layerSizesFile, &have); err != nil {
		return err
	}
	add := maps.Clone(sizes)
	maps.DeleteFunc(add, func(id digest.Digest, _ int64) bool { _, ok := have[id]; return ok })
	if len(add) == 0 {
		return nil
	}
	m := map[digest.Digest]int64{}
	return s.updateMeta(ctx, layerSizesLock, layerSizesFile, &m, func() {
		for id, n := range add {
			if _, ok := m[id]; !ok {
				m[id] = n
			}
		}
	})
}

// pruneLayerSizes forgets the sizes of layers no reachable image has (GC, under the
// gc lock, so no AppendLayer is between writing a blob and recording its size).
func (s *Store) pruneLayerSizes(ctx context.Context, roots []digest.Digest) error {
	keep, err := s.DiffIDs(roots)
	if err != nil {
		return err
	}
	m := map[digest.Digest]int64{}
	return s.updateMeta(ctx, layerSizesLock, layerSizesFile, &m, func() {
		maps.DeleteFunc(m, func(id digest.Digest, _ int64) bool { return !keep[id] })
	})
}

// LayerSizes returns docker's content size (see tarSizeCounter) of every layer of
// imgs, by diffID. Sizes are recorded when a layer is appended, loaded or pulled
// (RecordLayerSizes); a layer without a record is read once here (decompressed,
// headers summed) and its size recorded, so later calls only read the record file. A layer whose blob is missing
// or unreadable is left out (and not recorded); a record that cannot be written
// (read-only store) is not an error. Safe for concurrent use.
func (s *Store) LayerSizes(ctx context.Context, imgs ...*Image) (map[digest.Digest]int64, error) {
	sizes := map[digest.Digest]int64{}
	if err := s.readMeta(layerSizesFile, &sizes); err != nil {
		return nil, err
	}
	todo := map[digest.Digest]ocispec.Descriptor{}
	for _, img := range imgs {
		for i, id := range img.Config.RootFS.DiffIDs {
			if _, ok := sizes[id]; !ok && i < len(img.Manifest.Layers) {
				todo[id] = img.Manifest.Layers[i]
			}
		}
	}
	// counted in parallel: decompression is the cost
	counted := map[digest.Digest]int64{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for id, desc := range todo {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			n, err := s.countLayer(desc)
			if err == nil {
				mu.Lock()
				counted[id] = n
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	maps.Copy(sizes, counted)
	// best effort: a read-only store still lists its images, counting again next time
	_ = s.recordLayerSizes(ctx, counted)
	return sizes, nil
}

// countLayer sums the header sizes of a stored layer with archive/tar.
func (s *Store) countLayer(desc ocispec.Descriptor) (int64, error) {
	rc, err := s.OpenLayer(desc)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := sumTarHeaders(rc)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	return n, nil
}

// sumTarHeaders is docker's layer size of an uncompressed tar stream, as moby's
// UnpackLayer adds it up: the Size of every header archive/tar returns.
func sumTarHeaders(r io.Reader) (int64, error) {
	tr := tar.NewReader(r)
	var n int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		n += h.Size
	}
}

// ContentSize is docker's SIZE of img: the content sizes of its layers added up
// (sizes from LayerSizes).
func (img *Image) ContentSize(sizes map[digest.Digest]int64) int64 {
	var n int64
	for i := range img.Manifest.Layers {
		n += img.LayerContentSize(sizes, i)
	}
	return n
}

// LayerContentSize is the content size of layer i of img (sizes from LayerSizes);
// a layer missing from sizes counts its stored (compressed) size instead.
func (img *Image) LayerContentSize(sizes map[digest.Digest]int64, i int) int64 {
	if i < len(img.Config.RootFS.DiffIDs) {
		if n, ok := sizes[img.Config.RootFS.DiffIDs[i]]; ok {
			return n
		}
	}
	return img.Manifest.Layers[i].Size
}
