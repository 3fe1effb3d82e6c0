package blobstore

import "errors"

// Sentinel errors, checked with errors.Is. Errors returned by the store wrap one of
// these where the cause is one of them, with the subject (digest, reference, entry).
var (
	ErrNotFound         = errors.New("not found")
	ErrDigestMismatch   = errors.New("content does not match digest")
	ErrInvalidReference = errors.New("invalid reference format")
	ErrInvalidDigest    = errors.New("invalid digest")
	ErrUnknownMediaType = errors.New("unknown media type")
	ErrInvalidConfig    = errors.New("invalid image config")
	ErrInvalidManifest  = errors.New("invalid manifest")
	ErrMissingBlob      = errors.New("missing blob")
	ErrInvalidArchive   = errors.New("invalid archive")
	ErrUnsafeEntry      = errors.New("unsafe archive entry")
	ErrAmbiguous        = errors.New("ambiguous image ID prefix")
	ErrTruncated        = errors.New("truncated archive")
	// ErrUnsupportedOS is an image made for another operating system than Linux
	// (a Windows image): load, pull and import refuse it, as docker does.
	ErrUnsupportedOS = errors.New("operating system is not supported")
	// ErrAmbiguousTag is docker's refusal of a tag whose repository is the digest
	// algorithm's name ("sha256:abc"); the message is docker's.
	ErrAmbiguousTag = errors.New("refusing to create an ambiguous tag using digest algorithm as name")
)

// errBlobMissing is the cause of every error about a blob the store does not have:
// it is ErrNotFound (the blob is not there) and ErrMissingBlob, so that a caller can
// tell an image that is listed but lacks a blob from one that is not listed at all.
var errBlobMissing error = blobMissing{}

type blobMissing struct{}

func (blobMissing) Error() string { return "not found" }

func (blobMissing) Is(target error) bool { return target == ErrNotFound || target == ErrMissingBlob }
