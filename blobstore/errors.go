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
)
