package build

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// device is a node of the minimal /dev.
type device struct {
	name         string
	major, minor uint32
}

var devices = []device{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
	{"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// setupRootfs prepares the container's mount tree (in its new mount namespace)
// and pivots into it. Every path inside the rootfs is resolved in it, so an image
// whose /proc or /dev is a symlink to a host path mounts nothing outside.
func setupRootfs(spec *ProcessSpec) error {
	// Nothing we mount may propagate back to the host, nor what the host
	// mounts later into the container (docker's binds are rprivate): a mount
	// that appeared under a bind's source after this setup would lack the nodev
	// and read-only flags given below, and with CAP_MKNOD a node made there
	// would open a host device (found by a review, as a slave tree).
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a private mount: %w", err)
	}
	root := spec.Rootfs
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", root, err)
	}
	rfd, err := openRootDir(root)
	if err != nil {
		return err
	}
	defer rfd.Close()
	// The image's setuid programs work in the container as in docker's: the
	// union mount is nosuid for the host (fs.Options.Flags), this bind of it in
	// the container's own mount namespace is not. Capabilities still bound what
	// they get (caps.go); nodev stays, all the way down: a container may make
	// device nodes (CAP_MKNOD, as docker's), and with no device cgroup here
	// none of its writable mounts may open one (nodevUnlessPrivileged).
	if !spec.Privileged {
		if err := unix.MountSetattr(int(rfd.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV}); err != nil && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("make the container's root nodev: %w", err)
		}
	}
	clr := uint64(unix.MOUNT_ATTR_NOSUID)
	if spec.Privileged { // as docker's: its device nodes open
		clr |= unix.MOUNT_ATTR_NODEV
	}
	if err := unix.MountSetattr(int(rfd.Fd()), "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_clr: clr}); err != nil && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("allow setuid in the container: %w", err)
	}

	if err := mountIn(rfd, "/proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := setupDev(rfd, spec); err != nil {
		return err
	}
	sysFlags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if !spec.Privileged { // docker's privileged container has a writable /sys
		sysFlags |= unix.MS_RDONLY
	}
	if err := mountIn(rfd, "/sys", "sysfs", "sysfs", sysFlags, ""); err != nil {
		// sysfs may be refused (e.g. in a user namespace): a read-only bind of the host's.
		if err := bindIn(rfd, Bind{Source: "/sys", Target: "/sys", ReadOnly: true}); err != nil {
			return err
		}
	}
	for _, b := range spec.Binds {
		b = nodevUnlessPrivileged(b, spec.Privileged)
		if b.Tmpfs {
			if err := tmpfsIn(rfd, b); err != nil {
				return err
			}
			continue
		}
		if err := bindIn(rfd, b); err != nil {
			return err
		}
	}
	if err := mountSecrets(rfd, spec); err != nil {
		return err
	}
	if spec.NoNetwork {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	if !spec.Privileged { // as docker's
		if err := maskProc(rfd); err != nil {
			return err
		}
	}
	if spec.ReadOnlyRootfs {
		// The root's own bind only: what is mounted on it keeps its mode.
		err := unix.MountSetattr(int(rfd.Fd()), "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
		if errors.Is(err, unix.ENOSYS) { // before Linux 5.12
			err = unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NODEV, "")
		}
		if err != nil {
			return fmt.Errorf("remount the root read-only: %w", err)
		}
	}
	return pivotRoot(root)
}

// docker's read-only and masked paths: what a container must not write (a
// core_pattern pipe runs a program as root on the host) or read.
var (
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	maskedPaths   = []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap"}
)

