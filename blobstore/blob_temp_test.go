package blobstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// tmpLook is a reader that, half way through its data, lists the store's tmp/:
// what a writer killed at that point would leave there.
type tmpLook struct {
	s     *Store
	data  []byte
	off   int
	seen  []string
	done  bool
	after func()
}

func (r *tmpLook) Read(p []byte) (int, error) {
	if !r.done && r.off >= len(r.data)/2 {
		r.done = true
		ents, _ := os.ReadDir(r.s.tmpDir())
		for _, e := range ents {
			r.seen = append(r.seen, e.Name())
		}
	}
	if r.off == len(r.data) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1<<10)], r.data[r.off:])
	r.off += n
	return n, nil
}

// TestBlobTempsUnnamed: Put, Stage and AppendLayer write into an unnamed temp file
// (O_TMPFILE), so that a writer killed before it placed the blob leaves nothing in
// tmp/; with unnamed temps unavailable (a filesystem without O_TMPFILE) they fall
// back to named ones, and both place blobs the same way: a blob already there
// stays, the mode is 0644, tmp/ is empty afterwards.
func TestBlobTempsUnnamed(t *testing.T) {
	for _, unnamed := range []bool{true, false} {
		t.Run(fmt.Sprintf("unnamed=%v", unnamed), func(t *testing.T) {
			if !unnamed {
				old := unnamedTemps
				unnamedTemps = func() bool { return false }
				t.Cleanup(func() { unnamedTemps = old })
			}
			ctx := context.Background()
			s := newStore(t)
			data := bytes.Repeat([]byte("0123456789abcdef"), 4<<10)
			check := func(what string, seen []string) {
				t.Helper()
				if unnamed && len(seen) != 0 {
					t.Errorf("%s: tmp/ half way through = %v, want it empty (unnamed temp file)", what, seen)
				}
				if !unnamed && (len(seen) != 1 || !strings.HasPrefix(seen[0], "blob-")) {
					t.Errorf("%s: tmp/ half way through = %v, want one blob-* (the named fallback)", what, seen)
				}
			}
			r := &tmpLook{s: s, data: data}
			d, n, err := s.Put(ctx, r, sha(data))
			if err != nil || d != sha(data) || n != int64(len(data)) {
				t.Fatalf("Put = %s %d %v", d, n, err)
			}
			check("Put", r.seen)
			fi, err := os.Stat(s.BlobPath(d))
			if err != nil || fi.Mode().Perm() != 0o644 || fi.Size() != int64(len(data)) {
				t.Fatalf("Put's blob: %v %v", fi, err)
			}
			// a blob already there stays: Put and Stage+Commit of the same digest
			ino := fi.Sys()
			if _, _, err := s.Put(ctx, bytes.NewReader(data), d); err != nil {
				t.Fatal(err)
			}
			r = &tmpLook{s: s, data: data}
			b, err := s.Stage(ctx, r, d)
			if err != nil {
				t.Fatal(err)
			}
			check("Stage", r.seen)
			if err := b.Commit(); err != nil {
				t.Fatalf("Commit of a stored blob = %v", err)
			}
			if fi2, err := os.Stat(s.BlobPath(d)); err != nil || !os.SameFile(fi, fi2) {
				t.Errorf("stored blob replaced (%v, %v): want the first one kept", ino, err)
			}
			// Stage, Discard: nothing; Stage, Commit: placed
			other := append(bytes.Clone(data), 'x')
			b, err = s.Stage(ctx, bytes.NewReader(other), "")
			if err != nil {
				t.Fatal(err)
			}
			b.Discard()
			if s.Has(sha(other)) {
				t.Fatal("discarded blob is in the store")
			}
			b, err = s.Stage(ctx, bytes.NewReader(other), sha(other))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(); err != nil || !s.Has(sha(other)) {
				t.Fatalf("Commit = %v, Has = %v", err, s.Has(sha(other)))
			}
			b.Discard() // no-op after Commit
			if !s.Has(sha(other)) {
				t.Fatal("Discard after Commit removed the blob")
			}
			r = &tmpLook{s: s, data: makeTar(t, tarEntry{Name: "f", Body: string(data)})}
			if _, _, err := s.AppendLayer(ctx, r, Gzip); err != nil {
				t.Fatal(err)
			}
			check("AppendLayer", r.seen)
			if ents, _ := os.ReadDir(s.tmpDir()); len(ents) != 0 {
				t.Errorf("tmp/ afterwards: %v, want it empty", ents)
			}
		})
	}
}
