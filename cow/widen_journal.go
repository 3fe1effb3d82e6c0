package cow

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The journal of pending widenings. A process killed inside a chmod-around
// (unpriv.go) leaves the mode widened for good, and a layer dir is shared by
// every image and container that uses the layer: every later export, commit and
// mount would carry the widened mode (a 0000 /etc/shadow becomes 0400). So,
// once a caller has named a journal dir (SetWidenJournal), each process keeps
// one journal file there, made at its first widening and held with an
// exclusive flock for the life of the process: each widening appends a "w"
// record (inode, path, the mode to put back, the mode set) with one write(2)
// before its chmod, and a "d" record for the inode once its mode is back.
// RepairWidened takes the lock of each journal file: if it gets it, the
// process is gone, and the modes of its widenings without a "d" are put back.
//
// The "d" records are needed: the repair cannot judge by the mode alone. A
// widening that ended long ago in a long-lived process (a mount server) left
// the file with its saved mode; a chmod since to exactly the mode that widening
// set (chmod 0400 /etc/shadow), or another process's widening of the same file
// at the moment, would be taken for it and undone. A "d" costs one more append.
//
// The journal guards against a killed process, not a machine crash: records
// are appended, not synced. A record cut short by the kill (the last, without
// its newline) is ignored: the chmod it was to precede was not made. It only
// runs unprivileged, and only on a widening, which only follows an EACCES:
// root and the success path of a request do no journal work.

// journalMagic is the first line of a journal file; journalSuffix ends its name.
const (
	journalMagic  = "layerfs-widened 2\n"
	journalSuffix = ".journal"
	// journalTrimAt: when no widening stands and the file is this long, it is
	// cut back to its first line, so that a long-lived process's file stays small.
	journalTrimAt = 64 << 10
)

// The state of this process's journal, under wideMu.
var (
	journalDir string               // the journal dir, "" for none
	jfd        = -1                 // this process's journal file, -1 until a widening makes it
	jname      string               // its path
	jsize      int64                // its length
	jstanding  = map[wideKey]bool{} // the inodes with a "w" and no "d" in it
	jretry     time.Time            // after a failure to make it, not tried again before this
)

// SetWidenJournal names the dir that the widenings of this process are
// recorded in (created when the first one is written); "" turns the journal
// off. Without one, or when a record cannot be written, a widening works as
// without a journal: the journal never makes a read fail. To be called before
// any widening (the journal file of another dir is closed, and its lock with
// it).
func SetWidenJournal(dir string) {
	wideMu.Lock()
	defer wideMu.Unlock()
	if dir == journalDir {
		return
	}
	closeJournal()
	journalDir, jretry = dir, time.Time{}
}

// EndWidenJournal removes this process's journal file if no widening stands in
// it, for a command's normal end; a later widening makes a new one. A file left
// (a killed process, or one that ends without this) is removed by the next
// repair.
func EndWidenJournal() {
	wideMu.Lock()
	defer wideMu.Unlock()
	if len(jstanding) == 0 {
		closeJournal()
	}
}

// closeJournal closes this process's journal file, removing it if nothing
// stands in it. Called under wideMu.
func closeJournal() {
	if jfd < 0 {
		return
	}
	if len(jstanding) == 0 {
		unix.Unlink(jname) // under the lock, so a writer can tell (journalLinked)
	}
	unix.Close(jfd)
	jfd, jname, jsize = -1, "", 0
	jstanding = map[wideKey]bool{}
}

// journalLinked reports whether the file open as fd still has a name: a repair
// removes a journal file it holds the lock of.
func journalLinked(fd int) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Nlink > 0
}

// openJournal makes this process's journal file if it has none and a journal
// dir is named; it reports whether there is one. Called under wideMu.
func openJournal() bool {
	if jfd >= 0 {
		return true
	}
	if journalDir == "" || time.Now().Before(jretry) {
		return false
	}
	for try := 0; try < 5; try++ {
		name := filepath.Join(journalDir, fmt.Sprintf("%d-%08x%s", os.Getpid(), rand.Uint32(), journalSuffix))
		open := func() (int, error) {
			return unix.Open(name, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		}
		fd, err := open()
		if errors.Is(err, unix.ENOENT) && os.MkdirAll(journalDir, 0o700) == nil {
			fd, err = open()
		}
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			break
		}
		// Until it is locked, a repair may take the (empty) file for a dead
		// process's and remove it: then it is made again under another name.
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue // a repair has it, and removes it
			}
			unix.Unlink(name) // no locks here: no journal
			break
		}
		if !journalLinked(fd) {
			unix.Close(fd)
			continue
		}
		jfd, jname, jsize = fd, name, 0
		if !journalAppend([]byte(journalMagic)) {
			closeJournal()
			break
		}
		return true
	}
	jretry = time.Now().Add(time.Second)
	return false
}

