package blobstore

import (
	"context"
	_ "crypto/sha256" // registers sha256 for go-digest
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// checkDigest validates d as a sha256 digest, the only algorithm the store keeps.
func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidDigest, d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%w %q: only sha256 is supported", ErrInvalidDigest, d)
	}
	return nil
}

// BlobPath is where blob d lives (whether or not it is there).
func (s *Store) BlobPath(d digest.Digest) string {
	return filepath.Join(s.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// blobWriter streams a blob into a temp file in tmp/, hashing as it goes. The temp
// file is unnamed where the filesystem can (O_TMPFILE, linked into blobs/ when
// placed), so that a writer killed before then leaves nothing behind; elsewhere it
// is a named blob-* file, which GC removes after a kill.
type blobWriter struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	size int64
}

func (s *Store) newBlobWriter() (*blobWriter, error) {
	f, err := openBlobTemp(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("create blob temp file: %w", err)
	}
	return &blobWriter{s: s, f: f, h: digest.SHA256.Hash()}, nil
}

// unnamedTemps reports whether the temp files made by openBlobTemp may be unnamed:
// linkat of /proc/self/fd/N with AT_SYMLINK_FOLLOW, which needs no capability
// (the AT_EMPTY_PATH form needs CAP_DAC_READ_SEARCH), needs /proc. Tests turn it
// off to run the named fallback.
var unnamedTemps = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
})

// openBlobTemp opens a new temp file in dir: unnamed (O_TMPFILE) where the kernel
// and the filesystem have it, else named by os.CreateTemp. An unnamed file's Name
// is dir itself: isUnnamed tells them apart.
func openBlobTemp(dir string) (*os.File, error) {
	if unnamedTemps() {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		for errors.Is(err, unix.EINTR) {
			fd, err = unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		}
		if err == nil {
			return os.NewFile(uintptr(fd), dir), nil
		}
		// EOPNOTSUPP: a filesystem without O_TMPFILE; EISDIR: a kernel without it
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) {
			return nil, &os.PathError{Op: "open", Path: dir, Err: err}
		}
	}
	return os.CreateTemp(dir, "blob-")
}

// isUnnamed reports a temp file of openBlobTemp in dir that has no name.
func isUnnamed(f *os.File, dir string) bool { return f.Name() == dir }

func (w *blobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.size += int64(n)
	return n, err
}

func (w *blobWriter) Digest() digest.Digest { return digest.NewDigest(digest.SHA256, w.h) }

// abort removes the temp file; safe after commit.
func (w *blobWriter) abort() {
	if w.f != nil {
		removeTemp(w.f, w.s.tmpDir())
		w.f = nil
	}
}

// removeTemp closes a temp file of openBlobTemp and removes it if it has a name
// (an unnamed one goes with its last descriptor).
func removeTemp(f *os.File, dir string) {
	f.Close()
	if !isUnnamed(f, dir) {
		os.Remove(f.Name())
	}
}

// commit checks the digest against want (if set) and moves the blob into place.
func (w *blobWriter) commit(want digest.Digest) (digest.Digest, int64, error) {
	b, err := w.stage(want)
	if err != nil {
		return "", 0, err
	}
	if err := b.Commit(); err != nil {
		return "", 0, err
	}
	return b.d, b.size, nil
}

// stage checks the digest against want (if set) and makes the temp file durable
// under its final mode, without placing it. The temp file is the returned Staged's
// (or, on error, removed).
func (w *blobWriter) stage(want digest.Digest) (*Staged, error) {
	defer w.abort()
	got := w.Digest()
	if want != "" && got != want {
		return nil, fmt.Errorf("blob %s: %w (got %s)", want, ErrDigestMismatch, got)
	}
	if err := w.f.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("blob %s: %w", got, err)
	}
	if err := w.f.Sync(); err != nil {
		return nil, fmt.Errorf("blob %s: %w", got, err)
	}
	b := &Staged{s: w.s, d: got, size: w.size}
	if isUnnamed(w.f, w.s.tmpDir()) {
		// kept open: an unnamed file is placed from its descriptor
		b.f = w.f
	} else {
		if err := w.f.Close(); err != nil {
			return nil, fmt.Errorf("blob %s: %w", got, err)
		}
		b.tmp = w.f.Name()
	}
	w.f = nil
	return b, nil
}

