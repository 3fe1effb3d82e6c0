package blobstore

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// spooled is one regular file of an archive, kept in the load's spool dir by
// content digest until the manifest says whether it is needed.
type spooled struct {
	digest digest.Digest
	size   int64
	comp   Compression   // sniffed
	diffID digest.Digest // digest of the decompressed content ("" if it does not decompress)
	// content is the layer content size (tarSizeCounter) if the decompressed
	// content parsed as a tar, else -1.
	content int64
	// checkErr is LoadOptions.CheckLayer's verdict on the decompressed content.
	checkErr error
}

// spool is the content of one archive: every regular file by name, links resolved.
type spool struct {
	dir   string
	files map[string]*spooled
	links map[string]string // name -> target name (already resolved relative to the archive root)
}

// cleanEntry checks an archive entry name: no absolute path, no ".." anywhere.
func cleanEntry(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w %q: absolute path", ErrUnsafeEntry, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w %q: \"..\" in path", ErrUnsafeEntry, name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// readSpool streams the tar r into dir: each regular file hashed (and, if it is
// compressed, its decompressed content hashed too) while it is written.
func readSpool(ctx context.Context, r io.Reader, dir string, p Progress, check func(io.Reader) error) (*spool, error) {
	sp := &spool{dir: dir, files: map[string]*spooled{}, links: map[string]string{}}
	tail := &tailReader{r: r}
	tr := tar.NewReader(tail)
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if !tail.endsWithZeroBlock() && tail.n > 0 {
				// cut at an entry boundary: the end-of-archive blocks are missing
				return nil, fmt.Errorf("%w: no end-of-archive marker", ErrTruncated)
			}
			break
		}
		if err != nil {
			if n == 0 && errors.Is(err, tar.ErrHeader) {
				return nil, &notTarError{err}
			}
			return nil, archiveErr(err)
		}
		n++
		name, err := cleanEntry(hdr.Name)
		if err != nil {
			return nil, err
		}
		if layoutMetadata(name) && hdr.Size > maxMetaSize {
			// refused from its header, before gigabytes of it are spooled
			return nil, errMetaTooLarge(name)
		}
		if isSparse(hdr) {
			// image archives never hold sparse files; their holes could expand a
			// tiny archive into gigabytes of spooled zeros
			return nil, fmt.Errorf("%w %q: sparse file", ErrUnsafeEntry, hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck
			f, err := spoolFile(ctx, tr, dir, hdr, p, check)
			if err != nil {
				return nil, err
			}
			sp.files[name] = f
			delete(sp.links, name) // a later entry replaces an earlier one, as on extraction
		case tar.TypeSymlink:
			if strings.HasPrefix(hdr.Linkname, "/") {
				return nil, fmt.Errorf("%w %q: symlink to absolute path %q", ErrUnsafeEntry, hdr.Name, hdr.Linkname)
			}
			t := path.Join(path.Dir(name), hdr.Linkname)
			if t == ".." || strings.HasPrefix(t, "../") {
				return nil, fmt.Errorf("%w %q: symlink %q leaves the archive", ErrUnsafeEntry, hdr.Name, hdr.Linkname)
			}
			sp.links[name] = t
			delete(sp.files, name)
		case tar.TypeLink:
			t, err := cleanEntry(hdr.Linkname)
			if err != nil {
				return nil, err
			}
			sp.links[name] = t
			delete(sp.files, name)
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: empty archive", ErrInvalidArchive)
	}
	return sp, nil
}

func archiveErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	if errors.Is(err, tar.ErrHeader) {
		return fmt.Errorf("%w: %v", ErrInvalidArchive, err)
	}
	return fmt.Errorf("read archive: %w", err)
}

// notTarError is an input whose first header does not parse: not a tar at all.
type notTarError struct{ err error }

func (e *notTarError) Error() string        { return "not a tar archive: " + e.err.Error() }
func (e *notTarError) Unwrap() error        { return e.err }
func (e *notTarError) Is(target error) bool { return target == ErrInvalidArchive }

// layoutMetadata reports the archive members, by cleaned name, that a load reads
// whole as metadata wherever the archive has them: docker-archive's manifest.json
// and repositories, the OCI layout's index.json and oci-layout.
func layoutMetadata(name string) bool {
	switch name {
	case "manifest.json", "repositories", "index.json", "oci-layout":
		return true
	}
	return false
}

// errMetaTooLarge refuses the metadata file the archive calls name.
func errMetaTooLarge(name string) error {
	return fmt.Errorf("%w: %s larger than %d bytes", ErrInvalidArchive, name, maxMetaSize)
}

