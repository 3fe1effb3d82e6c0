package blobstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNoSpaceNamesLeftovers: an ENOSPC of a store write says that `layerfs gc`
// frees leftover temp files only when tmp/ holds some (a killed load's spool, a
// named blob temp file); other errors are left as they are.
func TestNoSpaceNamesLeftovers(t *testing.T) {
	s := newStore(t)
	full := fmt.Errorf("put blob: write x: %w", unix.ENOSPC)
	if got := s.noSpace(full); got != full {
		t.Errorf("ENOSPC with an empty tmp/ = %q, want it as it was", got)
	}
	other := errors.New("other")
	if got := s.noSpace(other); got != other {
		t.Errorf("noSpace(other) = %v", got)
	}
	spool := filepath.Join(s.tmpDir(), spoolPrefix+"killed")
	os.Mkdir(spool, 0o700)
	os.WriteFile(filepath.Join(spool, "part-1"), make([]byte, 3000), 0o600)
	os.WriteFile(filepath.Join(s.tmpDir(), "blob-killed"), make([]byte, 1000), 0o600)
	// a live load's spool is not a leftover
	live := filepath.Join(s.tmpDir(), spoolPrefix+"live")
	os.Mkdir(live, 0o700)
	d, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := flockRetry(d, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	got := s.noSpace(full)
	want := "put blob: write x: no space left on device (`layerfs gc` frees 2 leftover temp files, 4kB)"
	if got.Error() != want || !errors.Is(got, unix.ENOSPC) {
		t.Errorf("ENOSPC with leftovers = %q, want %q (and still ENOSPC)", got, want)
	}
	if again := s.noSpace(fmt.Errorf("load: %w", got)); strings.Count(again.Error(), "layerfs gc") != 1 {
		t.Errorf("noSpace twice = %q, want the hint once", again)
	}
}
