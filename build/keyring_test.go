package build

import (
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSessionKeyringRefused: where keyctl is refused (layerfs under docker's
// default seccomp profile, which answers EPERM), a container still starts: the
// filter holds for its command too, so no keyring is reachable anyway. Every
// run, exec and RUN failed there with exit 125 (a code review). The filter is
// installed on a thread of the test's own, which ends with it.
func TestSessionKeyringRefused(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("a seccomp filter without no_new_privs needs root")
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the filtered thread ends with this goroutine
		filter := []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: uint32(unix.SYS_KEYCTL)},
			{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
			{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		}
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
			done <- err
			return
		}
		if _, _, e := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0); e != unix.EPERM {
			t.Errorf("keyctl under the filter: %v, want EPERM", e)
		}
		done <- newSessionKeyring()
	}()
	if err := <-done; err != nil {
		t.Errorf("newSessionKeyring with keyctl refused: %v, want no error", err)
	}
}
