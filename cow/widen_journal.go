package cow

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The journal of pending widenings. A process killed inside a chmod-around
// (unpriv.go) leaves the mode widened for good, and a layer dir is shared by
// every image and container that uses the layer: every later export, commit and
// mount would carry the widened mode (a 0000 /etc/shadow becomes 0400). So,
// once a caller has named a journal dir (SetWidenJournal), each widening writes
// a small entry there before its chmod and removes it once it is over, and
// RepairWidened puts back the modes the entries of dead processes name. The
// journal guards against a killed process, not a machine crash: entries are
// written whole (a temp file renamed) but not synced. It only runs
// unprivileged, and only on a widening, which only follows an EACCES: root and
// the success path of a request do no journal work.

// journalDir is the journal dir, "" for none; set under wideMu.
var journalDir string

// SetWidenJournal names the dir that the widenings of this process are
// recorded in (created when the first one is written); "" turns the journal
// off. Without one, or when an entry cannot be written, a widening works as
// without a journal: the journal never makes a read fail.
func SetWidenJournal(dir string) {
	wideMu.Lock()
	journalDir = dir
	wideMu.Unlock()
}

// journalSelf is what an entry says of the process that wrote it: its pid and
// start time (field 22 of /proc/PID/stat, so that a reused pid is not taken
// for the writer), the boot it runs in and its pid namespace (a pid of
// another boot is dead; one of another namespace cannot be judged).
type journalSelf struct {
	pid   int
	start string
	boot  string
	pidNS string
}

var (
	selfOnce sync.Once
	self     journalSelf
)

func journalIdentity() journalSelf {
	selfOnce.Do(func() {
		self.pid = os.Getpid()
		self.start, _ = procStart(self.pid)
		self.boot = bootID()
		self.pidNS = pidNS()
		// An entry's fields are words: "-" stands for one that could not be read.
		for _, f := range []*string{&self.start, &self.boot, &self.pidNS} {
			if *f == "" || strings.ContainsAny(*f, " \n") {
				*f = "-"
			}
		}
	})
	return self
}

// procStart is the start time of process pid (field 22 of /proc/PID/stat);
// ok false when there is no such process.
func procStart(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	// The comm (field 2) is in parentheses and may hold anything: the fields
	// after the last ')' are 3 on.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", false
	}
	return f[22-3], true
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

func pidNS() string {
	s, _ := os.Readlink("/proc/self/ns/pid")
	return s
}

// journalName is the name of the entry of a widening of inode k by process pid.
func journalName(k wideKey, pid int) string {
	return fmt.Sprintf("%x-%x-%d", k.dev, k.ino, pid)
}

// journalEntry is one entry: who widened which inode, where it was, the mode to
// put back and the mode set.
type journalEntry struct {
	journalSelf
	dev, ino   uint64
	saved, set uint32
	path       string
}

const journalMagic = "layerfs-widened 1"

func (e *journalEntry) marshal() []byte {
	// The path last and raw: a name in an image need not be UTF-8 and may
	// hold a newline.
	return fmt.Appendf(nil, "%s\n%d %s %s %s\n%d %d %o %o\n%s", journalMagic,
		e.pid, e.start, e.boot, e.pidNS, e.dev, e.ino, e.saved, e.set, e.path)
}

func parseJournalEntry(b []byte) (*journalEntry, error) {
	lines := bytes.SplitN(b, []byte("\n"), 4)
	if len(lines) != 4 || string(lines[0]) != journalMagic {
		return nil, errors.New("not a widening entry")
	}
	var e journalEntry
	if _, err := fmt.Sscanf(string(lines[1]), "%d %s %s %s", &e.pid, &e.start, &e.boot, &e.pidNS); err != nil {
		return nil, err
	}
	if _, err := fmt.Sscanf(string(lines[2]), "%d %d %o %o", &e.dev, &e.ino, &e.saved, &e.set); err != nil {
		return nil, err
	}
	e.path = string(lines[3])
	if e.path == "" || e.saved&^0o7777 != 0 || e.set&^0o7777 != 0 {
		return nil, errors.New("bad widening entry")
	}
	return &e, nil
}

