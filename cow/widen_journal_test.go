package cow

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// useJournal points the widenings of this process at dir until the test ends.
func useJournal(t *testing.T, dir string) {
	t.Helper()
	SetWidenJournal(dir)
	t.Cleanup(func() { SetWidenJournal("") })
}

// journalOf reads the entry this process has for the inode open as fd, nil if
// there is none.
func journalOf(t *testing.T, dir string, fd int) *journalEntry {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Fstat(fd, &st))
	b, err := os.ReadFile(filepath.Join(dir, journalName(wideKey{uint64(st.Dev), st.Ino}, os.Getpid())))
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	e, err := parseJournalEntry(b)
	must(t, err)
	return e
}

// TestUnprivWidenJournal: unprivileged, a widening writes a journal entry (who,
// where, the mode to put back, the mode set) before its chmod, and removes it
// when the mode is back; a chmod through the fs (Chmod) meanwhile rewrites or
// removes it. Without the journal a process killed inside the window left the
// mode widened with nothing to say so. A journal that cannot be written does
// not stop the widening.
func TestUnprivWidenJournal(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	j := filepath.Join(dir, "journal") // made by the first entry
	useJournal(t, j)
	f := filepath.Join(dir, "shadow")
	must(t, os.WriteFile(f, []byte("x"), 0o644))
	must(t, unix.Chmod(f, 0))
	fd, err := unix.Open(f, unix.O_PATH|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)

	undo := widenFd(fd)
	e := journalOf(t, j, fd)
	if e == nil {
		t.Fatalf("no journal entry while %s is widened", f)
	}
	if e.path != f || e.saved != 0 || e.set != 0o400 || e.pid != os.Getpid() || !e.alive() {
		t.Errorf("entry %+v, want %s 0000 -> 0400 of this live process", e, f)
	}
	undo()
	if e := journalOf(t, j, fd); e != nil {
		t.Errorf("entry %+v left after the widening", e)
	}
	if m := modeOf(t, f); m != 0 {
		t.Errorf("%s: %04o, want 0000", f, m)
	}

	d := filepath.Join(dir, "d")
	must(t, os.Mkdir(d, 0o755))
	must(t, unix.Chmod(d, 0))
	dfd, err := unix.Open(d, unix.O_PATH|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(dfd)
	undoRX := widenFd(dfd)
	undoRWX := OwnDirRWX(dfd)
	if e := journalOf(t, j, dfd); e == nil || e.saved != 0 || e.set != 0o700 {
		t.Errorf("entry %+v with both widenings, want 0000 -> 0700", e)
	}
	must(t, Chmod(dfd, 0o100)) // nothing to put back: no entry
	if e := journalOf(t, j, dfd); e != nil {
		t.Errorf("entry %+v after a chmod of the widened dir", e)
	}
	undoR := widenFd(dfd) // 0100 lacks r: widened again, from the chmod's mode
	if e := journalOf(t, j, dfd); e == nil || e.saved != 0o100 || e.set != 0o500 {
		t.Errorf("entry %+v after widening it again, want 0100 -> 0500", e)
	}
	undoR()
	undoRWX()
	undoRX()
	if e := journalOf(t, j, dfd); e != nil {
		t.Errorf("entry %+v left after the widenings", e)
	}
	if m := modeOf(t, d); m != 0o100 {
		t.Errorf("%s: %04o, want the chmod's 0100", d, m)
	}
	if ents, err := os.ReadDir(j); err != nil || len(ents) != 0 {
		t.Errorf("journal holds %v (%v), want nothing", ents, err)
	}

	useJournal(t, "/proc/self/no-such-dir")
	undo = widenFd(fd)
	if m := modeOf(t, f); m != 0o400 {
		t.Errorf("widened without a journal to write: %04o, want 0400", m)
	}
	undo()
	if m := modeOf(t, f); m != 0 {
		t.Errorf("%s: %04o, want 0000", f, m)
	}
}

// TestUnprivRepairWidened: RepairWidened puts back the mode of a file (and of a
// dir above it, after the file) whose journal entry names a dead process and
// that still has the widened mode, and removes the entry; an entry of a live
// process stays with its mode; one whose file's mode changed since, or whose
// pid now belongs to a process started later, is handled as such. A mode left
// widened by a killed process stayed so for good.
func TestUnprivRepairWidened(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	j := filepath.Join(dir, "journal")
	must(t, os.Mkdir(j, 0o700))
	child := exec.Command("/bin/true")
	must(t, child.Run()) // started and reaped: its pid is dead
	me := journalIdentity()
	dead := journalSelf{pid: child.Process.Pid, start: "1", boot: me.boot, pidNS: me.pidNS}
	reused := me
	reused.start = "0" // this pid, but a process that started at another time

	n := filepath.Join(dir, "n")
	must(t, os.Mkdir(n, 0o755))
	file := func(name string, mode uint32) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(name), 0o644))
		must(t, unix.Chmod(p, mode))
		return p
	}
	entry := func(who journalSelf, p string, saved, set uint32) string {
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		e := journalEntry{journalSelf: who, dev: uint64(st.Dev), ino: st.Ino, saved: saved, set: set, path: p}
		name := filepath.Join(j, journalName(wideKey{e.dev, e.ino}, who.pid))
		must(t, os.WriteFile(name, e.marshal(), 0o600))
		return name
	}
	type repairCase struct {
		name, path, entry string
		want              uint32 // the mode after the repair
		stays             bool   // the entry stays
	}
	var cases []repairCase
	add := func(name, p, ent string, want uint32, stays bool) {
		cases = append(cases, repairCase{name, p, ent, want, stays})
	}
	a := file("dead", 0o400)
	add("dead writer", a, entry(dead, a, 0, 0o400), 0, false)
	b := file("live", 0o400)
	add("live writer", b, entry(me, b, 0, 0o400), 0o400, true)
	c := file("changed", 0o600)
	add("mode changed since", c, entry(dead, c, 0, 0o400), 0o600, false)
	r := file("reused", 0o4511)
	add("pid reused", r, entry(reused, r, 0o4111, 0o4511), 0o4111, false)
	// A dir widened to reach a file in it: the file first, then the dir.
	in := filepath.Join(n, "in")
	must(t, os.WriteFile(in, []byte("in"), 0o400))
	inEntry := entry(dead, in, 0, 0o400)
	must(t, unix.Chmod(n, 0o500))
	add("widened dir", n, entry(dead, n, 0, 0o500), 0, false)
	add("file in a widened dir", in, inEntry, 0, false)
	tmp := filepath.Join(j, "1-2-"+strconv.Itoa(dead.pid)+".tmp")
	must(t, os.WriteFile(tmp, []byte("cut short"), 0o600))

	RepairWidened(j)

	for _, c := range cases {
		if c.path == in { // reachable again below, once n is checked
			must(t, unix.Chmod(n, 0o100))
		}
		if m := modeOf(t, c.path); m != c.want {
			t.Errorf("%s: %s is %04o after the repair, want %04o", c.name, c.path, m, c.want)
		}
		if _, err := os.Lstat(c.entry); (err == nil) != c.stays {
			t.Errorf("%s: entry there after the repair: %v, want %v", c.name, err == nil, c.stays)
		}
	}
	if _, err := os.Lstat(tmp); err == nil {
		t.Errorf("a dead process's temp entry is left")
	}
	RepairWidened(j) // again (as a second process would): nothing more changes
	if m := modeOf(t, b); m != 0o400 {
		t.Errorf("live writer's file: %04o after a second repair, want 0400", m)
	}
	if m := modeOf(t, a); m != 0 {
		t.Errorf("dead writer's file: %04o after a second repair, want 0000", m)
	}
	must(t, unix.Chmod(n, 0o755))
}
