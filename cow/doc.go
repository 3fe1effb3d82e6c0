// Package cow handles layer directories: the two whiteout encodings, unpacking layer
// tars into directories (Apply), the cache of unpacked lower layers (LayerCache), the
// copy-on-write upper dir (copy-up), and turning an upper dir back into a layer tar
// (Diff), a change list (Changes) or a flat rootfs tar (Export).
//
// cow knows nothing of manifests or image stores, and nothing of FUSE: it works on
// directories and tar streams. Layers move as streams: Apply takes an io.Reader and
// hashes while it unpacks; Diff and Export return an io.ReadCloser fed by a goroutine
// that ends the stream with CloseWithError, so a failure is never a clean EOF.
//
// # Layers
//
// An unpacked layer is a plain directory holding one layer tar's entries, whiteouts
// included as the OCI ".wh." files they are in the tar, except one too long for a
// file name, which is held as an overlay 0/0 device (whiteout.go). Apply treats every tar as
// hostile: names are cleaned, escapes and writes through links are refused before
// anything is written for the entry, and all writes are resolved inside the target
// with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS) (an O_NOFOLLOW walk on old
// kernels). Holes are restored for runs of zeros, whatever the tar's sparse encoding.
//
// # Whiteouts
//
// whiteout.go is the one home of both encodings (OCI files, overlay 0/0 devices and
// opaque xattrs). Readers of lower dirs (Export, Changes) accept both; an upper dir is
// read in the Format it was written in.
//
// # Caching
//
// LayerCache keeps layers/<diffID hex>/, each filled once: unpacked into a temp dir
// beside it, the diffID checked, synced, renamed into place. A per-layer flock makes
// concurrent fills (goroutines or processes) unpack once; a failed or mismatching fill
// leaves nothing. Unpacked layers never change afterwards; Prune removes those not
// kept, skipping any being filled.
//
// # Diff
//
// Diff walks only the upper dir: its cost is the change, not the image. The tar is
// reproducible (sorted walk, PAX, empty uname/gname, optional SourceDateEpoch), see
// tarwriter.go for the exact encoding, including why sparse files are stored as plain
// data.
//
// # Concurrency
//
// Apply, Diff, Export and Changes hold no shared state and may run concurrently on
// different dirs. Diff and Changes need the upper dir to hold still while they read
// it (the fs's Pause); LayerCache methods are safe from any goroutine or process.
package cow
