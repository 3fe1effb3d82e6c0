package fs

// Freezing writers. Writes through a FUSE passthrough file handle go from the kernel
// straight to the backing file and never reach this process, and a write(2) past
// max_write reaches it as several requests, so the write barrier alone
// (MountPoint.Pause) cannot hold writes whole. Stopping the processes that have
// files of the mount open for writing, as `docker pause` freezes a container,
// holds them at system call boundaries.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// procRoot is the procfs mount in which stopWriters finds processes.
const procRoot = "/proc"

// stopPollInterval is how often stopWriters looks whether what it stopped has stopped.
const stopPollInterval = time.Millisecond

// stopWriters stops, with SIGSTOP, every process that has a file of device dev whose
// inode number is in inos open for writing (O_WRONLY or O_RDWR, from /proc/PID/fdinfo
// "flags:" octal field), except the PIDs in skip and this process itself. It returns
// once every thread of each such process is stopped (state 'T' or 't' in
// /proc/PID/task/TID/stat), or with ctx's error after continuing what it stopped.
// Then it looks again, until a look finds no new writer (a child forked while the last
// look listed /proc holds its parent's fds). A process the kernel holds in vfork(2)
// for a stopped child counts as stopped (vforkedStopped).
// cont sends SIGCONT to exactly the processes it stopped, and only those that were not
// already stopped before (state T) when it found them. Processes that exit meanwhile are
// ignored. With inos empty it does nothing and returns a no-op cont.
//
// cont is never nil (a no-op when err is not nil) and only its first call signals.
// Only writers that hold the file open are found: a shared writable mapping whose fd
// was closed is not. Each writable fd of every other process is stat'ed, which asks
// the filesystem it is on (this mount's GETATTR is a read, served under a Pause).
func stopWriters(ctx context.Context, dev uint64, inos map[uint64]bool, skip map[int]bool) (cont func(), err error) {
	noop := func() {}
	if len(inos) == 0 {
		return noop, nil
	}
	fr := newFreezer(dev, skip)
	if err := fr.stop(ctx, inos, 0); err != nil {
		fr.cont()
		return noop, fmt.Errorf("stop writers: %w", err)
	}
	var once sync.Once
	return func() { once.Do(fr.cont) }, nil
}

// freezer stops writers in rounds (MountPoint.Pause stops them before and again
// after taking the write barrier) and continues, at the end, exactly those it
// stopped.
type freezer struct {
	dev     uint64
	skip    map[int]bool
	stopped []int        // sent SIGSTOP by this freezer: cont continues them
	seen    map[int]bool // stopped, by this freezer or before it found them
}

func newFreezer(dev uint64, skip map[int]bool) *freezer {
	return &freezer{dev: dev, skip: skip, seen: map[int]bool{}}
}

// stop stops every process not yet seen that has a file of the freezer's device
// with an inode number in inos open for writing, and waits until it has stopped;
// then it looks again, until a look finds no new writer: a process forked while
// the last look listed /proc (its parent stopped only after the fork) holds the
// parent's fds, a writer too. On error, what it stopped stays stopped (cont).
//
// inos nil stands for every inode of the device. settle, if not 0, bounds each
// wait for writers to stop (not the look through /proc, which takes what it
// takes on a loaded machine): under the barrier, a writer that waits there
// never stops.
func (fr *freezer) stop(ctx context.Context, inos map[uint64]bool, settle time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if inos != nil && len(inos) == 0 {
		return nil
	}
	for {
		pids, err := openWriters(ctx, fr.dev, inos, fr.skip)
		if err != nil {
			return err
		}
		pids = slices.DeleteFunc(pids, func(pid int) bool { return fr.seen[pid] })
		if len(pids) == 0 {
			return nil
		}
		stopped, wait, err := sendStop(pids)
		fr.stopped = append(fr.stopped, stopped...)
		for _, pid := range wait {
			fr.seen[pid] = true
		}
		if err != nil {
			return err
		}
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if settle > 0 {
			wctx, cancel = context.WithTimeout(ctx, settle)
		}
		err = fr.waitStopped(wctx, wait)
		cancel()
		if err != nil {
			return err
		}
	}
}

