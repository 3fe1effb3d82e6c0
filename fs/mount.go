package fs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// Options describe one union mount.
type Options struct {
	Lowers   []string   // read-only layer dirs, top first (either whiteout encoding is read)
	Upper    string     // "" with ReadOnly
	Work     string     // scratch dir on the same filesystem as Upper
	Format   cow.Format // whiteout encoding written into Upper
	ReadOnly bool
	Debug    bool
	FsName   string // shown in /proc/mounts
	// Passthrough sends every open of a regular file to this process and lets the
	// kernel pass reads and writes through to the backing file (root, Linux 6.9+).
	// Unset, opens stay in the kernel (FUSE no_open): opening cached files costs no
	// round trip and file data is served by this process and kept in the kernel's
	// page cache. See noopen.go and fileHandle for the trade-off.
	Passthrough bool
	// Flags are mount flags for the kernel's side of the mount: "suid", "nosuid",
	// "dev", "nodev", "exec", "noexec", "noatime", "atime" (later ones win). The
	// default is nosuid,nodev, as fusermount's; suid and dev are for root only
	// (others are dropped), noatime for a direct mount by root.
	Flags []string
	// InodeMaps keep the inode numbers of lower layers made by commit --rebase
	// (KeepInodes); a map that cannot be used is logged and left out.
	InodeMaps InodeMaps
	// IDs shifts owners between the dirs and the mount (fuse-overlayfs's
	// uidmapping= and squash_*); nil shows them as stored.
	IDs *IDMapping
	// NoACL turns POSIX ACLs off (fuse-overlayfs's noacl): the kernel checks
	// the mode bits alone, and a new entry takes the umask even under a
	// directory's default ACL.
	NoACL bool
	// XattrPermissions is fuse-overlayfs's xattr_permissions (xperm.go): 1 or
	// 2 show owners and modes from the layers' override xattrs and keep
	// chmod, chown and new entries' owners in the upper's; 0 (the default)
	// shows them as stored.
	XattrPermissions int
	// NoXattrs turns extended attributes off (fuse-overlayfs's noxattrs=1):
	// every xattr call fails with ENOSYS, which the kernel remembers and
	// answers EOPNOTSUPP from then on.
	NoXattrs bool
}

// MountPoint is a live union mount. (The contract named both the type and the
// function Mount, which Go does not allow; the function keeps the name.)
type MountPoint struct {
	dir    string
	server *fuse.Server
	fs     *unionFS
	closed sync.Once
	paused atomic.Bool // between a successful Pause and Resume
	dev    uint64      // the mount's st_dev, to find its files in other processes
	mntID  string      // its mount ID in this namespace's mountinfo ("": unknown)
	cont   func()      // continues the writers a Pause stopped
}

