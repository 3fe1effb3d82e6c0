package blobstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Parallel gzip and zstd, deterministic.
//
// Gzip:
// The input is cut into fixed blocks of pgzBlock bytes; each block is deflated on its
// own goroutine, primed with the last 32 KiB of the block before it as dictionary (so
// matches reach back across the cut, as in pigz), and ended with a sync flush, which
// leaves it byte-aligned; the last block ends with the final deflate block. The
// blocks are written in order between one gzip header and trailer, which makes a
// single ordinary gzip member that any gunzip reads. The bytes depend only on the
// input, the level and pgzBlock, never on the number of workers or on timing: the
// same tar gives the same blob digest on every machine.

const (
	pgzBlock  = 1 << 20 // gzip: input bytes per block
	pgzWindow = 32 << 10
	pzsFrame  = 4 << 20 // zstd: input bytes per frame
)

// pgzHeader is a fixed gzip header: no name, mtime 0, XFL 0, OS 255 (unknown).
var pgzHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

var errWriterClosed = errors.New("write to a closed compressor")

// blockJob is one block of input on its way through a worker.
type blockJob struct {
	in   []byte
	dict []byte // gzip: the previous block's last 32 KiB
	last bool
	out  bytes.Buffer
	err  error
	done chan struct{}
}

// blockWriter is an io.WriteCloser that cuts its input into fixed blocks, encodes
// them on `workers` goroutines and writes the results in order between a header and
// a trailer. Write and Close are for one goroutine; Close must be called (it also
// stops the workers) and returns the first error of any stage, including w's.
type blockWriter struct {
	w         io.Writer
	blockSize int
	header    []byte
	keepDict  bool
	newWorker func() func(j *blockJob) error // per-goroutine encoder state
	onInput   func(p []byte)                 // sees every input byte in order
	trailer   func() []byte

	cur   []byte
	tail  []byte
	jobs  chan *blockJob
	order chan *blockJob
	wdone chan error
	wg    sync.WaitGroup
	pool  sync.Pool

	closed   bool
	err      error
	failedMu sync.Mutex
	failed   error // first error of the writer goroutine, for early Write errors
}

var _ io.WriteCloser = (*blockWriter)(nil)

func (z *blockWriter) start(workers int) {
	if workers < 1 {
		workers = 1
	}
	z.jobs = make(chan *blockJob, workers)
	z.order = make(chan *blockJob, 2*workers+1)
	z.wdone = make(chan error, 1)
	size := z.blockSize
	z.pool.New = func() any { return make([]byte, 0, size) }
	z.cur = z.pool.Get().([]byte)[:0]
	for range workers {
		z.wg.Add(1)
		enc := z.newWorker()
		go func() {
			defer z.wg.Done()
			for j := range z.jobs {
				j.err = enc(j)
				close(j.done)
			}
		}()
	}
	go z.writer()
}

// writer emits the header, then each block's output in order.
func (z *blockWriter) writer() {
	var err error
	if len(z.header) > 0 {
		_, err = z.w.Write(z.header)
	}
	for j := range z.order {
		<-j.done
		if err == nil {
			err = j.err
		}
		if err == nil {
			_, err = z.w.Write(j.out.Bytes())
		}
		if err != nil {
			z.failedMu.Lock()
			if z.failed == nil {
				z.failed = err
			}
			z.failedMu.Unlock()
		}
		z.pool.Put(j.in[:0]) //nolint:staticcheck // a slice header is fine here
	}
	z.wdone <- err
}

func (z *blockWriter) submit(last bool) {
	j := &blockJob{in: z.cur, last: last, done: make(chan struct{})}
	if z.keepDict {
		j.dict = z.tail
		if n := len(z.cur); n >= pgzWindow {
			z.tail = append(make([]byte, 0, pgzWindow), z.cur[n-pgzWindow:]...)
		} else {
			t := append(append(make([]byte, 0, len(z.tail)+n), z.tail...), z.cur...)
			if len(t) > pgzWindow {
				t = t[len(t)-pgzWindow:]
			}
			z.tail = t
		}
	}
	z.order <- j
	z.jobs <- j
	z.cur = nil
	if !last {
		z.cur = z.pool.Get().([]byte)[:0]
	}
}

func (z *blockWriter) writeErr() error {
	z.failedMu.Lock()
	defer z.failedMu.Unlock()
	return z.failed
}

// Write buffers p and hands every full block to a worker.
func (z *blockWriter) Write(p []byte) (int, error) {
	if z.closed {
		return 0, errWriterClosed
	}
	if err := z.writeErr(); err != nil {
		return 0, err
	}
	n := len(p)
	if z.onInput != nil {
		z.onInput(p)
	}
	for len(p) > 0 {
		k := copy(z.cur[len(z.cur):cap(z.cur)], p)
		z.cur = z.cur[:len(z.cur)+k]
		p = p[k:]
		if len(z.cur) == cap(z.cur) {
			z.submit(false)
		}
	}
	return n, nil
}

// Close encodes what is buffered, waits for every block, and writes the trailer.
// It is idempotent and returns the first error.
func (z *blockWriter) Close() error {
	if z.closed {
		return z.err
	}
	z.closed = true
	z.submit(true)
	close(z.jobs)
	close(z.order)
	z.wg.Wait()
	err := <-z.wdone
	if err == nil && z.trailer != nil {
		_, err = z.w.Write(z.trailer())
	}
	z.err = err
	return err
}

// newParallelGzip is the gzip blockWriter described above.
func newParallelGzip(w io.Writer, level, workers int) (*blockWriter, error) {
	if _, err := flate.NewWriter(io.Discard, level); err != nil {
		return nil, err
	}
	var crc, size uint32
	z := &blockWriter{
		w: w, blockSize: pgzBlock, header: pgzHeader, keepDict: true,
		newWorker: func() func(j *blockJob) error {
			fw, _ := flate.NewWriter(nil, level) // level checked above
			return func(j *blockJob) error {
				fw.ResetDict(&j.out, j.dict)
				if _, err := fw.Write(j.in); err != nil {
					return err
				}
				if j.last {
					return fw.Close()
				}
				return fw.Flush()
			}
		},
		onInput: func(p []byte) {
			crc = crc32.Update(crc, crc32.IEEETable, p)
			size += uint32(len(p)) // ISIZE: input length mod 2^32
		},
		trailer: func() []byte {
			var tr [8]byte
			binary.LittleEndian.PutUint32(tr[:4], crc)
			binary.LittleEndian.PutUint32(tr[4:], size)
			return tr[:]
		},
	}
	z.start(workers)
	return z, nil
}

// newParallelZstd compresses every pzsFrame bytes of input into its own zstd frame
// (klauspost's encoder at its default level, content size in each frame header),
// frames in order: a multi-frame zstd stream, which every zstd reader decodes as one.
// The frames depend only on the input, so the bytes are the same on any machine.
func newParallelZstd(w io.Writer, workers int) (*blockWriter, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	z := &blockWriter{
		w: w, blockSize: pzsFrame,
		newWorker: func() func(j *blockJob) error {
			return func(j *blockJob) error {
				if len(j.in) == 0 && !j.last {
					return nil
				}
				// EncodeAll is safe for concurrent use of one encoder.
				j.out.Write(enc.EncodeAll(j.in, make([]byte, 0, len(j.in)/2+64)))
				return nil
			}
		},
	}
	z.start(workers)
	return z, nil
}
