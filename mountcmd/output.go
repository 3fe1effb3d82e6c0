package mountcmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// outputFile is the archive file save -o and export -o write. A new name or a
// regular file is written to a temp file beside it, unnamed (O_TMPFILE) where the
// filesystem allows, and renamed over it by Commit, so a failed or killed run
// leaves no partial archive under the name asked for, nor a temp file. Anything
// else that exists there (a device such as /dev/null, a FIFO) is opened and
// written in place: renaming over it would replace the device node or pipe with
// a regular file. A directory is refused before any work is done.
type outputFile struct {
	*os.File
	path    string
	viaTmp  bool
	unnamed bool // an O_TMPFILE file: linked in by Commit
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
	// Unnamed until Commit (O_TMPFILE), so a run killed meanwhile leaves nothing
	// behind; a filesystem without O_TMPFILE gets a named temp file.
	if fd, err := unix.Open(filepath.Dir(path), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600); err == nil {
		return &outputFile{File: os.NewFile(uintptr(fd), path), path: path, viaTmp: true, unnamed: true}, nil
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
	steps := []func() error{func() error { return o.Chmod(0o644) }, o.Sync}
	tmp := o.Name()
	if o.unnamed {
		// linkat through /proc: AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH.
		steps = append(steps, func() error {
			tmp = filepath.Join(filepath.Dir(o.path), fmt.Sprintf(".%s.tmp-%d", filepath.Base(o.path), os.Getpid()))
			os.Remove(tmp) // a killed run's, of the same pid
			return unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", o.Fd()), unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		})
	}
	for _, step := range append(steps, o.Close) {
		if err := step(); err != nil {
			if o.unnamed && tmp != o.Name() {
				os.Remove(tmp)
			}
			return fmt.Errorf("write %s: %w", o.path, err)
		}
	}
	if err := os.Rename(tmp, o.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	o.viaTmp = false
	return nil
}

// Abort closes the file and removes a temp file Commit has not renamed.
func (o *outputFile) Abort() {
	o.Close()
	if o.viaTmp && !o.unnamed {
		os.Remove(o.Name())
	}
}

// marshalJSON is json.Marshal as docker prints JSON to users: '<', '>' and '&'
// as they are, not \u003c, \u003e and \u0026 (docker/cli's template json
// function and the daemon's responses both turn SetEscapeHTML off), so grep and
// sed find "<none>" or a URL's '&'. indent, if not "", indents as MarshalIndent
// does. No trailing newline.
func marshalJSON(v any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// writeJSON writes v as JSON (marshalJSON) and a newline.
func writeJSON(w io.Writer, v any, indent string) error {
	b, err := marshalJSON(v, indent)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeJSONLines writes each row as one JSON object a line (--format json).
func writeJSONLines[T any](w io.Writer, rows []T) error {
	for _, r := range rows {
		if err := writeJSON(w, r, ""); err != nil {
			return err
		}
	}
	return nil
}