// journal records, before its chmod, that the process sets the mode of the
// inode k open as fd to set, and that saved is the mode to put back. It reports
// whether the entry is written. Called under wideMu.
func journal(k wideKey, fd int, saved, set uint32) bool {
	if journalDir == "" {
		return false
	}
	path, err := os.Readlink(fdPath(fd))
	if err != nil || !filepath.IsAbs(path) {
		return false
	}
	id := journalIdentity()
	e := journalEntry{journalSelf: id, dev: k.dev, ino: k.ino, saved: saved, set: set, path: path}
	name := filepath.Join(journalDir, journalName(k, id.pid))
	tmp := name + ".tmp"
	write := func() error {
		if err := os.WriteFile(tmp, e.marshal(), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, name); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	}
	err = write()
	if errors.Is(err, os.ErrNotExist) && os.MkdirAll(journalDir, 0o700) == nil {
		err = write()
	}
	return err == nil
}

// unjournal removes the entry of the widening of k by this process. Called
// under wideMu.
func unjournal(k wideKey) {
	if journalDir != "" {
		os.Remove(filepath.Join(journalDir, journalName(k, journalIdentity().pid)))
	}
}

// alive reports whether the process an entry names may still be widening: it
// is, unless the entry is of this boot and pid namespace and no process of
// that pid and start time runs now, or of another boot. An entry of another
// pid namespace (a layerfs in another container on the same store) cannot be
// judged and counts as alive.
func (s journalSelf) alive() bool {
	me := journalIdentity()
	if s.boot != me.boot {
		return me.boot == "-" // no boot id to tell by: keep it
	}
	if s.pidNS != me.pidNS {
		return true
	}
	if s.pid == me.pid {
		return s.start == me.start
	}
	start, ok := procStart(s.pid)
	return ok && start == s.start
}

// RepairWidened puts back the modes that processes killed inside a widening
// left widened, from the journal dir: for each entry whose process is gone, if
// its path is still the same inode with exactly the mode the widening set, it
// gets the saved mode back; then the entry goes. Entries of live processes stay.
// Two repairs at once do no harm: each checks the mode before its chmod, and
// both put back the same mode. For a command's start, before it reads any layer
// (a widening that another process makes meanwhile is journaled by it and not
// touched). A no-op for root, which never widens.
func RepairWidened(dir string) {
	if !unprivileged || dir == "" {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var todo []*journalEntry
	names := map[*journalEntry]string{}
	for _, de := range ents {
		name := de.Name()
		p := filepath.Join(dir, name)
		if base, ok := strings.CutSuffix(name, ".tmp"); ok {
			// A write cut short: its pid is the last field of its name.
			if pid, err := strconv.Atoi(base[strings.LastIndexByte(base, '-')+1:]); err != nil || !pidExists(pid) {
				os.Remove(p)
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile (another repair, or its process ended)
		}
		e, err := parseJournalEntry(b)
		if err != nil {
			os.Remove(p)
			continue
		}
		if e.alive() {
			continue
		}
		todo = append(todo, e)
		names[e] = p
	}
	// Deepest first: a dir widened so its entries could be reached is put
	// back after them.
	sort.Slice(todo, func(i, j int) bool { return len(todo[i].path) > len(todo[j].path) })
	wideMu.Lock()
	defer wideMu.Unlock()
	for _, e := range todo {
		if repairOne(e) {
			os.Remove(names[e])
		}
	}
}

// repairOne puts back the mode of the entry e of a dead process if its path
// still names that inode with exactly the widened mode. It reports whether the
// entry is done with (false: the path cannot be reached now, so a later repair
// may). Called under wideMu.
func repairOne(e *journalEntry) bool {
	fd, err := unix.Open(e.path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return !errors.Is(err, unix.EACCES)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	if uint64(st.Dev) != e.dev || st.Ino != e.ino || st.Mode&0o7777 != e.set {
		return true // another file now, or its mode changed since: not ours to touch
	}
	if wide[wideKey{e.dev, e.ino}] != nil {
		return true // this process has it opened up now: its widening puts it back
	}
	err = unix.Chmod(fdPath(fd), e.saved)
	return err == nil || !errors.Is(err, unix.EACCES)
}

// pidExists reports whether a process pid exists.
func pidExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