// journalAppend appends b to the journal file with one write(2); it reports
// whether all of it is written. A short write (a full disk) is cut off again,
// or at least ended with a newline, so that the next record is read whole.
// Called under wideMu.
func journalAppend(b []byte) bool {
	n, err := unix.Write(jfd, b)
	for errors.Is(err, unix.EINTR) {
		n, err = unix.Write(jfd, b)
	}
	if err == nil && n == len(b) {
		jsize += int64(n)
		return true
	}
	if n > 0 {
		if unix.Ftruncate(jfd, jsize) != nil {
			unix.Write(jfd, []byte("\n"))
			if off, err := unix.Seek(jfd, 0, io.SeekEnd); err == nil {
				jsize = off
			}
		}
	}
	return false
}

// journalEntry is a widening a journal names: which inode, where it was, the
// mode to put back and the mode set.
type journalEntry struct {
	dev, ino   uint64
	saved, set uint32
	path       string
}

func (e *journalEntry) marshal() []byte {
	// The path last and quoted: a name in an image need not be UTF-8 and
	// may hold a newline (strconv.Quote keeps every byte).
	return fmt.Appendf(nil, "w %d %d %o %o %s\n", e.dev, e.ino, e.saved, e.set, strconv.Quote(e.path))
}

func doneRecord(k wideKey) []byte { return fmt.Appendf(nil, "d %d %d\n", k.dev, k.ino) }

// parseJournal returns the widenings that stand in the journal b: the last "w"
// record of each inode that no "d" record follows. A line that does not parse
// (the last one, cut short by a kill) is skipped. ok is false when b is not a
// journal at all.
func parseJournal(b []byte) (standing map[wideKey]*journalEntry, ok bool) {
	s, ok := strings.CutPrefix(string(b), journalMagic)
	if !ok {
		return nil, false
	}
	standing = map[wideKey]*journalEntry{}
	for {
		line, rest, whole := strings.Cut(s, "\n")
		if !whole {
			break // cut short, or nothing more
		}
		s = rest
		f := strings.SplitN(line, " ", 6)
		switch {
		case len(f) == 3 && f[0] == "d":
			dev, err1 := strconv.ParseUint(f[1], 10, 64)
			ino, err2 := strconv.ParseUint(f[2], 10, 64)
			if err1 == nil && err2 == nil {
				delete(standing, wideKey{dev, ino})
			}
		case len(f) == 6 && f[0] == "w":
			var e journalEntry
			var err [5]error
			e.dev, err[0] = strconv.ParseUint(f[1], 10, 64)
			e.ino, err[1] = strconv.ParseUint(f[2], 10, 64)
			saved, err2 := strconv.ParseUint(f[3], 8, 32)
			set, err3 := strconv.ParseUint(f[4], 8, 32)
			err[2], err[3] = err2, err3
			e.saved, e.set = uint32(saved), uint32(set)
			e.path, err[4] = strconv.Unquote(f[5])
			if errors.Join(err[:]...) != nil || !filepath.IsAbs(e.path) || e.saved&^0o7777 != 0 || e.set&^0o7777 != 0 {
				continue
			}
			standing[wideKey{e.dev, e.ino}] = &e
		}
	}
	return standing, true
}

// journal records, before its chmod, that the process sets the mode of the
// inode k open as fd to set, and that saved is the mode to put back. It reports
// whether the record is written. Called under wideMu.
func journal(k wideKey, fd int, saved, set uint32) bool {
	if journalDir == "" {
		return false
	}
	if !openJournal() {
		return false
	}
	path, ok := widenedPath(k, fd)
	if !ok {
		return false
	}
	e := journalEntry{dev: k.dev, ino: k.ino, saved: saved, set: set, path: path}
	if !journalAppend(e.marshal()) {
		return false
	}
	jstanding[k] = true
	return true
}

// jpaths holds the paths of the inodes journaled last, under wideMu, so that
// one widened again soon (a file for its lstat, its xattrs and its open; a dir
// for each name looked up in it) is not looked up in /proc each time, which
// was a third of the journal's cost. A path is used only while it still names
// the inode.
var jpaths = map[wideKey]string{}

// widenedPath is the path of the inode k open as fd, for its record. Called
// under wideMu.
func widenedPath(k wideKey, fd int) (string, bool) {
	if p, ok := jpaths[k]; ok {
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && uint64(st.Dev) == k.dev && st.Ino == k.ino {
			return p, true
		}
		delete(jpaths, k)
	}
	p, err := os.Readlink(fdPath(fd))
	if err != nil || !filepath.IsAbs(p) {
		return "", false
	}
	if len(jpaths) >= 64 {
		clear(jpaths)
	}
	jpaths[k] = p
	return p, true
}

