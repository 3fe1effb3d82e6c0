package build

// `build -` and `build -f -`: a context or a Dockerfile from stdin, as docker
// build takes them.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// StdinContext reads what `build -` gets on r into a new dir under tmpDir: a
// tar archive (plain, gzip, bzip2, xz or zstd) is the build context, unpacked
// with every name held inside it; anything else is a Dockerfile, built with an
// empty context. dockerfile is "" for a tar (its own Dockerfile is used). The
// caller calls cleanup when the build is done.
func StdinContext(r io.Reader, tmpDir string) (ctxDir, dockerfile string, cleanup func(), err error) {
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return "", "", nil, err
	}
	dir, err := os.MkdirTemp(tmpDir, "stdin-")
	if err != nil {
		return "", "", nil, err
	}
	remove := func() { os.RemoveAll(dir) }
	// Not cleanup: a failing return sets that named result to nil first.
	defer func() {
		if err != nil {
			remove()
		}
	}()
	cleanup = remove
	in := filepath.Join(dir, "stdin")
	if err := writeAll(in, r); err != nil {
		return "", "", nil, fmt.Errorf("read build context from stdin: %w", err)
	}
	ctxDir = filepath.Join(dir, "context")
	if err := os.Mkdir(ctxDir, 0o755); err != nil {
		return "", "", nil, err
	}
	if !isArchive(in) && !isCompressed(in) {
		return ctxDir, in, cleanup, nil
	}
	cp, err := newCopier(ctxDir, "", nil)
	if err != nil {
		return "", "", nil, err
	}
	defer cp.close()
	// A context has no business holding device nodes: made on the host, a
	// named one would be read by COPY (a disk, /dev/mem), a FIFO would hang it.
	cp.noNodes = true
	if err := cp.extract(in, "/"); err != nil {
		return "", "", nil, fmt.Errorf("unpack build context from stdin: %w", err)
	}
	if err := cp.finish(); err != nil {
		return "", "", nil, err
	}
	os.Remove(in)
	return ctxDir, "", cleanup, nil
}

// isCompressed reports whether a file starts with a compression magic (gzip,
// bzip2, xz, zstd: docker's DetectCompression's). Such stdin is a context, as for docker's IsArchive, even if
// what it holds is not a whole tar: a truncated one then fails with the
// decompression error, not as a Dockerfile whose "instruction" is binary.
func isCompressed(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 6)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	for _, magic := range [][]byte{{0x1f, 0x8b}, []byte("BZh"), []byte("\xfd7zXZ\x00"), {0x28, 0xb5, 0x2f, 0xfd}} {
		if bytes.HasPrefix(head, magic) {
			return true
		}
	}
	return false
}

// StdinDockerfile reads a Dockerfile (`build -f -`) from r into a new dir under
// tmpDir; the caller calls cleanup when the build is done.
func StdinDockerfile(r io.Reader, tmpDir string) (dockerfile string, cleanup func(), err error) {
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(tmpDir, "stdin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	dockerfile = filepath.Join(dir, "Dockerfile")
	if err := writeAll(dockerfile, r); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("read Dockerfile from stdin: %w", err)
	}
	return dockerfile, cleanup, nil
}

func writeAll(name string, r io.Reader) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