// maskProc makes readonlyPaths read-only (a bind of each on itself) and hides
// maskedPaths (/dev/null over a file, an empty read-only tmpfs over a dir),
// those that exist.
func maskProc(rfd *os.File) error {
	for _, p := range readonlyPaths {
		t, err := openat2InRoot(rfd, p, unix.O_PATH)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
		err = unix.Mount(fdPath(t), fdPath(t), "", unix.MS_BIND|unix.MS_REC, "")
		t.Close()
		if err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
		if t, err = openat2InRoot(rfd, p, unix.O_PATH); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
		err = unix.Mount("", fdPath(t), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		t.Close()
		if err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	// The container's own /dev/null (setupDev made it), never the host's: a
	// bind of that would let the container chmod and chown the host's node.
	null, err := openat2InRoot(rfd, "/dev/null", unix.O_PATH)
	if err != nil {
		return fmt.Errorf("mask: /dev/null: %w", err)
	}
	defer null.Close()
	for _, p := range maskedPaths {
		t, err := openat2InRoot(rfd, p, unix.O_PATH)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
		var st unix.Stat_t
		if err = unix.Fstat(int(t.Fd()), &st); err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = unix.Mount("tmpfs", fdPath(t), "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
			} else if err = unix.Mount(fdPath(null), fdPath(t), "", unix.MS_BIND, ""); err == nil {
				// Read-only too: where /dev/null is the host's node bound in
				// (no mknod), a chmod through the mask must not reach it.
				t.Close()
				if t, err = openat2InRoot(rfd, p, unix.O_PATH); err == nil {
					err = unix.Mount("", fdPath(t), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "")
				}
			}
		}
		if t != nil {
			t.Close()
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// nodevUnlessPrivileged makes b nodev unless the container is privileged: a
// tmpfs always (its "dev" option too), a bind unless its source is a character
// device (-v /dev/fuse:/dev/fuse opens; no node can be made in a file). The
// container may mknod (CAP_MKNOD, docker's default) and there is no device
// cgroup to stop a node it made from opening the host's device.
func nodevUnlessPrivileged(b Bind, privileged bool) Bind {
	if privileged || b.Device {
		return b
	}
	if b.Tmpfs {
		b.Options = append(slices.DeleteFunc(slices.Clone(b.Options), func(o string) bool { return o == "dev" }), "nodev")
		return b
	}
	if fi, err := os.Stat(b.Source); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		b.NoDev = true
	}
	return b
}

// tmpfsIn mounts a fresh tmpfs on b.Target (created if missing) inside the root,
// as buildkit mounts RUN --mount=type=tmpfs: nosuid, size if given; then b's
// options (run --tmpfs's).
func tmpfsIn(rfd *os.File, b Bind) error {
	flags, data, err := TmpfsOptions(b)
	if err != nil {
		return fmt.Errorf("tmpfs %s: %w", b.Target, err)
	}
	return mountIn(rfd, b.Target, "tmpfs", "tmpfs", flags, data)
}

// TmpfsOptions are the mount flags and data of b's tmpfs; an error names an
// option it does not know.
func TmpfsOptions(b Bind) (uintptr, string, error) {
	var flags uintptr = unix.MS_NOSUID
	if b.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	var data []string
	if b.Size > 0 {
		data = append(data, fmt.Sprintf("size=%d", b.Size))
	}
	if b.Mode != 0 {
		data = append(data, fmt.Sprintf("mode=%o", b.Mode))
	}
	set := map[string]uintptr{"noexec": unix.MS_NOEXEC, "nodev": unix.MS_NODEV, "nosuid": unix.MS_NOSUID,
		"noatime": unix.MS_NOATIME, "strictatime": unix.MS_STRICTATIME, "relatime": unix.MS_RELATIME, "ro": unix.MS_RDONLY}
	clear := map[string]uintptr{"exec": unix.MS_NOEXEC, "dev": unix.MS_NODEV, "suid": unix.MS_NOSUID,
		"atime": unix.MS_NOATIME, "rw": unix.MS_RDONLY}
	for _, o := range b.Options {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case set[o] != 0:
			flags |= set[o]
		case clear[o] != 0:
			flags &^= clear[o]
		case hasValue && (k == "uid" || k == "gid" || k == "nr_inodes"):
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				return 0, "", fmt.Errorf("option %s: not a number", o)
			}
			data = append(data, o)
		default:
			return 0, "", fmt.Errorf("unknown option %q", o)
		}
	}
	return flags, strings.Join(data, ","), nil
}

// mountSecrets writes the spec's secrets into a tmpfs on spec.SecretsDir (this
// mount namespace's only) and binds each onto its target, read-only.
func mountSecrets(rfd *os.File, spec *ProcessSpec) error {
	if len(spec.Secrets) == 0 {
		return nil
	}
	if err := unix.Mount("tmpfs", spec.SecretsDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=16m"); err != nil {
		return fmt.Errorf("mount secrets tmpfs: %w", err)
	}
	for i, s := range spec.Secrets {
		p := filepath.Join(spec.SecretsDir, strconv.Itoa(i))
		if err := os.WriteFile(p, s.Data, 0o600); err != nil {
			return fmt.Errorf("secret %s: %w", s.Target, err)
		}
		if err := os.Chown(p, s.UID, s.GID); err != nil {
			return fmt.Errorf("secret %s: %w", s.Target, err)
		}
		if err := os.Chmod(p, os.FileMode(s.Mode&0o7777)); err != nil {
			return fmt.Errorf("secret %s: %w", s.Target, err)
		}
		if err := bindIn(rfd, Bind{Source: p, Target: s.Target, ReadOnly: true}); err != nil {
			return err
		}
	}
	return nil
}

// loopbackUp brings up lo in a new network namespace (RUN --network=none has
// loopback, as in docker).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	return nil
}

// mountIn mounts a filesystem on dir (created if missing) inside the root.
func mountIn(rfd *os.File, dir, source, fstype string, flags uintptr, data string) error {
	d, err := mkdirAllInRoot(rfd, dir)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	defer d.Close()
	if err := unix.Mount(source, fdPath(d), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, dir, err)
	}
	return nil
}