// unjournal records that the widening of k by this process is over (its mode
// is back, or there is nothing to put back). Called under wideMu.
func unjournal(k wideKey) {
	if jfd < 0 || !jstanding[k] {
		return
	}
	delete(jstanding, k)
	journalAppend(doneRecord(k)) // if it fails, a repair finds the mode back: not the set one
	if len(jstanding) == 0 && jsize >= journalTrimAt {
		if unix.Ftruncate(jfd, int64(len(journalMagic))) == nil {
			jsize = int64(len(journalMagic))
		}
	}
}

// RepairWidened puts back the modes that processes killed inside a widening
// left widened, from the journal dir (<root>/layers/.widened): for each journal
// file whose lock it gets (its process is gone), and each widening standing in
// it, if its path is still the same inode with exactly the mode the widening
// set, it gets the saved mode back; then the file goes. Journals of live
// processes, which hold their lock, stay. Two repairs at once do no harm: only
// one gets a file's lock. For a command's start, before it reads any layer (a
// widening that another process makes meanwhile is journaled by it and not
// touched). A no-op for root, which never widens.
//
// Widenings stack: a process that finds a mode another one widened saves that
// widened mode and widens it further (A: 0000 -> 0100, then B: 0100 -> 0500).
// So the records of one inode are put back as a chain, each while the mode is
// the one it set (B's, then A's), whatever order the journals are read in. A
// dead record whose mode is not the current one while a live process (or this
// one) has a widening of the inode standing is kept: that process puts back the
// mode it saved, which may be the dead one's, and a later repair then finds the
// dead record's mode. Only what a record names inside the store's own trees
// (layers/, work/, tmp/ beside the journal dir's layers/) is touched, and only
// journal files that are regular files of the user's: the journal dir is
// trusted no further than that.
func RepairWidened(dir string) {
	if !unprivileged || dir == "" {
		return
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	df := os.NewFile(uintptr(dfd), dir)
	defer df.Close()
	euid := os.Geteuid()
	var st unix.Stat_t
	if unix.Fstat(dfd, &st) != nil || int(st.Uid) != euid {
		return
	}
	names, err := df.Readdirnames(-1)
	if err != nil {
		return
	}
	var dead []*deadJournal
	var live []int // fds of the journals of live processes, read only if needed
	defer func() {
		for _, fd := range live {
			unix.Close(fd)
		}
	}()
	sort.Strings(names) // the same order in every process
	for _, name := range names {
		if !strings.HasSuffix(name, journalSuffix) {
			continue
		}
		// O_NONBLOCK: a FIFO is neither waited for at the open nor read.
		fd, err := unix.Openat(dfd, name, unix.O_RDWR|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != euid {
			unix.Close(fd)
			continue
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			if errors.Is(err, unix.EWOULDBLOCK) {
				live = append(live, fd) // its process lives (or another repair has it)
			} else {
				unix.Close(fd)
			}
			continue
		}
		if !journalLinked(fd) {
			unix.Close(fd) // another repair had it
			continue
		}
		b, ok := readJournalFd(fd)
		if !ok {
			unix.Close(fd)
			continue
		}
		d := &deadJournal{fd: fd, name: name}
		dead = append(dead, d)
		standing, _ := parseJournal(b) // not a journal: removed
		for _, e := range standing {
			d.recs = append(d.recs, &deadRecord{e: e})
		}
	}
	if len(dead) == 0 {
		return
	}
	trees := widenTrees(dfd)
	groups := map[groupKey][]*deadRecord{}
	var keys []groupKey
	for _, d := range dead {
		for _, r := range d.recs {
			if !inTrees(r.e.path, trees) {
				r.done = true // not the store's: dropped, never chmodded
				continue
			}
			k := groupKey{wideKey{r.e.dev, r.e.ino}, r.e.path}
			if groups[k] == nil {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], r)
		}
	}
	// Deepest first: a dir widened so its entries could be reached is put
	// back after them.
	sort.SliceStable(keys, func(i, j int) bool { return len(keys[i].path) > len(keys[j].path) })
	pending := func() func(wideKey) bool {
		var set map[wideKey]bool
		return func(k wideKey) bool {
			if set == nil {
				set = map[wideKey]bool{}
				for _, fd := range live {
					if b, ok := readJournalFd(fd); ok {
						standing, _ := parseJournal(b)
						for k := range standing {
							set[k] = true
						}
					}
				}
			}
			return set[k]
		}
	}()
	wideMu.Lock()
	for _, k := range keys {
		repairInode(k, groups[k], pending)
	}
	wideMu.Unlock()
	for _, d := range dead {
		d.finish(dfd)
	}
}

// A deadJournal is the journal file of a dead process, open as fd (locked) and
// named name in the journal dir, with the widenings standing in it.
type deadJournal struct {
	fd   int
	name string
	recs []*deadRecord
}

// A deadRecord is a widening standing in a dead journal; done: put back, or
// not to be (dropped).
type deadRecord struct {
	e    *journalEntry
	done bool
}

type groupKey struct {
	wideKey
	path string
}

// finish removes the journal file if nothing in it is left for a later repair,
// or else rewrites it with only what is left, and closes it.
func (d *deadJournal) finish(dfd int) {
	defer unix.Close(d.fd)
	var kept []byte
	changed := false
	for _, r := range d.recs {
		if r.done {
			changed = true
		} else {
			kept = append(kept, r.e.marshal()...)
		}
	}
	if kept == nil {
		unix.Unlinkat(dfd, d.name, 0) // under the lock: see openJournal
		return
	}
	if !changed {
		return
	}
	// Made whole under another name and renamed over it, so that a kill
	// leaves either file whole (and nothing is appended to a record a kill
	// cut short). Locked until closed, as a journal of a live process.
	tmp := fmt.Sprintf("%d-%08x%s", os.Getpid(), rand.Uint32(), journalSuffix)
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return // kept as it is: a record put back meanwhile is then dropped
	}
	defer unix.Close(fd)
	b := append([]byte(journalMagic), kept...)
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil || writeAll(fd, b) != nil || unix.Renameat(dfd, tmp, dfd, d.name) != nil {
		unix.Unlinkat(dfd, tmp, 0)
	}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readJournalFd reads the whole journal file open as fd.
func readJournalFd(fd int) ([]byte, bool) {
	var b []byte
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Pread(fd, buf, int64(len(b)))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, false
		}
		if n == 0 {
			return b, true
		}
		b = append(b, buf[:n]...)
	}
}