// archiveMetadata reports whether an archive entry is by its name one of the
// layout's metadata files (index.json, manifest.json, repositories, oci-layout,
// a config's <hex>.json, a legacy layer dir's json and VERSION), not a blob
// whose load a progress line is worth.
func archiveMetadata(name string) bool {
	switch base := path.Base(name); base {
	case "index.json", "manifest.json", "repositories", "oci-layout", "json", "VERSION":
		return true
	default:
		return strings.HasSuffix(base, ".json")
	}
}

// jsonBlob reports whether a blob that starts with head and is size bytes long
// is a manifest, index or config rather than a layer: an OCI layout's blobs and
// layerfs's docker-archives keep them all under blobs/sha256/<hex>. A layer is
// a tar (its first entry's name) or compressed; a JSON document starts with "{".
func jsonBlob(head []byte, size int64) bool {
	return len(head) > 0 && head[0] == '{' && size < 4<<20
}

func spoolFile(ctx context.Context, tr io.Reader, dir string, hdr *tar.Header, p Progress, check func(io.Reader) error) (*spooled, error) {
	f, err := os.CreateTemp(dir, "part-")
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", hdr.Name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	defer f.Close()
	h := digest.SHA256.Digester()
	head := make([]byte, len(xzMagic))
	hn, err := io.ReadFull(tr, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, archiveErr(err)
	}
	head = head[:hn]
	var tk ProgressTracker = nopTracker{}
	if !archiveMetadata(hdr.Name) && !jsonBlob(head, hdr.Size) { // docker's load shows layers alone
		tk = orNop(p).Track(hdr.Name, hdr.Size)
	}
	comp := sniff(head)
	// A bzip2 or xz layer (docker load takes them: its layers go through
	// DecompressStream) is kept decompressed, as a plain tar: no layer media
	// type names those compressions.
	legacy := bytes.HasPrefix(head, bzip2Magic) || bytes.HasPrefix(head, xzMagic)
	var dr *diffHasher
	sc := newTarSizeCounter()
	var content io.Writer = sc
	var cw *checkWriter
	if check != nil {
		cw = newCheckWriter(check)
		content = io.MultiWriter(sc, cw)
	}
	var plain *os.File
	if legacy {
		if plain, err = os.CreateTemp(dir, "part-"); err != nil {
			tk.Done(err)
			return nil, fmt.Errorf("spool %s: %w", hdr.Name, err)
		}
		defer os.Remove(plain.Name()) // a no-op once renamed
		defer plain.Close()
		content = io.MultiWriter(content, plain)
	}
	ws := []io.Writer{f, h.Hash(), tk}
	if comp != None || legacy {
		dr = newDiffHasher(comp, content)
		ws = append(ws, dr)
	} else {
		ws = append(ws, content)
	}
	w := io.MultiWriter(ws...)
	_, err = w.Write(head)
	if err == nil {
		_, err = io.Copy(w, ctxReader{ctx, tr})
	}
	var diffID digest.Digest
	if dr != nil {
		diffID = dr.finish()
	}
	var checkErr error
	if cw != nil {
		checkErr = cw.finish()
	}
	tk.Done(err)
	if err != nil {
		return nil, archiveErr(err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("spool %s: %w", hdr.Name, err)
	}
	if legacy && diffID != "" {
		return spoolPlain(dir, hdr.Name, plain, diffID, sc, checkErr)
	}
	d := h.Digest()
	if comp == None {
		diffID = d
	}
	dst := filepath.Join(dir, d.Encoded())
	if _, err := os.Stat(dst); err != nil {
		if err := os.Rename(tmp, dst); err != nil {
			return nil, fmt.Errorf("spool %s: %w", hdr.Name, err)
		}
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", hdr.Name, err)
	}
	size := int64(-1)
	if diffID != "" && sc.ok() {
		size = sc.size()
	}
	return &spooled{digest: d, size: fi.Size(), comp: comp, diffID: diffID, content: size, checkErr: checkErr}, nil
}

// spoolPlain keeps the decompressed content of a bzip2 or xz file, plain (its
// digest is its diffID), in place of the file.
func spoolPlain(dir, name string, plain *os.File, diffID digest.Digest, sc *tarSizeCounter, checkErr error) (*spooled, error) {
	if err := plain.Sync(); err != nil {
		return nil, fmt.Errorf("spool %s: %w", name, err)
	}
	dst := filepath.Join(dir, diffID.Encoded())
	if _, err := os.Stat(dst); err != nil {
		if err := os.Rename(plain.Name(), dst); err != nil {
			return nil, fmt.Errorf("spool %s: %w", name, err)
		}
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", name, err)
	}
	size := int64(-1)
	if sc.ok() {
		size = sc.size()
	}
	return &spooled{digest: diffID, size: fi.Size(), comp: None, diffID: diffID, content: size, checkErr: checkErr}, nil
}

// checkWriter runs a layer check on what is written to it, in a goroutine; a check
// that has given its verdict lets the rest pass unread.
type checkWriter struct {
	pw   *io.PipeWriter
	done chan error
}

func newCheckWriter(check func(io.Reader) error) *checkWriter {
	pr, pw := io.Pipe()
	c := &checkWriter{pw: pw, done: make(chan error, 1)}
	go func() {
		// Buffered: a tar reader reads each 512-byte header on its own, and each
		// read from the pipe is a hand-off between goroutines.
		err := check(bufio.NewReaderSize(pr, 1<<20))
		pr.CloseWithError(errCheckDone)
		c.done <- err
	}()
	return c
}

var errCheckDone = errors.New("check done")

func (c *checkWriter) Write(p []byte) (int, error) {
	c.pw.Write(p) // fails once the check is done: the rest is not needed
	return len(p), nil
}

func (c *checkWriter) finish() error {
	c.pw.Close()
	return <-c.done
}

// diffHasher decompresses what is written to it in a goroutine and hashes the
// result (and writes it to sc); a stream that does not decompress gives no diffID
// (it is not a layer).
type diffHasher struct {
	pw   *io.PipeWriter
	done chan digest.Digest
}

// c None: bzip2 or xz, which autoDecompress reads.
func newDiffHasher(c Compression, sc io.Writer) *diffHasher {
	pr, pw := io.Pipe()
	d := &diffHasher{pw: pw, done: make(chan digest.Digest, 1)}
	go func() {
		h := digest.SHA256.Digester()
		var dr io.Reader
		var closeDec func()
		var err error
		if c == None {
			dr, _, closeDec, err = autoDecompress(pr)
		} else {
			dr, closeDec, err = decompress(pr, c)
		}
		if err == nil {
			_, err = io.Copy(io.MultiWriter(h.Hash(), sc), dr)
			closeDec()
		}
		if err != nil {
			pr.CloseWithError(err)
			d.done <- ""
			return
		}
		io.Copy(io.Discard, pr) // trailing bytes after the compressed stream
		d.done <- h.Digest()
	}()
	return d
}

func (d *diffHasher) Write(p []byte) (int, error) {
	// A decoder that failed has closed the pipe: keep accepting bytes so the blob
	// itself is still spooled; that file is just not a layer.
	if _, err := d.pw.Write(p); err != nil {
		return len(p), nil
	}
	return len(p), nil
}

func (d *diffHasher) finish() digest.Digest {
	d.pw.Close()
	return <-d.done
}

// lookup finds a file by archive name, following links (at most 16). What it
// returns is content the archive holds under some name; callers that want a blob
// by digest go through Store.blobIn, which checks the content against the digest.
func (sp *spool) lookup(name string) (*spooled, error) {
	orig := name
	c, err := cleanEntry(name)
	if err != nil {
		return nil, err
	}
	name = c
	for i := 0; i < 16; i++ {
		if f, ok := sp.files[name]; ok {
			return f, nil
		}
		t, ok := sp.links[name]
		if !ok {
			return nil, fmt.Errorf("archive entry %q: %w", orig, ErrMissingBlob)
		}
		name = t
	}
	return nil, fmt.Errorf("archive entry %q: %w: too many links", orig, ErrInvalidArchive)
}

// read returns a small spooled file whole; name is what the archive calls it,
// for errors.
func (sp *spool) read(f *spooled, name string) ([]byte, error) {
	if f.size > maxMetaSize {
		return nil, errMetaTooLarge(name)
	}
	return os.ReadFile(filepath.Join(sp.dir, f.digest.Encoded()))
}

func (sp *spool) path(d digest.Digest) string { return filepath.Join(sp.dir, d.Encoded()) }

// tailReader remembers the last 512 bytes read, to tell a tar that ends with its
// zero blocks from one cut at an entry boundary (Go's tar reader says io.EOF for both).
type tailReader struct {
	r    io.Reader
	n    int64
	tail [512]byte
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if n >= len(t.tail) {
		copy(t.tail[:], p[n-len(t.tail):n])
	} else if n > 0 {
		copy(t.tail[:], t.tail[n:])
		copy(t.tail[len(t.tail)-n:], p[:n])
	}
	return n, err
}

func (t *tailReader) endsWithZeroBlock() bool {
	if t.n < int64(len(t.tail)) {
		return false
	}
	for _, b := range t.tail {
		if b != 0 {
			return false
		}
	}
	return true
}

func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