// Mount mounts the union of opts at mountpoint and returns once the kernel serves
// it, served by goroutines of this process until unmounted; call Wait to block
// until then and release its fds. Mounts are independent of each other. The
// lowers must not change while mounted; the upper and work dirs are the mount's
// alone (read the upper only between Pause and Resume).
func Mount(mountpoint string, opts Options) (*MountPoint, error) {
	upper, work := opts.Upper, opts.Work
	if opts.ReadOnly {
		upper, work = "", ""
	} else if upper == "" {
		return nil, fmt.Errorf("mount %s: an upper dir is needed unless read-only", mountpoint)
	}
	// (The kernel and fusermount3 mount on a file too, but the mount then
	// fails go-fuse's check, and was left behind, dead.)
	if !strings.HasPrefix(mountpoint, "/dev/fd/") {
		if fi, err := os.Stat(mountpoint); err == nil && !fi.IsDir() {
			return nil, fmt.Errorf("mount %s: not a directory", mountpoint)
		}
	}
	if n, most := len(opts.Lowers), MaxLayers(); n > most {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, TooManyLayers(n, most))
	}
	if opts.XattrPermissions < 0 || opts.XattrPermissions > 2 {
		return nil, fmt.Errorf("mount %s: invalid value for xattr_permissions: %d", mountpoint, opts.XattrPermissions)
	}
	s, err := openStack(opts.Lowers, upper, work, opts.Format)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	if err := s.setOverrides(opts.XattrPermissions); err != nil {
		s.close()
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	for _, err := range s.loadInoMaps(opts.InodeMaps) {
		log.Printf("layerfs: mount %s: %v (its layer's own inode numbers are used)", mountpoint, err)
	}
	openDevNull()
	fsys := &unionFS{debug: opts.Debug, noOpen: !opts.Passthrough, ids: opts.IDs, noACL: opts.NoACL, procUmask: processUmask(),
		xperm: opts.XattrPermissions, overrideNames: overrideWriteNames(opts.XattrPermissions), noXattrs: opts.NoXattrs}
	fsys.relist.delay = relistDelay
	fsys.stack.Store(s)
	fsys.root = fsys.newNode()
	long := time.Duration(longTimeout) * time.Second
	name := opts.FsName
	if name == "" {
		name = "layerfs"
	}
	mo := fuse.MountOptions{
		AllowOther: os.Geteuid() == 0,
		Options:    []string{"default_permissions"},
		FsName:     name,
		Name:       "layerfs",
		// Locks stay in the kernel (no POSIX_LOCKS/FLOCK_LOCKS), with a local
		// filesystem's semantics, in both modes: one mount is the only path to
		// its files. Taken here, they were OFD locks on each open's own fd of
		// the layer's or the upper's file: a lock on a read-only open of a
		// layer's file never met one on the upper copy, and a process's own
		// locks conflicted with each other.
		EnableLocks:          false,
		EnableSymlinkCaching: true,
		DirectMount:          true,
		MaxWrite:             maxWrite,
		MaxReadAhead:         1 << 20,
		Debug:                opts.Debug,
		ReaderSpawnDelay:     readerSpawnDelay,
	}
	mo.Options = append(mo.Options, fmt.Sprintf("max_read=%d", maxRead))
	if opts.ReadOnly {
		mo.Options = append(mo.Options, "ro")
	}
	mo.Options, mo.DirectMountFlags = mountFlags(mo.Options, opts.Flags, os.Geteuid() == 0)
	// This process clears set-id bits for the kernel (killpriv.go).
	mo.ExtraCapabilities |= fuse.CAP_HANDLE_KILLPRIV_V2
	// And applies the umask of new entries, which a default ACL overrides (umask.go).
	mo.ExtraCapabilities |= fuse.CAP_DONT_MASK
	mo.EnableAcl = !opts.NoACL
	if opts.Passthrough {
		// O_TRUNC comes with the OPEN, whose copy-up then takes no data; without
		// it the kernel sends the OPEN without O_TRUNC and a truncate after it,
		// so a file too big for the upper's free space could not be emptied.
		// Not in no-open mode: no OPEN is sent there, and the kernel would take
		// the truncate as done (O_TRUNC arrives as a SETATTR instead).
		mo.ExtraCapabilities |= fuse.CAP_ATOMIC_O_TRUNC
	}
	if !opts.Passthrough {
		// Every change of file data passes through the kernel's page cache
		// here (writes, truncates, hole punches, copy_file_range) or is
		// notified (Rebase): no need for the kernel to re-check attributes
		// before reads to catch changes behind its back (AUTO_INVAL_DATA),
		// which after each write cost a GETATTR, and then a GETXATTR of
		// security.capability before the next write (the refresh clears
		// S_NOSEC). Passthrough writes bypass it, so that mode keeps it.
		mo.ExplicitDataCacheControl = true
	}
	fo := &fusefs.Options{
		MountOptions:    mo,
		EntryTimeout:    &long,
		AttrTimeout:     &long,
		NegativeTimeout: &long,
		NullPermissions: true,
		RootStableAttr:  &fusefs.StableAttr{Ino: 1},
	}
	if opts.Debug {
		fo.Logger = log.Default()
	}
	server, err := mountNoOpendir(mountpoint, fsys.root, fo)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("mount %s: %w", mountpoint, fusermountError(err))
	}
	fsys.passthrough.Store(opts.Passthrough && os.Geteuid() == 0 && server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0)
	m := &MountPoint{dir: mountpoint, server: server, fs: fsys}
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err == nil {
		m.dev = st.Dev
		fsys.dev.Store(st.Dev)
		m.mntID = mountIDOf(st.Dev)
		var sfs unix.Statfs_t
		if unix.Statfs(mountpoint, &sfs) == nil && sfs.Type == unix.FUSE_SUPER_MAGIC {
			// Not for a /dev/fd/N mountpoint: stat sees /dev/fuse there.
			raiseReadahead(st.Dev)
			if !opts.ReadOnly { // (read-only mounts keep atimes: nothing is dropped)
				rf := &refresher{dir: mountpoint, dev: st.Dev}
				if abs, err := filepath.Abs(mountpoint); err == nil {
					rf.dir = abs
				}
				fsys.relist.mu.Lock()
				fsys.relist.refill = rf.refresh
				fsys.relist.restat = rf.restat
				fsys.relist.own = rf.own
				fsys.relist.idle = rf.idle
				fsys.relist.mu.Unlock()
			}
		}
	}
	return m, nil
}