// Staged is a blob that Stage wrote and verified but did not make visible: a temp
// file inside the store (unnamed, held open, where the filesystem can) until Commit
// places it in blobs/. Not safe for concurrent use.
type Staged struct {
	s    *Store
	tmp  string   // a named temp file; "" once committed or discarded
	f    *os.File // an unnamed temp file; nil once committed or discarded
	d    digest.Digest
	size int64
}

// Digest is the staged blob's digest.
func (b *Staged) Digest() digest.Digest { return b.d }

// Size is the staged blob's size in bytes.
func (b *Staged) Size() int64 { return b.size }

// Commit makes the blob visible, as the end of Put does (rename or link to its
// digest path, directory fsync); a blob of that digest already there is kept and
// the staged copy removed. The temp file is gone afterwards, also on error. Commit
// after Commit or Discard does nothing.
func (b *Staged) Commit() (err error) {
	defer func() { err = b.s.noSpace(err) }()
	if b.f != nil {
		f := b.f
		b.f = nil
		defer f.Close()
		_, err := b.s.placeUnnamed(f, b.d)
		return err
	}
	if b.tmp == "" {
		return nil
	}
	tmp := b.tmp
	b.tmp = ""
	if _, err := b.s.placeBlob(tmp, b.d); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Discard removes the staged temp file, leaving the store as it was before Stage.
// Idempotent and a no-op after Commit, so `defer b.Discard()` is safe.
func (b *Staged) Discard() {
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
	if b.tmp != "" {
		os.Remove(b.tmp)
		b.tmp = ""
	}
}

// placeBlob renames a finished, verified temp file to the blob path of d, unless the
// blob is already there (then the temp file is removed). placed reports the rename:
// false when another writer had placed d first, so the blob is not the caller's to
// take out again.
func (s *Store) placeBlob(tmp string, d digest.Digest) (placed bool, err error) {
	dst := s.BlobPath(d)
	if _, err := os.Stat(dst); err == nil {
		return false, os.Remove(tmp)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return false, fmt.Errorf("blob %s: %w", d, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return true, fmt.Errorf("blob %s: %w", d, err)
	}
	return true, nil
}

// placeUnnamed links a finished, verified, fsynced unnamed temp file (open as f)
// to the blob path of d, unless the blob is already there; placed as for
// placeBlob. A link never replaces: one writer's blob is the one that stays, and
// it appears whole. f stays open: the caller closes it.
func (s *Store) placeUnnamed(f *os.File, d digest.Digest) (placed bool, err error) {
	dst := s.BlobPath(d)
	if _, err := os.Stat(dst); err == nil {
		return false, nil
	}
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	for {
		err = unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return false, nil // another writer placed d meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", d, &os.LinkError{Op: "link", Old: src, New: dst, Err: err})
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return true, fmt.Errorf("blob %s: %w", d, err)
	}
	return true, nil
}

// replaceBlob renames a finished, verified temp file over the blob path of d,
// which holds a damaged copy: atomically, as every blob write, so that a reader
// sees the old file or the new one whole.
func (s *Store) replaceBlob(tmp string, d digest.Digest) error {
	dst := s.BlobPath(d)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return nil
}

// sizeDiffers reports a stored blob file whose size is not that of the verified
// copy at spooled (false if either cannot be seen): a blob damaged from outside,
// truncated or extended, which a write of the good copy repairs. A blob damaged
// in place at the right size is not seen.
func sizeDiffers(stored, spooled string) bool {
	want, err := os.Stat(spooled)
	if err != nil {
		return false
	}
	have, err := os.Stat(stored)
	return err == nil && have.Size() != want.Size()
}

// Put streams r into the store and returns its digest and size. If want is not
// empty the content must hash to it (else ErrDigestMismatch and nothing is stored).
// Idempotent: putting a blob that is already there succeeds and leaves it alone.
// Safe for concurrent use, also across processes. r is read to EOF, not closed.
func (s *Store) Put(ctx context.Context, r io.Reader, want digest.Digest) (_ digest.Digest, _ int64, err error) {
	defer func() { err = s.noSpace(err) }()
	if want != "" {
		if err := checkDigest(want); err != nil {
			return "", 0, err
		}
	}
	release, err := s.Lease(ctx)
	if err != nil {
		return "", 0, err
	}
	defer release()
	w, err := s.newBlobWriter()
	if err != nil {
		return "", 0, err
	}
	defer w.abort()
	if _, err := io.Copy(w, ctxReader{ctx, r}); err != nil {
		return "", 0, blobWriteErr("put", want, err)
	}
	return w.commit(want)
}

// Stage is Put without the last step: r is read to EOF into a temp file inside the
// store, checked against want (if set; else ErrDigestMismatch and nothing is kept)
// and fsynced, but the blob is not visible (Has is false, GC does not count it)
// until the returned Staged's Commit. On error nothing is left behind; otherwise
// the caller calls Commit or Discard. Stage takes no Lease: the caller holds one
// from before Stage until the blob is named in index.json, as GC removes the temp
// files of writers without one. Safe for concurrent use; r is not closed.
func (s *Store) Stage(ctx context.Context, r io.Reader, want digest.Digest) (_ *Staged, err error) {
	defer func() { err = s.noSpace(err) }()
	if want != "" {
		if err := checkDigest(want); err != nil {
			return nil, err
		}
	}
	w, err := s.newBlobWriter()
	if err != nil {
		return nil, err
	}
	defer w.abort()
	if _, err := io.Copy(w, ctxReader{ctx, r}); err != nil {
		return nil, blobWriteErr("stage", want, err)
	}
	return w.stage(want)
}

// blobWriteErr wraps err of a blob write with the digest wanted, if one was.
func blobWriteErr(verb string, want digest.Digest, err error) error {
	if want == "" {
		return fmt.Errorf("%s blob: %w", verb, err)
	}
	return fmt.Errorf("%s blob %s: %w", verb, want, err)
}

// Has reports whether blob d is in the store.
func (s *Store) Has(d digest.Digest) bool {
	if checkDigest(d) != nil {
		return false
	}
	_, err := os.Stat(s.BlobPath(d))
	return err == nil
}

// Size is the stored size of blob d.
func (s *Store) Size(d digest.Digest) (int64, error) {
	if err := checkDigest(d); err != nil {
		return 0, err
	}
	fi, err := os.Stat(s.BlobPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", d, errBlobMissing)
	}
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// Open opens blob d for reading. The reader verifies the content against d and the
// size seen at open time at EOF: a damaged blob reads as ErrDigestMismatch instead of
// io.EOF. The caller closes it.
func (s *Store) Open(d digest.Digest) (io.ReadCloser, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	f, err := os.Open(s.BlobPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, errBlobMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return &verifyReader{f: f, d: d, want: fi.Size(), h: d.Algorithm().Hash()}, nil
}

// readBlob reads a whole small blob (manifest, config), verified, at most limit bytes.
func (s *Store) readBlob(d digest.Digest, limit int64) ([]byte, error) {
	rc, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge(d, limit)
	}
	return b, nil
}

func errTooLarge(d digest.Digest, limit int64) error {
	return fmt.Errorf("blob %s: larger than %d bytes", d, limit)
}

type verifyReader struct {
	f    *os.File
	d    digest.Digest
	h    hash.Hash
	n    int64
	want int64
}

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if v.n != v.want {
			return n, fmt.Errorf("blob %s: %w (size %d, want %d)", v.d, ErrDigestMismatch, v.n, v.want)
		}
		if got := digest.NewDigest(v.d.Algorithm(), v.h); got != v.d {
			return n, fmt.Errorf("blob %s: %w (got %s)", v.d, ErrDigestMismatch, got)
		}
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.f.Close() }

// ctxReader makes a long copy stop when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