// cont continues what the freezer stopped (once: it then forgets it), children
// before their parents: a parent that waits for its children reporting stops (a
// shell with job control) and ran first would see a child stopped by the freezer
// as a job stopped by its user; a child continued first has nothing to report.
func (fr *freezer) cont() {
	parent := make(map[int]int, len(fr.stopped))
	for _, pid := range fr.stopped {
		if ppid, _, err := procPPIDState(pid); err == nil {
			parent[pid] = ppid
		}
	}
	depth := func(pid int) int {
		d := 0
		for p, ok := parent[pid]; ok && d < len(parent); p, ok = parent[p] {
			d++
		}
		return d
	}
	slices.SortStableFunc(fr.stopped, func(a, b int) int { return depth(b) - depth(a) })
	continueAll(fr.stopped)
	fr.stopped = nil
	clear(fr.seen)
}

// sendStop sends SIGSTOP to each of pids not already stopped (state T) and returns
// the PIDs it stopped and the PIDs to wait for (those plus the already stopped ones).
// Processes gone or zombie are left out. On error it has continued what it stopped.
func sendStop(pids []int) (stopped, wait []int, err error) {
	for _, pid := range pids {
		state, err := procState(pid)
		if procGone(err) {
			continue
		}
		if err != nil {
			continueAll(stopped)
			return nil, nil, err
		}
		switch state {
		case 'Z', 'X':
			continue
		case 'T':
			wait = append(wait, pid)
			continue
		}
		if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue
			}
			continueAll(stopped)
			return nil, nil, fmt.Errorf("stop process %d: %w", pid, err)
		}
		stopped = append(stopped, pid)
		wait = append(wait, pid)
	}
	return stopped, wait, nil
}

// continueAll sends SIGCONT to pids. A process that has gone (ESRCH) needs nothing,
// and this process may signal every process it could stop, so errors are ignored.
func continueAll(pids []int) {
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGCONT)
	}
}

// waitStopped polls until every thread of each of pids is stopped or the process is
// gone, or until ctx ends (returning ctx's error). A process blocked in vfork(2)
// until a child the freezer stopped goes on counts as stopped (vforkedStopped).
func (fr *freezer) waitStopped(ctx context.Context, pids []int) error {
	pending := slices.Clone(pids)
	tick := time.NewTicker(stopPollInterval)
	defer tick.Stop()
	for {
		var err error
		pending, err = fr.stillRunning(pending)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			// Name one: a writer that never stops (in a sleep SIGSTOP does
			// not end) is what the user has to look at.
			comm, _ := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pending[0]), "comm"))
			return fmt.Errorf("process %d (%s) writing into the mount did not stop: %w", pending[0], bytes.TrimSpace(comm), ctx.Err())
		case <-tick.C:
		}
	}
}

// stillRunning returns, in place of pids, those with a thread not yet stopped.
func (fr *freezer) stillRunning(pids []int) ([]int, error) {
	n := 0
	for _, pid := range pids {
		ok, err := threadsStopped(pid)
		if err != nil {
			return nil, err
		}
		if !ok && fr.vforkedStopped(pid) {
			ok = true
		}
		if !ok {
			pids[n] = pid
			n++
		}
	}
	return pids[:n], nil
}

// vforkedStopped reports whether pid has a stopped child, among the processes the
// freezer has seen stopped, that shares its memory (kcmp KCMP_VM): a shell's
// vfork(2) child inherits its writable fds, and a stopped vfork child keeps its
// parent waiting in the kernel (which a SIGSTOP does not interrupt) until it goes
// on. Such a parent cannot return to user space, so it writes nothing; its
// pending SIGSTOP is dropped by the SIGCONT that continues it.
func (fr *freezer) vforkedStopped(pid int) bool {
	for c := range fr.seen {
		if c == pid {
			continue
		}
		ppid, state, err := procPPIDState(c)
		if err != nil || ppid != pid || (state != 'T' && state != 't') {
			continue
		}
		const kcmpVM = 1 // KCMP_VM
		r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(c), kcmpVM, 0, 0, 0)
		if errno == 0 && r == 0 {
			return true
		}
	}
	return false
}

// procPPIDState returns the parent PID and state letter of process pid.
func procPPIDState(pid int) (int, byte, error) {
	p := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse %s: no comm", p)
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("parse %s: no state and ppid after comm", p)
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return ppid, f[0][0], nil
}

