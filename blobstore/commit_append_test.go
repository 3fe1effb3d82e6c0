package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestAppendLayer(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := testData(3*pgzBlock+4321, 42)
	want := digest.FromBytes(data)
	for _, c := range []Compression{Gzip, Zstd, None, ""} {
		t.Run(string(c), func(t *testing.T) {
			var written atomic.Int64
			desc, diffID, err := s.AppendLayer(ctx, bytes.NewReader(data), c, WithWrittenCounter(&written))
			if err != nil {
				t.Fatal(err)
			}
			if diffID != want {
				t.Errorf("diffID = %s, want %s", diffID, want)
			}
			if written.Load() != desc.Size {
				t.Errorf("written counter = %d, blob size %d", written.Load(), desc.Size)
			}
			if wantMT := LayerMediaType(c); desc.MediaType != wantMT {
				t.Errorf("media type = %s, want %s", desc.MediaType, wantMT)
			}
			rc, err := s.OpenLayer(desc)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("OpenLayer gave %d bytes (%v), want the %d appended", len(got), err, len(data))
			}
			// The same stream gives the same blob.
			desc2, _, err := s.AppendLayer(ctx, bytes.NewReader(data), c)
			if err != nil || desc2.Digest != desc.Digest {
				t.Errorf("second append: %s (%v), want %s", desc2.Digest, err, desc.Digest)
			}
		})
	}
}

type errAfter struct {
	r   io.Reader
	n   int
	err error
}

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, e.err
	}
	if len(p) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

func TestAppendLayerStreamError(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("upper read failed")
	for _, c := range []Compression{Gzip, Zstd, None} {
		r := &errAfter{r: bytes.NewReader(testData(4*pgzBlock, 1)), n: 2*pgzBlock + 17, err: boom}
		if _, _, err := s.AppendLayer(context.Background(), r, c); !errors.Is(err, boom) {
			t.Errorf("%s: AppendLayer = %v, want the stream's error", c, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.AppendLayer(ctx, bytes.NewReader([]byte("x")), Gzip); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestCopyHashing(t *testing.T) {
	data := testData(5*appendBufSize+3, 9)
	var out bytes.Buffer
	d, err := copyHashing(context.Background(), &out, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("sha256:%x", sha256.Sum256(data)); d.String() != want || !bytes.Equal(out.Bytes(), data) {
		t.Errorf("copyHashing = %s, want %s (copied %d of %d bytes)", d, want, out.Len(), len(data))
	}
}

// BenchmarkAppendLayer compares the store's one-goroutine AppendLayer with commit's
// AppendLayer on the same 64 MiB stream (MB/s of uncompressed input).
func BenchmarkAppendLayer(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := testData(64<<20, 77)
	ctx := context.Background()
	for _, c := range []Compression{Gzip, Zstd, None} {
		b.Run("serial/"+string(c), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for range b.N {
				if _, _, err := s.AppendLayer(ctx, bytes.NewReader(data), c); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel/"+string(c), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for range b.N {
				if _, _, err := s.AppendLayer(ctx, bytes.NewReader(data), c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
