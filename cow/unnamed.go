package cow

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CopyUnnamedSpecial is CopyUnnamed for a fifo, socket or device node open as src
// (an O_PATH fd: such files are never opened for data here): it makes one of the
// same type and device number under a temp name in the directory open as work,
// unlinks it at once, gives it src's owner, user-visible xattrs, mode and times,
// and returns it as an O_PATH fd, which the caller closes. xattrs are private ones
// to set on it, best effort (as CopyUp does for special files). Its attributes
// change through the fd's /proc/self/fd link from then on; it has no data, and it
// cannot be linked in again (it is no O_TMPFILE file), nor need it be: the kernel
// refuses to link an inode whose last name went away.
func CopyUnnamedSpecial(src, work int, xattrs map[string][]byte) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return -1, &os.PathError{Op: "copy-up stat", Path: "(unlinked file)", Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
	default:
		return -1, &os.PathError{Op: "copy-up", Path: "(unlinked file)", Err: unix.EINVAL}
	}
	tmp := fmt.Sprintf("copyup-%d-%d", os.Getpid(), tmpSeq.Add(1))
	if err := unix.Mknodat(work, tmp, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
		return -1, &os.PathError{Op: "copy-up mknod", Path: tmp, Err: err}
	}
	dst, err := unix.Openat(work, tmp, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if uerr := unix.Unlinkat(work, tmp, 0); err == nil && uerr != nil {
		unix.Close(dst)
		err = uerr
	}
	if err != nil {
		return -1, &os.PathError{Op: "copy-up", Path: tmp, Err: err}
	}
	fail := func(err error) (int, error) {
		unix.Close(dst)
		return -1, fmt.Errorf("copy-up of an unlinked file: %w", err)
	}
	p := procFdPath(dst)
	if err := unix.Fchownat(dst, "", int(st.Uid), int(st.Gid), unix.AT_EMPTY_PATH); err != nil && !errors.Is(err, unix.EPERM) {
		return fail(err)
	}
	if err := copyXattrs(procXattrs(dst), procXattrs(src)); err != nil {
		return fail(err)
	}
	for k, v := range xattrs {
		_ = unix.Setxattr(p, k, v, 0) // best effort (user.* is refused here)
	}
	if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
		return fail(err)
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, st.Mtim}, 0); err != nil {
		return fail(err)
	}
	return dst, nil
}
