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
// # New entries
//
// Creates, mkdirs, mknods and O_TMPFILE opens make the entry in the upper copy of
// its directory, owned by the caller when the mount runs as root. The kernel leaves
// the caller's umask to this process (DONT_MASK), which ignores it in a directory
// with a default ACL, as a local filesystem does: the ACL gives the entry its
// permissions (umask.go).
//
// # Copy-up
//
// The first change to a lower entry copies it up (cow.CopyUp), parents first.
// Read-only opens never copy up; O_TRUNC and truncate copy no more data than the
// new size keeps. Hard links in a lower stay links: all visible names of the inode
// are linked to the upper copy. A renamed lower directory is copied up as a whole
// and made opaque, so rename never fails with EXDEV. Copy-up is not a change of the
// directories it places entries (or markers) in: their atime and mtime are put
// back, as kernel overlayfs does; a user's create, unlink or rename moves them.
//
// # Inode numbers
//
// A lower entry's inode number derives from its (st_dev, st_ino) in its layer;
// copy-up stores it in the xattr trusted.layerfs.origin of the upper copy, so
// st_ino is stable across copy-up and remount, equal in readdir and stat, and
// shared by hard links. All entries share the mount's st_dev.
//
// # Caching and data
//
// The mount is the only writer of its upper dir and lowers never change, so
// entries, attributes and negative lookups are cached by the kernel for an hour,
// and so are symlinks (their targets are also kept in the node: a symlink never
// changes, and the kernel may read one after its name was replaced). OPENDIR
// answers ENOSYS once (noopendir.go): the kernel then caches listings across opens
// and sends no OPENDIR/RELEASEDIR; listings have name-hash offsets. FLUSH answers
// ENOSYS. READDIRPLUS reuses the resolutions made for the listing.
//
// Two modes serve file data (Options.Passthrough):
//   - no-open (default): Open answers ENOSYS once, so the kernel opens files itself
//     without a round trip and keeps their pages cached across opens; READ and
//     WRITE are served from one fd per node, the first WRITE copies up. Locks are
//     kept by the kernel. Best for open-heavy work (tar, grep, compiles).
//   - passthrough: every open reaches this process and regular files are passed
//     through to their backing file (root, Linux 6.9+): reads and writes cost no
//     round trip. Small lower files are served with FOPEN_KEEP_CACHE instead; see
//     fileHandle for the rule that keeps a copied-up file from ever being written
//     through its lower file's backing.
//
// # Concurrency
//
// Operations may run concurrently; copy-ups are serialised, except for the data
// copy of a big file (1 MiB or more), which runs beside other copy-ups and is
// checked to be still wanted before it is placed. A node caches which
// layers hold it; a resolution that overlapped a change of any directory is not
// trusted, and renames of directories and Rebase invalidate all of them.
// MountPoint.Pause is a write barrier for commit (it also stops the processes
// writing into the mount, as docker pause freezes a container, and writes the
// mount's dirty pages back first); MountPoint.Rebase swaps the layer stack in
// place.
//
// # Limits
//
// Names longer than NAME_MAX are refused; paths of any depth work. In the OCI
// encoding the whiteout of a name longer than 251 bytes (".wh." + name exceeds
// NAME_MAX) is a 0/0 device, as in lower layers (cow, whiteout.go); commit writes it
// as ".wh.<name>". Directory renames copy the whole
// lower tree up (no redirect xattrs are written or read). A symlink's own xattrs
// (trusted.*, security.*; Linux refuses user.* on symlinks) are shown, set and
// copied up as by overlayfs, never its target's. POSIX ACLs are kept as
// xattrs, but the kernel's permission checks through the mount use the mode bits
// only (FUSE's POSIX_ACL is not negotiated).
package fs
