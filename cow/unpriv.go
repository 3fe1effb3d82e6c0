package cow

import (
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

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
// nothing was changed. fd must stay open until then.
func widenFd(fd int) func() { return widen(fd, 0o500, 0o400) }

// The widenings in flight in this process, by inode. Every chmod-around of the
// process, and the union fs's chmods of the entries it serves (Chmod), change
// modes under wideMu, so that within one process a widening never undoes a
// chmod made meanwhile and two readers of one entry share one widening: the
// first saves the mode, the last puts it back, and a Chmod meanwhile changes the
// mode to put back. Other processes (another mount, a diff) only see the
// widened mode for the moment; a widening puts the mode back only if it is
// still the one it set, so their chmods meanwhile stay too.
type wideKey struct{ dev, ino uint64 }

type widening struct {
	refs      int
	saved     uint32 // the mode to put back
	set       uint32 // the mode the widenings set
	journaled bool   // a record of the journal (widen_journal.go) stands for it
}

// rejournal makes the journal's record of w (of inode k, open as fd) say what
// w says now: none standing when there is nothing to put back. Called under
// wideMu.
func (w *widening) rejournal(k wideKey, fd int) {
	if w.saved == w.set {
		if w.journaled {
			unjournal(k)
		}
		w.journaled = false
		return
	}
	w.journaled = journal(k, fd, w.saved, w.set) || w.journaled
}

var (
	wideMu sync.Mutex
	wide   = map[wideKey]*widening{}
	wideN  atomic.Int32 // len(wide), read without wideMu
)

// widen adds dirBits to the mode of the dir open as fd, or regBits to that of
// the regular file (0: none for that type), if the process is unprivileged and
// owns it; see widenFd.
func widen(fd int, dirBits, regBits uint32) func() {
	if !unprivileged {
		return nop
	}
	wideMu.Lock()
	defer wideMu.Unlock()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return nop
	}
	var bits uint32
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		bits = regBits
	case unix.S_IFDIR:
		bits = dirBits
	}
	if bits == 0 || int(st.Uid) != os.Geteuid() {
		return nop
	}
	k, mode := wideKey{uint64(st.Dev), st.Ino}, st.Mode&0o7777
	w := wide[k]
	if w == nil && mode&bits == bits {
		return nop
	}
	if mode&bits != bits {
		// Journaled before the chmod, so that a kill between the two
		// leaves a record a repair can act on (or drop, the mode unchanged).
		saved := mode
		if w != nil {
			saved = w.saved
		}
		journaled := journal(k, fd, saved, mode|bits)
		if unix.Chmod(fdPath(fd), mode|bits) != nil {
			if w == nil {
				if journaled {
					unjournal(k)
				}
				return nop
			}
			if journaled {
				w.rejournal(k, fd) // back to what stands
			}
		} else {
			if w == nil {
				w = &widening{saved: mode}
				wide[k] = w
				wideN.Add(1)
			}
			w.set = mode | bits
			w.journaled = journaled || w.journaled
		}
	}
	w.refs++
	done := false
	return func() {
		if done {
			return
		}
		done = true
		wideMu.Lock()
		defer wideMu.Unlock()
		if w.refs--; w.refs > 0 {
			return
		}
		delete(wide, k)
		wideN.Add(-1)
		var now unix.Stat_t
		if unix.Fstat(fd, &now) == nil && now.Mode&0o7777 == w.set {
			_ = unix.Chmod(fdPath(fd), w.saved)
		}
		if w.journaled {
			unjournal(k) // after the chmod: a kill before it leaves the record standing
		}
	}
}

// Chmod sets the mode of the file open as fd (O_PATH is fine) to mode, as
// chmod(2). For the union fs's SETATTR: unprivileged, if a chmod-around of this
// process has the file opened up at the moment (a LOOKUP's opaque check of a dir
// the user made 0000), the mode it puts back becomes mode, so it does not undo
// this chmod. Root makes one chmod, as before.
func Chmod(fd int, mode uint32) error {
	if !unprivileged {
		return fchmod(fd, mode)
	}
	wideMu.Lock()
	defer wideMu.Unlock()
	if err := fchmod(fd, mode); err != nil || len(wide) == 0 {
		return err
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		k := wideKey{uint64(st.Dev), st.Ino}
		if w := wide[k]; w != nil {
			w.saved, w.set = mode, mode
			w.rejournal(k, fd)
		}
	}
	return nil
}

// fchmod is fchmod(2) of fd, or chmod(2) of its /proc link for an O_PATH fd
// (which fchmod refuses): the path costs a walk through procfs.
func fchmod(fd int, mode uint32) error {
	if err := unix.Fchmod(fd, mode); !errors.Is(err, unix.EBADF) {
		return err
	}
	return unix.Chmod(fdPath(fd), mode)
}

// ShownMode sets the permission bits of st (an lstat of a file of this process's
// stores) to the mode a chmod-around of this process has opened it up from, if
// one has it open at the moment: what the union fs reports (and the kernel
// caches) must be the user's mode, never the moment's widened one. A no-op for
// root, and a load of a counter while nothing is widened.
func ShownMode(st *unix.Stat_t) {
	if unprivileged && wideN.Load() != 0 {
		shownMode(st)
	}
}

func shownMode(st *unix.Stat_t) {
	wideMu.Lock()
	defer wideMu.Unlock()
	if w := wide[wideKey{uint64(st.Dev), st.Ino}]; w != nil {
		st.Mode = st.Mode&^0o7777 | w.saved
	}
}

// widenAt is widenFd for the entry name of the dir open as dirfd (never followed);
// the dir itself is made u+x first if it lacks that.
func widenAt(dirfd int, name string) func() {
	if !unprivileged {
		return nop
	}
	// The dir is made u+x if it lacks it, and a widening of it by another
	// reader of this process, which may be what lets the name be found, is
	// joined: either stays until the caller is done.
	undoDir := widen(dirfd, 0o100, 0)
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
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
func OwnDirRWX(fd int) func() { return widen(fd, 0o700, 0) }
