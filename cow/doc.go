// Package cow handles layer directories: the two whiteout encodings, unpacking layer
// tars into directories (Apply), the cache of unpacked lower layers, the copy-on-write
// upper dir (copy-up), and turning an upper dir back into a layer tar (Diff).
//
// cow knows nothing of manifests or image stores, and nothing of FUSE: it works on
// directories and tar streams.
package cow