// fusermountError rewords go-fuse's "fusermount exited with code 256\n" (a
// wait status, and a newline) as fusermount3's exit status. Why it failed is
// what it printed on this process's stderr (a user's mount goes through it).
func fusermountError(err error) error {
	var code int
	if _, serr := fmt.Sscanf(err.Error(), "fusermount exited with code %d", &code); serr != nil {
		return err
	}
	st := syscall.WaitStatus(code)
	if st.Signaled() {
		return fmt.Errorf("fusermount3: %v", st.Signal())
	}
	return fmt.Errorf("fusermount3: exit status %d", st.ExitStatus())
}

// maxRead is the largest READ (the max_read mount option). A READ reply is
// spliced from the file through a pipe that must hold it, its header and a page
// (go-fuse), and pipes grow to 1 MiB (pipe-max-size): READs of 1 MiB (cat(1)
// and cp(1) advise sequential reads, which doubles the readahead to 1 MiB) were
// copied instead, and go-fuse logged each ("trySplice: ... max pipe size"), a
// line per MiB read in the server's log. The time was the same either way
// (FINDINGS 5).
//
// maxWrite is the largest WRITE. No pipe limits it, and at maxRead a write(2)
// of 1 MiB (dd bs=1M) came as two WRITEs, of 1016 KiB and 8 KiB: a 1 GiB dd
// took 1.09x the time (8 runs interleaved). go-fuse sets max_read to
// MaxWrite unless Options names one (third_party/README.md).
const (
	maxRead  = 1<<20 - 8<<10
	maxWrite = 1 << 20
)

// readerSpawnDelay is how long a request may be handled with no other reader
// waiting on /dev/fuse before go-fuse starts one (third_party/README.md). Each
// request is handled on the thread that read it; upstream go-fuse starts a new
// reader for every request of a serial workload instead, and the Go runtime's
// thread hand-offs around those blocking reads cost more than the handlers on a
// host where a context switch is dear (untar 0.56x-0.61x, rm 0.59x-0.82x, compile
// 0.75x of the time with it: bench/README, "Session 24"). Requests that wait in
// the kernel when one is read still start a reader at once; the delay only caps
// how long a slow request (a copy-up, an fsync) holds up a request that came
// after it, and one that waits for another request to be answered.
const readerSpawnDelay = time.Millisecond

// readaheadKB is the readahead set on the mount's bdi. The kernel takes the smaller
// of the server's max_readahead and the bdi's, which starts at 128 KiB, so every
// 128 KiB of a file read through this process (no-open mode) was a READ. 512 KiB
// made the first read of a 1 GiB file whose layer pages were cached (a new mount
// over layers just read) 1.3x faster, and measured neutral on cold and small-file
// reads (bench/FINDINGS.md 5). Larger is no better.
const readaheadKB = 512

