// Package fs is layerfs's union filesystem: a go-fuse v2 mount that merges
// read-only lower layer dirs (top first) with a copy-on-write upper dir.
//
// # Layers
//
// Every layer is held open as a directory fd; every path is resolved beneath it
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), and the last component is
// reached with *at calls that never follow symlinks. Nothing a layer contains
// (absolute symlinks, "..") can make the mount touch files outside its layers.
//
// # Whiteouts
//
// Lookup and readdir walk the upper dir then the lowers, stopping at whiteouts and
// opaque dirs in either encoding (package cow); markers and names starting with
// ".wh." are hidden, and creating them is refused (EINVAL). Deletes write
// whiteouts in Options.Format.
//
// # Copy-up
//
// The first change to a lower entry copies it up (cow.CopyUp), parents first.
// Read-only opens never copy up; O_TRUNC and truncate copy no more data than the
// new size keeps. Hard links in a lower stay links: all visible names of the inode
// are linked to the upper copy. A renamed lower directory is copied up as a whole
// and made opaque, so rename never fails with EXDEV.
//
// # Inode numbers
//
// A lower entry's inode number derives from its (st_dev, st_ino) in its layer;
// copy-up stores it in the xattr trusted.layerfs.origin of the upper copy, so
// st_ino is stable across copy-up and remount, equal in readdir and stat, and
// shared by hard links. All entries share the mount's st_dev.
//
// # Caching
//
// The mount is the only writer of its upper dir and lowers never change, so
// entries, attributes and negative lookups are cached by the kernel for an hour,
// readdir results are cached (FOPEN_CACHE_DIR), symlinks are cached, and lower
// files keep their page cache (FOPEN_KEEP_CACHE). Regular files are passed through
// to the backing file where the kernel allows it (root, Linux 6.9+); see fileHandle
// for why a file copied up while a read-only passthrough open of its lower copy
// lives is then served without passthrough.
//
// # Concurrency
//
// Operations may run concurrently; copy-ups are serialised. Mount.Pause is a write
// barrier for commit; Mount.Rebase swaps the layer stack in place.
package fs