// widenTrees are the trees of the store whose journal dir is open as dfd
// (<root>/layers/.widened) in which its processes widen: the layers, the
// containers' upper dirs (work/) and a build's scratch dirs (tmp/); by their
// real paths, as a record names them (widenedPath).
func widenTrees(dfd int) []string {
	dir, err := os.Readlink(fdPath(dfd))
	if err != nil || !filepath.IsAbs(dir) {
		return nil
	}
	layers := filepath.Dir(dir)
	root := filepath.Dir(layers)
	return []string{layers, filepath.Join(root, "work"), filepath.Join(root, "tmp")}
}

// inTrees reports whether p is a clean absolute path inside one of trees.
func inTrees(p string, trees []string) bool {
	if filepath.Clean(p) != p {
		return false
	}
	for _, t := range trees {
		if strings.HasPrefix(p, t+"/") {
			return true
		}
	}
	return false
}

// openRecorded opens the path of a record (O_PATH), following no symlink on
// the way: a record names a real path.
func openRecorded(path string) (int, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &how)
	if errors.Is(err, unix.ENOSYS) {
		return unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	return fd, err
}

// repairInode puts back the mode of the inode k.path (if it still names k) from
// the records of dead processes recs: while one of them set exactly the current
// mode, that one's saved mode is put back (a chain of stacked widenings unwinds
// last first). A record left over (the mode is not the one it set) is kept for
// a later repair while a widening of the inode stands in a live process
// (pending) or in this one, whose putting back may bring its mode back, and
// dropped otherwise (the mode changed since: not ours). Records that cannot be
// reached now (EACCES on the way) are kept. Called under wideMu.
func repairInode(k groupKey, recs []*deadRecord, pending func(wideKey) bool) {
	fd, err := openRecorded(k.path)
	if err != nil {
		if !errors.Is(err, unix.EACCES) {
			for _, r := range recs {
				r.done = true
			}
		}
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return
	}
	if uint64(st.Dev) != k.dev || st.Ino != k.ino {
		for _, r := range recs {
			r.done = true // another file now: not ours to touch
		}
		return
	}
	ours := wide[k.wideKey] != nil
	mode := st.Mode & 0o7777
	for more := !ours; more; {
		more = false
		for _, r := range recs {
			if r.done || r.e.set != mode {
				continue
			}
			if err := unix.Chmod(fdPath(fd), r.e.saved); err != nil {
				if errors.Is(err, unix.EACCES) {
					return // kept, all that is left
				}
				r.done = true
				continue
			}
			r.done, mode, more = true, r.e.saved, true
			break
		}
	}
	if ours || pending(k.wideKey) {
		return // kept
	}
	for _, r := range recs {
		r.done = true
	}
}