// raiseReadahead raises the readahead of the bdi of the mount's device dev to
// readaheadKB. Only root may; others keep the default.
func raiseReadahead(dev uint64) {
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(dev), unix.Minor(dev))
	b, err := os.ReadFile(p)
	if err != nil {
		return
	}
	var cur int
	if _, err := fmt.Sscan(string(b), &cur); err == nil && cur >= readaheadKB {
		return
	}
	_ = os.WriteFile(p, []byte(fmt.Sprint(readaheadKB)), 0)
}

// Wait blocks until the mount is unmounted (by Unmount, fusermount -u or umount),
// then releases the layer fds. Safe to call from several goroutines.
func (m *MountPoint) Wait() {
	m.server.Wait()
	m.closed.Do(func() {
		dataFds.dropFS(m.fs)
		m.fs.stack.Load().close()
		m.fs.retiredMu.Lock()
		for _, s := range m.fs.retired {
			s.close()
		}
		m.fs.retiredMu.Unlock()
	})
}

// Unmount unmounts; it fails (EBUSY) while the mount is in use, and may then be
// retried. After it succeeds, Wait returns.
func (m *MountPoint) Unmount() error {
	done := make(chan error, 1)
	go func() {
		// go-fuse gives up on a busy mount after about 0.3 s; a file closed
		// just before (its last reference dropped by the kernel a little
		// later, on a loaded machine) keeps the mount busy longer than that.
		// fusermount3 words the EBUSY in its message, so any failure while
		// the mount is still here is tried again, for a while.
		deadline := time.Now().Add(busyUnmountWait)
		err := m.server.Unmount()
		for err != nil && time.Now().Before(deadline) && m.mountedHere() {
			time.Sleep(50 * time.Millisecond)
			err = m.server.Unmount()
		}
		done <- err
	}()
	// go-fuse's Unmount returns when the kernel ends the connection, at the
	// unmount, unless another mount namespace holds a copy of the mount (a
	// process that ran unshare -m, a systemd unit with PrivateTmp): then it waits
	// for that namespace to end, and `layerfs umount` failed after 30 s with the
	// container still marked mounted. Once the mount is gone from this namespace,
	// the connection is aborted (the copies fail with ENOTCONN): a second server
	// must never serve the same upper dir.
	start := time.Now()
	tick := time.NewTicker(heldUnmountPoll)
	defer tick.Stop()
	for aborted := false; ; {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("unmount %s: %w", m.dir, err)
			}
			return nil
		case <-tick.C:
			if aborted || time.Since(start) < heldUnmountGrace || m.mountedHere() {
				continue
			}
			aborted = true
			if err := AbortConnection(m.dev); err != nil {
				log.Printf("unmount %s: another mount namespace holds the mount, and %v", m.dir, err)
			}
		}
	}
}

// heldUnmountGrace is how long Unmount waits for the connection to end after the
// unmount before it takes the mount to be held by another namespace.
const (
	heldUnmountGrace = time.Second
	heldUnmountPoll  = 100 * time.Millisecond
	// busyUnmountWait is how long Unmount tries again while the mount is busy.
	busyUnmountWait = 3 * time.Second
)

// mountedHere reports whether this process's mount namespace still has m's own
// mount (read from mountinfo: a stat of the mountpoint would be a request to this
// very server). A bind copy of it (mount --bind of the mountpoint) is not m's
// mount: after the unmount it held the connection, and umount waited for good.
func (m *MountPoint) mountedHere() bool {
	if m.dev == 0 || strings.HasPrefix(m.dir, "/dev/fd/") {
		return true
	}
	ids, err := mountIDs(m.dev)
	if err != nil {
		return true
	}
	return len(ids) > 0 && (m.mntID == "" || slices.Contains(ids, m.mntID))
}

