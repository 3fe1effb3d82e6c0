package build

// Capabilities: a container's processes get docker's default set, not every
// capability root has. The set limits the bounding set of the thread that
// execs the command (and so of everything the command starts): a root process
// gets exactly the set at exec, a setuid-root program no more than it.

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capNames maps capability names (without CAP_) to their numbers.
var capNames = map[string]int{
	"CHOWN": unix.CAP_CHOWN, "DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
	"FOWNER": unix.CAP_FOWNER, "FSETID": unix.CAP_FSETID, "KILL": unix.CAP_KILL, "SETGID": unix.CAP_SETGID,
	"SETUID": unix.CAP_SETUID, "SETPCAP": unix.CAP_SETPCAP, "LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE,
	"NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "NET_BROADCAST": unix.CAP_NET_BROADCAST,
	"NET_ADMIN": unix.CAP_NET_ADMIN, "NET_RAW": unix.CAP_NET_RAW, "IPC_LOCK": unix.CAP_IPC_LOCK,
	"IPC_OWNER": unix.CAP_IPC_OWNER, "SYS_MODULE": unix.CAP_SYS_MODULE, "SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"SYS_CHROOT": unix.CAP_SYS_CHROOT, "SYS_PTRACE": unix.CAP_SYS_PTRACE, "SYS_PACCT": unix.CAP_SYS_PACCT,
	"SYS_ADMIN": unix.CAP_SYS_ADMIN, "SYS_BOOT": unix.CAP_SYS_BOOT, "SYS_NICE": unix.CAP_SYS_NICE,
	"SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "SYS_TIME": unix.CAP_SYS_TIME, "SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG,
	"MKNOD": unix.CAP_MKNOD, "LEASE": unix.CAP_LEASE, "AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL, "SETFCAP": unix.CAP_SETFCAP, "MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"MAC_ADMIN": unix.CAP_MAC_ADMIN, "SYSLOG": unix.CAP_SYSLOG, "WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "AUDIT_READ": unix.CAP_AUDIT_READ, "PERFMON": unix.CAP_PERFMON,
	"BPF": unix.CAP_BPF, "CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// DefaultCaps is docker's (and buildkit's) default capability set, what a RUN
// step and a run container get. It has CAP_MKNOD, as docker's: layerfs has no
// device cgroup (docker's guard on what a node opens), so instead every mount a
// container can write to is nodev unless it is privileged (setupRootfs): a node
// it makes is kept (a package's /dev nodes land in the layer) but opens nothing.
var DefaultCaps = []string{
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
	"CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
}

// AllCaps stands for every capability (docker's --privileged, RUN
// --security=insecure).
const AllCaps = "ALL"

// normCap is name as CAP_NAME, or AllCaps; an error for a name Linux lacks.
func normCap(name string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == AllCaps {
		return AllCaps, nil
	}
	n = strings.TrimPrefix(n, "CAP_")
	if _, ok := capNames[n]; !ok {
		return "", fmt.Errorf("unknown capability: %q", name)
	}
	return "CAP_" + n, nil
}

// RunCaps is the set docker run's --privileged, --cap-add and --cap-drop make
// of DefaultCaps: the drops, then the adds ("ALL" in either means every
// capability), as docker applies them. The result is sorted; [AllCaps] for
// every capability.
func RunCaps(privileged bool, add, drop []string) ([]string, error) {
	if privileged {
		return []string{AllCaps}, nil
	}
	set := map[string]bool{}
	for _, c := range DefaultCaps {
		set[c] = true
	}
	for _, d := range drop {
		c, err := normCap(d)
		if err != nil {
			return nil, err
		}
		if c == AllCaps {
			set = map[string]bool{}
		}
		delete(set, c)
	}
	addAll := false
	for _, a := range add {
		c, err := normCap(a)
		if err != nil {
			return nil, err
		}
		if c == AllCaps {
			addAll = true
			continue
		}
		set[c] = true
	}
	if addAll { // docker: every capability but the dropped ones
		set = map[string]bool{}
		for n := range capNames {
			set["CAP_"+n] = true
		}
		for _, d := range drop {
			c, _ := normCap(d)
			delete(set, c)
		}
		if len(set) == len(capNames) {
			return []string{AllCaps}, nil
		}
	}
	out := []string{}
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// limitCaps makes caps (nil: DefaultCaps) the most the calling thread's future
// execs can have: the others leave its bounding set, its inheritable set keeps
// only caps, and its ambient set is emptied. The caller holds its OS thread
// (the bounding set is per thread) and execs, or forks, from it.
func limitCaps(caps []string) error {
	mask, all, err := capMask(caps)
	if err != nil || all {
		return err
	}
	for c := 0; c <= lastCap(); c++ {
		if mask.has(c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable &= mask[0]
	data[1].Inheritable &= mask[1]
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// capSet is a capability bit set, as capget(2)'s two 32-bit words.
type capSet [2]uint32

func (m *capSet) add(c int)     { m[c/32] |= 1 << (c % 32) }
func (m capSet) has(c int) bool { return m[c/32]&(1<<(c%32)) != 0 }

// capMask is caps (nil: DefaultCaps) as a set; all when caps is [AllCaps].
func capMask(caps []string) (mask capSet, all bool, err error) {
	if caps == nil {
		caps = DefaultCaps
	}
	for _, c := range caps {
		n, err := normCap(c)
		if err != nil {
			return mask, false, err
		}
		if n == AllCaps {
			return mask, true, nil
		}
		mask.add(capNames[strings.TrimPrefix(n, "CAP_")])
	}
	return mask, false, nil
}

// CanCapAllThreads reports whether this binary can change the capabilities of
// all of its threads (syscall.AllThreadsSyscall), which a cgo-linked Go binary
// cannot: build it with CGO_ENABLED=0 for that.
func CanCapAllThreads() bool {
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_GETPID, 0, 0, 0)
	return errno != syscall.ENOTSUP
}

// capAllThreads gives every thread of this process at most caps (nil:
// DefaultCaps): the bounding, permitted, effective and inheritable sets, as the
// container's command has them, but for extra, kept permitted and effective
// (not in the bounding set: an exec does not keep them). It is for --init's
// init: before it forks the command (with the setuid and setgid caps the fork
// needs to take the user's credentials) and once more after, so it never holds
// what the container lacks. The bounding set is cut only with bounding: it needs
// CAP_SETPCAP, which the second pass may no longer have (the kernel refuses even
// the drop of a capability already gone). ENOTSUP in a cgo-linked binary.
func capAllThreads(caps []string, bounding bool, extra ...int) error {
	mask, all, err := capMask(caps)
	if err != nil || all {
		return err
	}
	for c := 0; bounding && c <= lastCap(); c++ {
		if mask.has(c) {
			continue
		}
		_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if errno != 0 && errno != syscall.EINVAL {
			return fmt.Errorf("drop capability %d on all threads: %w", c, errno)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	pe := mask
	for _, c := range extra {
		pe.add(c)
	}
	for i := range data {
		data[i].Permitted &= pe[i]
		data[i].Effective &= pe[i]
		data[i].Inheritable &= mask[i]
	}
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return fmt.Errorf("capset on all threads: %w", errno)
	}
	return nil
}

// lastCap is the highest capability this kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}
