package blobstore

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// testData is compressible but not trivial: text-like runs mixed with random bytes.
func testData(n int, seed int64) []byte {
	r := rand.New(rand.NewSource(seed))
	words := []string{"layer", "whiteout", "upper", "lower ", "commit\n", "sha256:", "\x00\x00\x00"}
	var b bytes.Buffer
	for b.Len() < n {
		if r.Intn(10) == 0 {
			chunk := make([]byte, r.Intn(300))
			r.Read(chunk)
			b.Write(chunk)
		} else {
			b.WriteString(words[r.Intn(len(words))])
		}
	}
	return b.Bytes()[:n]
}

func pgz(t *testing.T, data []byte, level, workers, chunk int) []byte {
	t.Helper()
	var out bytes.Buffer
	z, err := newParallelGzip(&out, level, workers)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += chunk {
		if _, err := z.Write(data[off:min(off+chunk, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	return out.Bytes()
}

func TestParallelGzipRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, pgzWindow - 1, pgzBlock, pgzBlock + 1, 3*pgzBlock + 12345} {
		data := testData(n, int64(n))
		for _, level := range []int{1, 6, 9} {
			gz := pgz(t, data, level, 3, 7777)
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				t.Fatalf("n=%d level=%d: gzip.NewReader: %v", n, level, err)
			}
			zr.Multistream(false)
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatalf("n=%d level=%d: gunzip: %v", n, level, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("n=%d level=%d: gunzip gave %d bytes, want the %d written", n, level, len(got), len(data))
			}
		}
	}
}

// TestParallelGzipDeterministic: the bytes depend on input and level only, not on the
// worker count or on how the input was chunked into Write calls.
func TestParallelGzipDeterministic(t *testing.T) {
	data := testData(5*pgzBlock+999, 7)
	want := pgz(t, data, 1, 1, len(data))
	for _, c := range []struct{ workers, chunk int }{{2, 4096}, {8, pgzBlock}, {3, 100003}} {
		if got := pgz(t, data, 1, c.workers, c.chunk); !bytes.Equal(got, want) {
			t.Errorf("workers=%d chunk=%d: output differs from workers=1", c.workers, c.chunk)
		}
	}
	small := testData(1000, 3)
	if !bytes.Equal(pgz(t, small, 6, 4, 1), pgz(t, small, 6, 1, 1000)) {
		t.Errorf("one-byte writes change the output")
	}
}

func TestParallelGzipRatioCloseToSerial(t *testing.T) {
	data := testData(4*pgzBlock, 11)
	var serial bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&serial, 6)
	zw.Write(data)
	zw.Close()
	par := pgz(t, data, 6, 2, 1<<16)
	if float64(len(par)) > 1.05*float64(serial.Len()) {
		t.Errorf("parallel gzip %d bytes, serial %d: more than 5%% bigger", len(par), serial.Len())
	}
}

type failWriter struct{ n int }

var errBoom = errors.New("boom")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errBoom
	}
	f.n--
	return len(p), nil
}

func TestParallelGzipWriteError(t *testing.T) {
	z, err := newParallelGzip(&failWriter{n: 2}, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	data := testData(8*pgzBlock, 5)
	var werr error
	for off := 0; off < len(data) && werr == nil; off += 1 << 16 {
		_, werr = z.Write(data[off : off+1<<16])
	}
	if err := z.Close(); !errors.Is(err, errBoom) {
		t.Errorf("Close = %v, want the writer's error", err)
	}
	if _, err := z.Write([]byte("x")); !errors.Is(err, errWriterClosed) {
		t.Errorf("Write after Close = %v", err)
	}
}

func TestParallelGzipBadLevel(t *testing.T) {
	if _, err := newParallelGzip(io.Discard, 42, 1); err == nil {
		t.Error("newParallelGzip(level 42) = nil error")
	}
}

func pzs(t *testing.T, data []byte, workers, chunk int) []byte {
	t.Helper()
	var out bytes.Buffer
	z, err := newParallelZstd(&out, workers)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += chunk {
		if _, err := z.Write(data[off:min(off+chunk, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestParallelZstdRoundTrip(t *testing.T) {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, n := range []int{0, 1, pzsFrame, pzsFrame + 1, 2*pzsFrame + 999} {
		data := testData(n, int64(n))
		zs := pzs(t, data, 3, 65536)
		got, err := dec.DecodeAll(zs, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("n=%d: decoded %d bytes (%v), want %d", n, len(got), err, len(data))
		}
		if n == 2*pzsFrame+999 {
			if _, err := exec.LookPath("zstd"); err == nil {
				cmd := exec.Command("zstd", "-d", "-c")
				cmd.Stdin = bytes.NewReader(zs)
				out, err := cmd.Output()
				if err != nil || !bytes.Equal(out, data) {
					t.Errorf("zstd -d: %d bytes (%v), want %d", len(out), err, len(data))
				}
			}
		}
	}
	data := testData(3*pzsFrame+5, 8)
	if !bytes.Equal(pzs(t, data, 1, len(data)), pzs(t, data, 4, 7777)) {
		t.Errorf("parallel zstd output depends on workers or write sizes")
	}
}