// mountIDOf is the mount ID of the mount of device dev just made: the last in
// this namespace's mountinfo ("" if none).
func mountIDOf(dev uint64) string {
	if ids, _ := mountIDs(dev); len(ids) > 0 {
		return ids[len(ids)-1]
	}
	return ""
}

// mountIDs lists the IDs of the mounts of device dev in this process's mount
// namespace, in mountinfo's order.
func mountIDs(dev uint64) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	want := fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	var ids []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == want {
			ids = append(ids, f[0])
		}
	}
	return ids, nil
}

// Pause is a write barrier: it returns once every in-flight mutating operation has
// finished, and from then on every mutating operation (create, write through this
// process, setattr, rename, unlink, xattrs, opens for writing) blocks at entry until
// Resume; reads go on. In passthrough mode, writes the kernel passes through to an
// already open file never reach this process: Pause stops (SIGSTOP) the processes
// that hold such files open for writing, except this one and the PIDs in skip (the
// caller that asked for the pause), and Resume continues them, as docker pause
// freezes a container (ptwrite.go); it stops them before it takes the barrier, as
// one that waits at the barrier cannot stop, and tries again a few times if one
// appeared meanwhile that does not stop (pause). Pause fails if ctx ends first.
func (m *MountPoint) Pause(ctx context.Context, skip ...int) error {
	sk := map[int]bool{}
	for _, p := range skip {
		sk[p] = true
	}
	var err error
	for attempt := 0; attempt < pauseAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (after %d attempts)", err, attempt)
			case <-time.After(time.Duration(attempt) * pauseSettle / 4):
			}
		}
		var retry bool
		if retry, err = m.pause(ctx, sk, attempt); err == nil {
			m.paused.Store(true)
			return nil
		} else if !retry {
			return err
		}
	}
	return fmt.Errorf("%w (after %d attempts)", err, pauseAttempts)
}

// pauseAttempts bounds the tries of Pause; pauseSettle bounds the wait, under the
// barrier, for writers that appeared since the writers were first stopped.
const (
	pauseAttempts   = 5
	pauseSettle     = 200 * time.Millisecond
	writebackSettle = 250 * time.Millisecond
)

// pauseHook, when set (tests), runs in each try of Pause between stopping the
// writers and taking the barrier, with the number of the try.
var pauseHook atomic.Pointer[func(attempt int)]

// pause is one try of Pause. Every process with a file of the mount open for
// writing is stopped, as docker pause freezes a container: passthrough writes
// never reach the barrier, and the kernel splits a write(2) past max_write into
// several WRITE requests, between which the barrier alone could fall (a commit
// stored one 4 MiB pwrite half old, half new; found by a review). A process
// stops only at the end of its system call. A process cannot stop inside a FUSE
// request (the kernel waits for the answer in a sleep SIGSTOP does not
// interrupt), and under the barrier a request that changes something waits for
// Resume: a writer that sends one then can never stop. So the writers are
// stopped first, without the barrier (one inside a request finishes it and
// stops); then the mount's dirty pages (shared writable mappings) are written
// back, which needs the server's WRITEs to pass (they sat in the kernel's page
// cache for up to 30 s, and a commit left them out); then the barrier is taken,
// then writers that appeared meanwhile (a process forked or that opened a file
// for writing before the barrier) are stopped, for at most pauseSettle. If one
// does not stop (it may wait at the barrier), everything is undone and retry
// says to try again.
func (m *MountPoint) pause(ctx context.Context, skip map[int]bool, attempt int) (retry bool, err error) {
	fr := newFreezer(m.dev, skip)
	if err := fr.stop(ctx, nil, 0); err != nil {
		fr.cont()
		return false, fmt.Errorf("stop writers: %w", err)
	}
	if err := m.syncfs(ctx); err != nil {
		fr.cont()
		return false, err
	}
	if h := pauseHook.Load(); h != nil {
		(*h)(attempt)
	}
	done := make(chan struct{})
	go func() {
		m.fs.barrier.Lock()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		go func() { <-done; m.fs.barrier.Unlock() }()
		fr.cont()
		return false, ctx.Err()
	}
	err = fr.stop(ctx, nil, pauseSettle)
	if err != nil {
		m.fs.barrier.Unlock()
		fr.cont()
		return ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded), fmt.Errorf("stop writers: %w", err)
	}
	m.cont = fr.cont
	return false, nil
}

