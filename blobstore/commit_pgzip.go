package blobstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// Parallel gzip, deterministic.
//
// The input is cut into fixed blocks of pgzBlock bytes; each block is deflated on its
// own goroutine, primed with the last 32 KiB of the block before it as dictionary (so
// matches reach back across the cut, as in pigz), and ended with a sync flush, which
// leaves it byte-aligned; the last block ends with the final deflate block. The
// blocks are written in order between one gzip header and trailer, which makes a
// single ordinary gzip member that any gunzip reads. The bytes depend only on the
// input, the level and pgzBlock, never on the number of workers or on timing: the
// same tar gives the same blob digest on every machine.

const (
	pgzBlock  = 1 << 20 // input bytes per block
	pgzWindow = 32 << 10
)

// pgzHeader is a fixed gzip header: no name, mtime 0, XFL 0, OS 255 (unknown).
var pgzHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

var errWriterClosed = errors.New("write to a closed compressor")

type pgzJob struct {
	in   []byte
	dict []byte
	last bool
	out  bytes.Buffer
	err  error
	done chan struct{}
}

// parallelGzip is an io.WriteCloser compressing to w with `workers` goroutines.
// Write and Close are for one goroutine; Close must be called (it also stops the
// workers) and returns the first error of any stage, including w's.
type parallelGzip struct {
	w     io.Writer
	level int
	cur   []byte
	tail  []byte // last pgzWindow bytes of input so far: the next block's dictionary
	crc   uint32
	size  uint32 // ISIZE: input length mod 2^32
	jobs  chan *pgzJob
	order chan *pgzJob
	wdone chan error
	wg    sync.WaitGroup
	pool  sync.Pool

	closed   bool
	err      error
	failedMu sync.Mutex
	failed   error // first error the writer goroutine saw, for early Write errors
}

var _ io.WriteCloser = (*parallelGzip)(nil)

func newParallelGzip(w io.Writer, level, workers int) (*parallelGzip, error) {
	if _, err := flate.NewWriter(io.Discard, level); err != nil {
		return nil, err
	}
	if workers < 1 {
		workers = 1
	}
	z := &parallelGzip{
		w:     w,
		level: level,
		jobs:  make(chan *pgzJob, workers),
		order: make(chan *pgzJob, 2*workers+1),
		wdone: make(chan error, 1),
	}
	z.pool.New = func() any { return make([]byte, 0, pgzBlock) }
	z.cur = z.pool.Get().([]byte)[:0]
	for range workers {
		z.wg.Add(1)
		go z.worker()
	}
	go z.writer()
	return z, nil
}

func (z *parallelGzip) worker() {
	defer z.wg.Done()
	fw, _ := flate.NewWriter(nil, z.level) // level checked in newParallelGzip
	for j := range z.jobs {
		fw.ResetDict(&j.out, j.dict)
		_, err := fw.Write(j.in)
		if err == nil {
			if j.last {
				err = fw.Close()
			} else {
				err = fw.Flush()
			}
		}
		j.err = err
		close(j.done)
	}
}

// writer emits the header, then each block's output in order.
func (z *parallelGzip) writer() {
	_, err := z.w.Write(pgzHeader)
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

func (z *parallelGzip) submit(last bool) {
	j := &pgzJob{in: z.cur, dict: z.tail, last: last, done: make(chan struct{})}
	if n := len(z.cur); n >= pgzWindow {
		z.tail = append(make([]byte, 0, pgzWindow), z.cur[n-pgzWindow:]...)
	} else {
		t := append(append(make([]byte, 0, len(z.tail)+n), z.tail...), z.cur...)
		if len(t) > pgzWindow {
			t = t[len(t)-pgzWindow:]
		}
		z.tail = t
	}
	z.order <- j
	z.jobs <- j
	z.cur = nil
	if !last {
		z.cur = z.pool.Get().([]byte)[:0]
	}
}

func (z *parallelGzip) writeErr() error {
	z.failedMu.Lock()
	defer z.failedMu.Unlock()
	return z.failed
}

// Write buffers p and hands every full block to a worker.
func (z *parallelGzip) Write(p []byte) (int, error) {
	if z.closed {
		return 0, errWriterClosed
	}
	if err := z.writeErr(); err != nil {
		return 0, err
	}
	n := len(p)
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(n)
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

// Close compresses what is buffered, waits for every block, and writes the trailer.
// It is idempotent and returns the first error.
func (z *parallelGzip) Close() error {
	if z.closed {
		return z.err
	}
	z.closed = true
	z.submit(true)
	close(z.jobs)
	close(z.order)
	z.wg.Wait()
	err := <-z.wdone
	if err == nil {
		var tr [8]byte
		binary.LittleEndian.PutUint32(tr[:4], z.crc)
		binary.LittleEndian.PutUint32(tr[4:], z.size)
		_, err = z.w.Write(tr[:])
	}
	z.err = err
	return err
}
