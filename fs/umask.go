package fs

import (
	"context"
	"os"
	"strconv"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The umask of new entries is applied here, not by the kernel. The mount
// negotiates DONT_MASK: CREATE, MKDIR, MKNOD and TMPFILE then carry the mode the
// caller asked for, with the caller's umask beside it. As on a local filesystem with
// POSIX ACLs (POSIX.1e), the umask is ignored in a directory with a default ACL,
// which gives the new entry its permissions (its mask entry limiting the group
// class); elsewhere the entry gets mode &^ umask. The upper filesystem applies the
// ACL itself when the entry is made in the upper copy of the directory (copy-up
// brought the lower directory's xattrs, ACLs among them), so newMode tells the two
// apart:
//   - under a default ACL the entry is made with the mode as asked and its result
//     left alone: a chmod to the asked mode would overwrite the ACL's mask entry.
//     Only set-id bits the caller's chown cleared are put back;
//   - otherwise it is made with mode &^ umask and chmodded to it after the
//     chown, as this process's own umask must not reach it.
//
// go-fuse's bridge does not pass the umask on to node methods, so noOpendirFS
// records it by the request's cancel channel (the same in the raw request and in
// the node method's context, as for renames) for the request's duration.

// aclDefaultXattr is the xattr of a directory's default ACL; aclAccessXattr
// that of an entry's access ACL.
const (
	aclDefaultXattr = "system.posix_acl_default"
	aclAccessXattr  = "system.posix_acl_access"
)

// withUmask records umask for the request cancel; call the result at its end.
func (fsys *unionFS) withUmask(cancel <-chan struct{}, umask uint32) func() {
	fsys.umasks.Store(cancel, umask&0o777)
	return func() { fsys.umasks.Delete(cancel) }
}

// umask returns the umask of the request ctx; 0 if none was recorded.
func (fsys *unionFS) umask(ctx context.Context) uint32 {
	c, ok := ctx.(*fuse.Context)
	if !ok {
		return 0
	}
	if v, ok := fsys.umasks.Load(c.Cancel); ok {
		return v.(uint32)
	}
	return 0
}

// newMode returns the permission bits (with set-id and sticky bits) to make an
// entry with in the upper dir dfd for the request ctx, which asked for mode, and
// whether dfd has a default ACL (then the entry's mode is the upper filesystem's
// to set).
func (fsys *unionFS) newMode(ctx context.Context, dfd int, mode uint32) (perm uint32, acl bool) {
	perm = mode & 0o7777
	if _, err := unix.Fgetxattr(dfd, aclDefaultXattr, nil); err == nil && !fsys.noACL {
		return perm, true
	}
	return perm &^ fsys.umask(ctx), false
}

// modeAfterChown returns the mode to set on the new entry open as fd after its
// chown, which clears set-id bits: perm, or for an entry made under a default ACL
// (acl) the mode the upper filesystem gave it. ok is false if there is none to
// set.
func modeAfterChown(fd int, perm uint32, acl bool) (mode uint32, ok bool) {
	if !acl {
		return perm, true
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, false
	}
	return st.Mode & 0o7777, true
}

// processUmask returns this process's umask, read from /proc/self/status (a
// read that, unlike umask(2), changes nothing), or 0o777 if it cannot be read.
func processUmask() uint32 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o777
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m) & 0o777
			}
		}
	}
	return 0o777
}
