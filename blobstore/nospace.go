package blobstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	units "github.com/docker/go-units"
	"golang.org/x/sys/unix"
)

// noSpaceError is a store write that ran out of space while tmp/ holds what killed
// writers left there, which `layerfs gc` frees.
type noSpaceError struct {
	err   error
	n     int
	bytes int64
}

func (e *noSpaceError) Error() string {
	files := "files"
	if e.n == 1 {
		files = "file"
	}
	return fmt.Sprintf("%v (`layerfs gc` frees %d leftover temp %s, %s)", e.err, e.n, files, units.HumanSizeWithPrecision(float64(e.bytes), 3))
}

func (e *noSpaceError) Unwrap() error { return e.err }

// noSpace adds to an ENOSPC error of a store write what `layerfs gc` would free in
// tmp/, if there is anything: the spools of killed loads, the named blob temp files
// of killed writers (only on a filesystem without O_TMPFILE: elsewhere they have no
// name and go with their process) and stale metadata temp files. Other errors, and
// an ENOSPC with no such leftovers, are returned as they are.
func (s *Store) noSpace(err error) error {
	var ns *noSpaceError
	if err == nil || !errors.Is(err, unix.ENOSPC) || errors.As(err, &ns) {
		return err
	}
	n, size := s.leftoverTemps()
	if n == 0 {
		return err
	}
	return &noSpaceError{err: err, n: n, bytes: size}
}

// leftoverTemps counts the entries of tmp/ that GC would remove and no running
// writer of this store uses (as far as can be told: a named blob-* file may be a
// live writer's on a filesystem without O_TMPFILE), and their size.
func (s *Store) leftoverTemps() (n int, size int64) {
	for _, p := range s.deadSpools() {
		n++
		size += du(p)
	}
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return n, size
	}
	for _, e := range ents {
		if e.IsDir() || inFlightMeta(e) {
			continue
		}
		if strings.HasPrefix(e.Name(), "blob-") || strings.HasPrefix(e.Name(), metaTempPrefix) {
			n++
			size += du(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
	return n, size
}