// threadsStopped reports whether every thread of pid is stopped ('T' or 't'), dead
// ('Z' or 'X') or gone. A thread in 'D' stops when its system call ends.
func threadsStopped(pid int) (bool, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if procGone(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("list threads of process %d: %w", pid, err)
	}
	for _, task := range tasks {
		state, err := readState(filepath.Join(dir, task.Name(), "stat"))
		if procGone(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		switch state {
		case 'T', 't', 'Z', 'X':
		default:
			return false, nil
		}
	}
	return true, nil
}

// openWriters returns the PIDs, other than this process and those in skip, that have
// a file of device dev with an inode number in inos open for writing.
func openWriters(ctx context.Context, dev uint64, inos map[uint64]bool, skip map[int]bool) ([]int, error) {
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, proc := range procs {
		pid, err := strconv.Atoi(proc.Name())
		// Skipped before any stat: stat'ing our own fds into the mount we serve
		// may deadlock.
		if err != nil || pid <= 0 || pid == self || skip[pid] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("looking for writers, at process %d of %d: %w", pid, len(procs), err)
		}
		writes, err := writesInode(pid, dev, inos)
		if err != nil {
			return nil, err
		}
		if writes {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// writesInode reports whether pid has a file of dev with an inode number in inos
// (nil: any) open for writing. A process that has gone or is not ours to inspect
// does not.
func writesInode(pid int, dev uint64, inos map[uint64]bool) (bool, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if procGone(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("list fds of process %d: %w", pid, err)
	}
	for _, fd := range fds {
		// The access mode is read first: fdinfo never asks the filesystem, a stat
		// may, so only fds open for writing are stat'ed.
		flags, err := fdFlags(filepath.Join(dir, "fdinfo", fd.Name()))
		if procGone(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		if flags&unix.O_ACCMODE == unix.O_RDONLY {
			continue
		}
		link := filepath.Join(dir, "fd", fd.Name())
		// A writable fd on a hung network filesystem or a stopped FUSE server
		// must not hang a Pause, which looks at every writer of the system.
		fdev, fino, err := linkDevIno(link)
		if err != nil {
			// ENOTCONN: the fd is on an aborted FUSE mount, not on the live one.
			if procGone(err) || errors.Is(err, unix.ENOTCONN) {
				continue
			}
			return false, fmt.Errorf("stat %s: %w", link, err)
		}
		if fdev == dev && (inos == nil || inos[fino]) {
			return true, nil
		}
	}
	return false, nil
}

// linkDevIno returns the device and inode number of the file a /proc link
// (fd/N, exe) names, from cached attributes only (AT_STATX_DONT_SYNC): no
// request reaches a FUSE server, this one or a stopped one, nor a hung
// network filesystem.
func linkDevIno(link string) (dev, ino uint64, err error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, link, unix.AT_STATX_DONT_SYNC, unix.STATX_INO, &stx); err != nil {
		return 0, 0, err
	}
	return unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino, nil
}

// fdFlags returns the open flags of the fdinfo file p (its octal "flags:" field).
func fdFlags(p string) (uint64, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(data) {
		v, ok := bytes.CutPrefix(line, []byte("flags:"))
		if !ok {
			continue
		}
		flags, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 64)
		if err != nil {
			return 0, fmt.Errorf("parse flags of %s: %w", p, err)
		}
		return flags, nil
	}
	if len(data) == 0 {
		return 0, fmt.Errorf("read %s: %w", p, unix.ESRCH) // the fd was closed
	}
	return 0, fmt.Errorf("parse %s: no flags field", p)
}

// procState returns the state letter of process pid ('R', 'S', 'D', 'T', 'Z', ...).
func procState(pid int) (byte, error) {
	return readState(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
}

// readState returns the state letter of the stat file p of a process or thread: the
// field after comm, which may itself contain spaces and ')', hence after the last ')'.
func readState(p string) (byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	if len(data) == 0 {
		return 0, fmt.Errorf("read %s: %w", p, unix.ESRCH) // the task was reaped
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) || data[i+1] != ' ' {
		return 0, fmt.Errorf("parse %s: no state after comm", p)
	}
	return data[i+2], nil
}

// procGone reports whether err says a process, thread or fd has gone (ENOENT,
// ESRCH) or is not ours to inspect (EACCES).
func procGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EACCES)
}