// Sync writes back the mount's dirty pages through the server (syncfs, then
// the wait for the WRITEs to be answered), so the upper dir holds what was
// stored into shared writable mappings; Pause does it itself. For a commit
// that does not pause. Not while this process holds a Pause.
func (m *MountPoint) Sync(ctx context.Context) error { return m.syncfs(ctx) }

// syncfs writes back the mount's dirty pages (a shared writable mapping's
// stores wait in the kernel's page cache until writeback) through the server,
// as WRITE requests, so the upper dir has them. Not under the barrier: those
// WRITEs would wait for it. syncfs(2) returns once the kernel has sent them,
// not once they are answered (FUSE has no sync_fs of its own), so it then waits,
// for at most writebackSettle, until the connection has no request in flight
// (fusectl's "waiting"): a WRITE still in flight would wait at the barrier and
// miss the commit (one in five did; Linux 6.18 marks FUSE mappings so that
// sync does not wait for their writeback, lest a hung server hang sync).
func (m *MountPoint) syncfs(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		fd, err := unix.Open(m.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Syncfs(fd)
			unix.Close(fd)
		}
		if err == nil {
			waitAnswered(m.dev, writebackSettle)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("write back the mount's dirty pages: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fusectlDir is where fusectl, the FUSE connections' control filesystem, is
// mounted (by systemd; not on every machine: not in CI's).
const fusectlDir = "/sys/fs/fuse/connections"

// waitAnswered waits, for at most limit, until the FUSE connection of the
// mount on dev has no request in flight (fusectl's count of waiting requests).
// Without fusectl it returns at once.
func waitAnswered(dev uint64, limit time.Duration) {
	dir, err := openFusectl()
	if err != nil {
		return
	}
	defer unix.Close(dir)
	name := fmt.Sprintf("%d/waiting", unix.Major(dev)<<20|unix.Minor(dev))
	b := make([]byte, 32)
	for start := time.Now(); time.Since(start) < limit; time.Sleep(time.Millisecond) {
		// fusectl's files cannot seek: opened afresh for each read
		fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		n, err := unix.Read(fd, b)
		unix.Close(fd)
		if err != nil || string(b[:max(n, 0)]) == "0\n" {
			return
		}
	}
}

// openFusectl opens fusectl's root: where it is mounted, there; else an
// instance of it mounted nowhere (fsmount(2); CAP_SYS_ADMIN), which goes away
// with the returned fd, so nothing on the host changes.
func openFusectl() (int, error) {
	if fd, err := unix.Open(fusectlDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		var st unix.Statfs_t
		if unix.Fstatfs(fd, &st) == nil && st.Type == fusectlMagic {
			return fd, nil
		}
		unix.Close(fd) // the empty dir of sysfs: fusectl is not mounted
	}
	fsfd, err := unix.Fsopen("fusectl", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, err
	}
	return unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
}

// AbortConnection aborts the FUSE connection of the mount on dev (fusectl's
// abort): every request waiting on it fails with ENOTCONN. For a server that
// died with one of its threads waiting on a request to its own mount: such a
// process keeps /dev/fuse open, and so itself and the mount hung, for ever.
func AbortConnection(dev uint64) error {
	dir, err := openFusectl()
	if err != nil {
		return fmt.Errorf("abort the FUSE connection: fusectl: %w", err)
	}
	defer unix.Close(dir)
	fd, err := unix.Openat(dir, fmt.Sprintf("%d/abort", unix.Major(dev)<<20|unix.Minor(dev)), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("abort the FUSE connection: %w", err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte("1")); err != nil {
		return fmt.Errorf("abort the FUSE connection: %w", err)
	}
	return nil
}

// fusectlMagic is fusectl's statfs f_type (FUSE_CTL_SUPER_MAGIC).
const fusectlMagic = 0x65735543

// Resume ends a Pause. It must follow exactly one successful Pause.
func (m *MountPoint) Resume() {
	m.paused.Store(false)
	if m.cont != nil {
		m.cont()
		m.cont = nil
	}
	m.fs.barrier.Unlock()
}

// Rebase swaps the layer stack in place: lowers (top first) and upper replace the
// current ones (typically after a commit made the old upper's content a new lower).
// Cached resolutions are dropped, the kernel's attributes and pages too, and its
// entries of names that are not the node they were (see invalidate); negative
// entries stay cached, so the merged view should be the same before and after (as
// after a commit). maps keeps the inode numbers of lowers made
// from the old upper (KeepInodes); without one, the files of such a lower get the
// layer's own numbers. Files open across the Rebase follow: the next write through
// them copies the file up into the new upper (the old upper may be deleted), except
// passthrough opens, whose writes the kernel sends to the old file itself. Called
// while paused (the usual commit: Pause, diff, KeepInodes, Rebase, Resume) it runs
// under that pause; otherwise it takes the write barrier itself. Not concurrently
// with Pause/Resume.
func (m *MountPoint) Rebase(lowers []string, upper string, maps InodeMaps) error {
	if !m.paused.Load() {
		m.fs.barrier.Lock()
		defer m.fs.barrier.Unlock()
	}
	return m.rebase(lowers, upper, maps)
}

// RebasePaused is Rebase for a caller that holds the write barrier (between Pause
// and Resume), as commit --rebase does: pause, read the upper dir, store the layer,
// swap the stack, resume. Writers held by the pause then land in the new upper.
func (m *MountPoint) RebasePaused(lowers []string, upper string, maps InodeMaps) error {
	return m.rebase(lowers, upper, maps)
}

func (m *MountPoint) rebase(lowers []string, upper string, maps InodeMaps) error {
	old := m.fs.stack.Load()
	work := ""
	if old.work >= 0 {
		work = fmt.Sprintf("/proc/self/fd/%d", old.work)
		p, err := os.Readlink(work)
		if err == nil {
			work = p
		}
	}
	s, err := openStack(lowers, upper, work, old.format)
	if err != nil {
		return fmt.Errorf("rebase: %w", err)
	}
	if err := s.setOverrides(m.fs.xperm); err != nil {
		s.close()
		return fmt.Errorf("rebase: %w", err)
	}
	for _, err := range s.loadInoMaps(maps) {
		log.Printf("layerfs: rebase: %v (its layer's own inode numbers are used)", err)
	}
	s.shareFds(old)
	m.fs.stack.Store(s)
	m.fs.rebases.Add(1)
	m.fs.epoch.Add(1)
	m.fs.changes.Add(1)
	var pinned []*node
	m.fs.taintOpen(m.fs.root.EmbeddedInode(), &pinned)
	if len(pinned) > 0 {
		// Their fds are on the old upper's files too: closed once the node
		// is seen to have a name (not from here: that takes dirMu).
		go dataFds.releaseNamed(pinned)
	}
	m.fs.invalidateDirs(m.fs.root.EmbeddedInode())
	go m.fs.invalidate(m.fs.root.EmbeddedInode())
	// old is not closed: operations that loaded it may still run; its few fds
	// are released when the mount ends.
	m.fs.retiredMu.Lock()
	m.fs.retired = append(m.fs.retired, old)
	m.fs.retiredMu.Unlock()
	return nil
}

// taintOpen detaches every node from files of the old stack: a node with a live
// passthrough open is pinned (its kernel backing file belongs to the old stack), and
// no-open data fds are dropped so the next write copies up into the new upper.
func (fsys *unionFS) taintOpen(in *fusefs.Inode, pinned *[]*node) {
	n := in.Operations().(*node)
	if f := n.file.Load(); f != nil {
		n.mu.Lock()
		if f.ptOpens > 0 {
			f.ptPinned = true
			n.markRebased()
		}
		if f.dfd >= 0 {
			f.oldFds = append(f.oldFds, f.dfd)
			f.dfd = -1
			// Closed now unless a request uses it (then at its putFd) or it is
			// all the file has left: left for the LRU or a FORGET, a file of
			// the old upper dir, removed by the commit, kept its space on disk.
			n.closeOldFds()
		}
		if f.namedPin && len(f.oldFds) > 0 {
			*pinned = append(*pinned, n) // kept for a removed name (releaseNamed)
		}
		n.mu.Unlock()
	}
	for _, ch := range in.Children() {
		fsys.taintOpen(ch, pinned)
	}
}

// invalidateDirs drops the kernel's cached listings of the directories below in,
// before Rebase returns: directories are cached across opens (no OPENDIR). This
// takes no inode lock in the kernel, so it cannot wait for a request held by a
// Pause, unlike invalidating entries (the parent's lock) or file pages (a pending
// write's locked pages), which invalidate does in the background.
func (fsys *unionFS) invalidateDirs(in *fusefs.Inode) {
	if !in.IsDir() {
		return
	}
	in.NotifyContent(0, 0)
	for _, ch := range in.Children() {
		fsys.invalidateDirs(ch)
	}
}

// invalidate drops the kernel's cached attributes and pages below in, and the
// entries whose name is not the node it was in the new stack (gone, or another
// inode number or generation: a layer without an inode map, a name the commit
// left out), or whose node is pinned by a passthrough open (the next lookup must
// replace it). Invalidating an entry d_invalidates the dentry, which detaches
// whatever is mounted on it: every entry dropped after a commit --rebase of a
// running container took its /proc, /dev, /sys, etc binds and volumes away
// (found by a review). A name that stays the same node needs nothing.
func (fsys *unionFS) invalidate(in *fusefs.Inode) {
	for name, ch := range in.Children() {
		fsys.invalidate(ch)
		if !fsys.sameNode(in, name, ch) {
			in.NotifyEntry(name)
		}
	}
	in.NotifyContent(0, 0)
}

// sameNode reports whether name in the directory in resolves, in the current
// stack, to the node ch is, which no passthrough open pins.
func (fsys *unionFS) sameNode(in *fusefs.Inode, name string, ch *fusefs.Inode) bool {
	if ch.Operations().(*node).wasPinned() {
		return false
	}
	pn := in.Operations().(*node)
	pe, s, err := pn.resolve()
	if err != nil {
		return false
	}
	e, err := s.lookupIn(pe.layers, pn.rel(), name)
	sa := ch.StableAttr()
	return err == nil && e.ino == sa.Ino && e.gen == sa.Gen && e.st.Mode&unix.S_IFMT == sa.Mode
}

// mountFlags adds the mount flags in flags to the fuse mount options opts and
// returns them with the flags for a direct mount (0: go-fuse's default,
// nosuid,nodev). go-fuse turns [no]suid, [no]dev and [no]exec options into mount
// flags itself; noatime has to be a flag from the start.
func mountFlags(opts, flags []string, root bool) ([]string, uintptr) {
	noatime := false
	for _, f := range flags {
		switch f {
		case "suid", "dev":
			if root { // fusermount refuses them for others
				opts = append(opts, f)
			}
		case "nosuid", "nodev", "exec", "noexec":
			opts = append(opts, f)
		case "noatime":
			noatime = true
		case "atime", "relatime", "strictatime":
			noatime = false
		}
	}
	if noatime && root {
		return opts, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOATIME
	}
	return opts, 0
}

// openDevNull makes go-fuse's splice package open the /dev/null it empties pipes
// into, now, while the process has fds to spare: it opens it at its first use and
// panics if that fails, and that first use could come when the open-file limit
// was reached (the soak review's server died so, at EMFILE). A pipe pair taken
// from its pool and given back empties the pair, which opens it; the pair stays
// in the pool for go-fuse's reads.
func openDevNull() {
	if p, err := splice.Get(); err == nil {
		splice.Done(p)
	}
}
