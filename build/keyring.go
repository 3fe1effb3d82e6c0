package build

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// newSessionKeyring gives the calling thread a new, anonymous session keyring,
// which the command it then execs or forks inherits, as runc gives each
// container process (init and exec) its own: a container shared the caller's
// session keyring, and so read the keys the host's session had added and added
// its own there (found by a security review). Keyrings are per thread: the
// caller is locked to its thread and starts the command from it. A kernel
// without keys (ENOSYS) is no error. (Not covered: keyrings reached by uid,
// such as root's user keyring, which docker's default seccomp profile closes
// by refusing keyctl; layerfs has no seccomp filter.)
//
// keyctl refused (EPERM, EACCES: layerfs itself runs under a filter such as
// docker's default seccomp profile, in a nested container or a CI runner) is no
// error either: the filter holds for the command too, so no keyring is reachable
// from it. runc fails there unless told --no-new-keyring; every run failed.
func newSessionKeyring() error {
	_, _, e := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
	switch e {
	case 0, unix.ENOSYS, unix.EPERM, unix.EACCES:
		return nil
	}
	return fmt.Errorf("join a session keyring of its own: %w", e)
}
