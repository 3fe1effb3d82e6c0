package blobstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// TestStage: a staged blob is invisible until Commit, Discard leaves the store as it
// was, and a digest mismatch stages nothing.
func TestStage(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	before := snapshot(t, s.Dir())
	data := []byte("staged blob")

	b, err := s.Stage(ctx, bytes.NewReader(data), sha(data))
	if err != nil {
		t.Fatalf("Stage = %v", err)
	}
	if b.Digest() != sha(data) || b.Size() != int64(len(data)) {
		t.Errorf("Stage = %s %d, want %s %d", b.Digest(), b.Size(), sha(data), len(data))
	}
	if s.Has(sha(data)) {
		t.Errorf("Has(%s) = true before Commit", sha(data))
	}
	b.Discard()
	b.Discard() // idempotent
	if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
		t.Errorf("store changed by Stage + Discard:\n%s", d)
	}
	if err := b.Commit(); err != nil || s.Has(sha(data)) {
		t.Errorf("Commit after Discard = %v, Has = %v; want a no-op", err, s.Has(sha(data)))
	}

	if _, err := s.Stage(ctx, strings.NewReader("other"), sha(data)); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Stage(mismatch) = %v, want ErrDigestMismatch", err)
	}
	failing := io.MultiReader(strings.NewReader("part"), iotestErr{})
	if _, err := s.Stage(ctx, failing, ""); err == nil {
		t.Errorf("Stage(failing reader) succeeded")
	}
	if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
		t.Errorf("store changed by failed Stages:\n%s", d)
	}

	b, err = s.Stage(ctx, bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	b.Discard() // a no-op after Commit
	rc, err := s.Open(sha(data))
	if err != nil {
		t.Fatalf("Open after Commit = %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read after Commit = %q, %v", got, err)
	}
	fi, err := os.Stat(s.BlobPath(sha(data)))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("committed blob mode = %v, %v; want 0644", fi, err)
	}
	// staging a blob the store has, then committing it, keeps the stored one
	b, err = s.Stage(ctx, bytes.NewReader(data), sha(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Errorf("Commit of a blob already stored = %v", err)
	}
	if ents, _ := os.ReadDir(s.tmpDir()); len(ents) != 0 {
		t.Errorf("temp files left: %v", ents)
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("connection reset") }
