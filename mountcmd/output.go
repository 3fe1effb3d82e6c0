package mountcmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// outputFile is the archive file save -o and export -o write. A new name or a
// regular file is written to a temp file beside it and renamed over it by Commit,
// so a failed run leaves no partial archive under the name asked for. Anything
// else that exists there (a device such as /dev/null, a FIFO) is opened and
// written in place: renaming over it would replace the device node or pipe with
// a regular file. A directory is refused before any work is done.
type outputFile struct {
	*os.File
	path   string
	viaTmp bool
}

// createOutput opens path for verb ("save", "export"); the caller ends with
// Commit, or Abort on failure (Abort after Commit is a no-op).
func createOutput(verb, path string) (*outputFile, error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return nil, fmt.Errorf("%s %s: is a directory", verb, path)
	case err == nil && !fi.Mode().IsRegular():
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", verb, err)
		}
		return &outputFile{File: f, path: path}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // name what was asked for, not the temp file
		}
		return nil, fmt.Errorf("%s %s: %w", verb, path, err)
	}
	return &outputFile{File: f, path: path, viaTmp: true}, nil
}

// Commit makes a temp file 0644, syncs it and renames it over path; a file
// written in place is only closed.
func (o *outputFile) Commit() error {
	if !o.viaTmp {
		if err := o.Close(); err != nil {
			return fmt.Errorf("write %s: %w", o.path, err)
		}
		return nil
	}
	for _, step := range []func() error{func() error { return o.Chmod(0o644) }, o.Sync, o.Close} {
		if err := step(); err != nil {
			return fmt.Errorf("write %s: %w", o.path, err)
		}
	}
	if err := os.Rename(o.Name(), o.path); err != nil {
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	o.viaTmp = false
	return nil
}

// Abort closes the file and removes a temp file Commit has not renamed.
func (o *outputFile) Abort() {
	o.Close()
	if o.viaTmp {
		os.Remove(o.Name())
	}
}