// bindIn bind-mounts a host path on a target inside the root (a dir or a file to
// match the source, created if missing), read-only if asked.
func bindIn(rfd *os.File, b Bind) error {
	fi, err := os.Stat(b.Source)
	if err != nil {
		return fmt.Errorf("bind mount %s: %w", b.Source, err)
	}
	var t *os.File
	if fi.IsDir() {
		t, err = mkdirAllInRoot(rfd, b.Target)
	} else {
		t, err = mkfileInRoot(rfd, b.Target)
	}
	if err != nil {
		return fmt.Errorf("bind mount %s: %w", b.Target, err)
	}
	err = unix.Mount(b.Source, fdPath(t), "", unix.MS_BIND|unix.MS_REC, "")
	t.Close()
	if err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", b.Source, b.Target, err)
	}
	if !b.ReadOnly && !b.NoDev {
		return nil
	}
	// Reopen: the path now leads to the new mount, which is what we remount.
	t, err = openat2InRoot(rfd, b.Target, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("bind mount %s: %w", b.Target, err)
	}
	defer t.Close()
	// Read-only (nodev) all the way down, as docker's :ro is since 25.0: the
	// source's own submounts (a tmpfs in a build context) must not stay
	// writable.
	var attr uint64
	var flags uintptr = unix.MS_REMOUNT | unix.MS_BIND
	if b.ReadOnly {
		attr, flags = attr|unix.MOUNT_ATTR_RDONLY, flags|unix.MS_RDONLY
	}
	if b.NoDev {
		attr, flags = attr|unix.MOUNT_ATTR_NODEV, flags|unix.MS_NODEV
	}
	err = unix.MountSetattr(int(t.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attr})
	if errors.Is(err, unix.ENOSYS) { // before Linux 5.12: the top mount only
		err = unix.Mount("", fdPath(t), "", flags, "")
	}
	if err != nil {
		return fmt.Errorf("remount %s read-only or nodev: %w", b.Target, err)
	}
	return nil
}

// setupDev mounts a tmpfs on /dev with docker's minimal set of devices, devpts,
// /dev/shm, the usual symlinks, and the terminal as /dev/console.
func setupDev(rfd *os.File, spec *ProcessSpec) error {
	if err := mountIn(rfd, "/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	dev, err := openat2InRoot(rfd, "/dev", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open /dev: %w", err)
	}
	defer dev.Close()
	dfd := int(dev.Fd())
	for _, d := range devices {
		err := unix.Mknodat(dfd, d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor)))
		if err == nil && !spec.Privileged {
			// Each node is a bind of itself, which opens: the tmpfs under it
			// becomes nodev below, so a node the container makes there
			// does not (no device cgroup here).
			err = bindIn(rfd, Bind{Source: fdPath(dev) + "/" + d.name, Target: "/dev/" + d.name})
		} else if err != nil {
			// No mknod (a user namespace): bind the host's node instead.
			err = bindIn(rfd, Bind{Source: "/dev/" + d.name, Target: "/dev/" + d.name})
		}
		if err != nil {
			return err
		}
	}
	if spec.Privileged {
		copyHostDevices(dfd)
	}
	if !spec.Privileged {
		err := unix.MountSetattr(dfd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV})
		if errors.Is(err, unix.ENOSYS) { // before Linux 5.12
			err = unix.Mount("", fdPath(dev), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_STRICTATIME, "")
		}
		if err != nil {
			return fmt.Errorf("make /dev nodev: %w", err)
		}
	}
	if err := unix.Mkdirat(dfd, "pts", 0o755); err != nil {
		return fmt.Errorf("mkdir /dev/pts: %w", err)
	}
	if err := mountIn(rfd, "/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	if err := unix.Mkdirat(dfd, "shm", 0o1777); err != nil {
		return fmt.Errorf("mkdir /dev/shm: %w", err)
	}
	shm := spec.ShmSize
	if shm <= 0 {
		shm = 64 << 20
	}
	if err := mountIn(rfd, "/dev/shm", "shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", shm)); err != nil {
		return err
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"},
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], dfd, l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	if spec.Console {
		if err := setupConsole(rfd, spec); err != nil {
			return err
		}
	}
	return nil
}

// copyHostDevices makes the host's device nodes in the container's /dev (dfd),
// with their modes and owners, as docker's --privileged does (runc's
// HostDevices: /dev but pts, shm, mqueue, fd and the console). A node that
// cannot be made (no CAP_MKNOD in a user namespace) is left out.
func copyHostDevices(dfd int) {
	skip := map[string]bool{"pts": true, "shm": true, "mqueue": true, "fd": true, "console": true,
		".lxc": true, ".lxd-mounts": true, ".udev": true}
	filepath.WalkDir("/dev", func(p string, d iofs.DirEntry, err error) error {
		if err != nil || p == "/dev" {
			return nil
		}
		rel := strings.TrimPrefix(p, "/dev/")
		if skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if d.Type()&(iofs.ModeDevice|iofs.ModeCharDevice) == 0 || unix.Lstat(p, &st) != nil {
			return nil
		}
		if dir := filepath.Dir(rel); dir != "." {
			for i := 1; i <= len(dir); i++ {
				if i == len(dir) || dir[i] == '/' {
					unix.Mkdirat(dfd, dir[:i], 0o755)
				}
			}
		}
		if unix.Mknodat(dfd, rel, st.Mode, int(st.Rdev)) == nil {
			unix.Fchownat(dfd, rel, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
		}
		return nil
	})
}

// pivotRoot makes root the process's / and detaches the old root (runc's way,
// with no directory to create inside the image).
func pivotRoot(root string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", root, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("pivot_root: old root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("pivot_root: detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	return nil
}
