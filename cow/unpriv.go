package cow

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Unprivileged, a store's files are the user's own, but their modes still bind
// their owner: a 0000 /etc/shadow or 4111 sudo of an image cannot be read, a
// 0000 or 0300 dir cannot be listed or looked into, and user.* xattrs (the
// owners in RootlessXattr) cannot be read from a file or dir without owner read.
// As umoci's pkg/unpriv does, the readers of such trees (Diff, Changes, Export,
// CopyUp, IsOpaqueDir) then give the owner the access they need for a moment:
// when a call fails with EACCES, and only then, the file or dir (and the dir it
// is looked up in) is made u+r (u+rx for a dir), the call is made again, and the
// modes are put back at once, on error paths too. Only entries the user owns are
// touched; root never gets here. What a racing reader can see is in docs/NOTES.md.

// unprivileged: the process has no DAC override (it is not root).
var unprivileged = os.Geteuid() != 0

// Unprivileged reports whether the process has no DAC override (it is not
// root): the only case in which the chmod-arounds of this file do anything.
func Unprivileged() bool { return unprivileged }

func nop() {}

// fdPath names the file open as fd (O_PATH is fine) for path-only syscalls.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// widenFd makes the regular file (dir) open as fd (any fd of it, O_PATH too) u+r
// (u+rx) if the process is unprivileged, owns it and it lacks that. The returned
// func puts its mode back (once, however often it is called); it is a no-op when
// nothing was changed. Every widening of one type adds the same bits, so that two
// readers racing on one entry never take the other's widened mode for its own
// (the worst a race gives is one reader's EACCES).
func widenFd(fd int) func() {
	if !unprivileged {
		return nop
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return nop
	}
	var bits uint32
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		bits = 0o400
	case unix.S_IFDIR:
		bits = 0o500
	default:
		return nop
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&bits == bits {
		return nop
	}
	p, mode := fdPath(fd), st.Mode&0o7777
	if unix.Chmod(p, mode|bits) != nil {
		return nop
	}
	done := false
	return func() {
		if !done {
			done = true
			_ = unix.Chmod(p, mode)
		}
	}
}

// widenAt is widenFd for the entry name of the dir open as dirfd (never followed);
// the dir itself is widened first if the lookup needs it.
func widenAt(dirfd int, name string) func() {
	if !unprivileged {
		return nop
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	undoDir := nop
	if errors.Is(err, unix.EACCES) {
		undoDir = widenFd(dirfd)
		fd, err = unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		undoDir()
		return nop
	}
	undo := widenFd(fd)
	return func() {
		undo()
		undoDir()
		if fd >= 0 {
			unix.Close(fd)
			fd = -1
		}
	}
}

// withDirAccess runs fn, an access to the dir open as dirfd or to names in it;
// if that fails with EACCES, it runs fn again with the dir made u+rx for the
// moment (widenFd).
func withDirAccess(dirfd int, fn func() error) error {
	err := fn()
	if !errors.Is(err, unix.EACCES) || !unprivileged {
		return err
	}
	undo := widenFd(dirfd)
	defer undo()
	return fn()
}

// lstatAt is fstatat(AT_SYMLINK_NOFOLLOW) of name in the dir open as dirfd,
// through a dir its owner may not search (withDirAccess).
func lstatAt(dirfd int, name string, st *unix.Stat_t) error {
	return withDirAccess(dirfd, func() error { return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW) })
}

// openAsOwner is openat(dirfd, name, flags) that, unprivileged, opens for reading
// a file or dir of the user's whose mode denies its owner that (0000, 0200, 4111;
// a dir 0000 or 0300), and one in a dir the owner may not search, by widening
// them for the open alone (widenAt). flags must not ask for write access.
func openAsOwner(dirfd int, name string, flags int) (int, error) {
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if !errors.Is(err, unix.EACCES) || !unprivileged {
		return fd, err
	}
	undo := widenAt(dirfd, name)
	defer undo()
	return unix.Openat(dirfd, name, flags, 0)
}

// WithDirAccess runs fn, an access to the dir open as dirfd (O_PATH is fine) or
// to names in it. Unprivileged, if fn fails with EACCES and the dir is the
// user's own but its mode denies its owner read or search (0000, 0300), fn runs
// again with the dir made u+rx for that call alone. For the union fs's lookups
// and listings in its layer dirs: the kernel has already checked the merged
// dir's mode, which may differ from a layer's copy.
func WithDirAccess(dirfd int, fn func() error) error { return withDirAccess(dirfd, fn) }

// ReopenAsOwner opens the file or dir open as fd (O_PATH is fine) again with
// flags (no write access), through one whose mode denies its owner read as
// openAsOwner does.
func ReopenAsOwner(fd int, flags int) (int, error) {
	p := fdPath(fd)
	nfd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0)
	if !errors.Is(err, unix.EACCES) || !unprivileged {
		return nfd, err
	}
	undo := widenFd(fd)
	defer undo()
	return unix.Open(p, flags|unix.O_CLOEXEC, 0)
}

// OwnDirRWX makes the dir open as fd (O_PATH is fine) u+rwx if the process is
// unprivileged, owns it and its mode denies that, and returns the func that puts
// its mode back (a no-op if nothing changed). For the union fs's whole-tree
// copy-up (a rename of a dir) into an upper copy the user made 0000 or 0500:
// the kernel has allowed the rename, and the copies of the entries below must be
// placed in it, and it be made opaque.
func OwnDirRWX(fd int) func() {
	if !unprivileged {
		return nop
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR ||
		int(st.Uid) != os.Geteuid() || st.Mode&0o700 == 0o700 {
		return nop
	}
	p, mode := fdPath(fd), st.Mode&0o7777
	if unix.Chmod(p, mode|0o700) != nil {
		return nop
	}
	done := false
	return func() {
		if !done {
			done = true
			_ = unix.Chmod(p, mode)
		}
	}
}
