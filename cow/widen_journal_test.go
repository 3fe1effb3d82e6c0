package cow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// useJournal points the widenings of this process at dir until the test ends.
func useJournal(t *testing.T, dir string) {
	t.Helper()
	SetWidenJournal(dir)
	t.Cleanup(func() { SetWidenJournal("") })
}

// journalOf returns the widening standing in this process's journal file in
// dir for the inode open as fd, nil if there is none.
func journalOf(t *testing.T, dir string, fd int) *journalEntry {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Fstat(fd, &st))
	wideMu.Lock()
	name := jname
	wideMu.Unlock()
	if name == "" {
		return nil
	}
	if filepath.Dir(name) != dir {
		t.Fatalf("this process's journal is %s, not in %s", name, dir)
	}
	b, err := os.ReadFile(name)
	must(t, err)
	standing, ok := parseJournal(b)
	if !ok {
		t.Fatalf("%s is not a journal: %q", name, b)
	}
	return standing[wideKey{uint64(st.Dev), st.Ino}]
}

// TestUnprivWidenJournal: unprivileged, a widening appends a record (where, the
// mode to put back, the mode set) to the process's journal file before its
// chmod, and a "done" record when the mode is back; a chmod through the fs
// (Chmod) meanwhile records the new state. The file is held locked, kept small
// and removed at the end (EndWidenJournal). Without the journal a process
// killed inside the window left the mode widened with nothing to say so. A
// journal that cannot be written does not stop the widening.
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
	if e.path != f || e.saved != 0 || e.set != 0o400 {
		t.Errorf("entry %+v, want %s 0000 -> 0400", e, f)
	}
	wideMu.Lock()
	name := jname
	wideMu.Unlock()
	lf, err := os.Open(name)
	must(t, err)
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Errorf("flock of this process's journal %s: %v, want EWOULDBLOCK (held)", name, err)
	}
	lf.Close()
	undo()
	if e := journalOf(t, j, fd); e != nil {
		t.Errorf("entry %+v left after the widening", e)
	}
	if m := modeOf(t, f); m != 0 {
		t.Errorf("%s: %04o, want 0000", f, m)
	}
	// Renamed since its last widening: the record names where it is now,
	// not the path remembered for it (jpaths).
	moved := filepath.Join(dir, "moved")
	must(t, os.Rename(f, moved))
	undo = widenFd(fd)
	if e := journalOf(t, j, fd); e == nil || e.path != moved {
		t.Errorf("entry %+v after a rename, want the path %s", e, moved)
	}
	undo()
	must(t, os.Rename(moved, f))

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

	// Many widenings one after the other: the file is cut back whenever
	// none stands, so it stays small.
	for range 2000 {
		widenFd(fd)()
	}
	if st, err := os.Stat(name); err != nil || st.Size() > journalTrimAt+4096 {
		t.Errorf("journal after 2000 widenings: %v %v, want at most about %d bytes", st.Size(), err, journalTrimAt)
	}
	if b, err := os.ReadFile(name); err != nil {
		t.Error(err)
	} else if standing, ok := parseJournal(b); !ok || len(standing) != 0 {
		t.Errorf("journal %s holds %v (a journal: %v), want nothing standing", name, standing, ok)
	}
	EndWidenJournal()
	if ents, err := os.ReadDir(j); err != nil || len(ents) != 0 {
		t.Errorf("journal dir holds %v (%v) after the end, want nothing", ents, err)
	}
	undo = widenFd(fd) // a widening after the end makes a new file
	if e := journalOf(t, j, fd); e == nil {
		t.Errorf("no record of a widening after EndWidenJournal")
	}
	EndWidenJournal() // one stands: the file stays
	if ents, _ := os.ReadDir(j); len(ents) != 1 {
		t.Errorf("journal dir holds %v while a widening stands, want its file", ents)
	}
	undo()
	EndWidenJournal()
	if ents, _ := os.ReadDir(j); len(ents) != 0 {
		t.Errorf("journal dir holds %v after the end, want nothing", ents)
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
// dir above it, after the file) whose widening stands in the journal of a dead
// process (an unlocked file) and that still has the widened mode, and removes
// the journal; a live process's journal (locked) stays with its modes; a
// widening with a "done" record, one cut short by the kill, and one whose
// file's mode changed since are left alone; one whose path cannot be reached
// keeps its journal, without those put back. A mode left widened by a killed
// process stayed so for good.
func TestUnprivRepairWidened(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	j := filepath.Join(dir, "journal")
	must(t, os.Mkdir(j, 0o700))

	file := func(name string, mode uint32) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(name), 0o644))
		must(t, unix.Chmod(p, mode))
		return p
	}
	widening := func(p string, saved, set uint32) string {
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		e := journalEntry{dev: uint64(st.Dev), ino: st.Ino, saved: saved, set: set, path: p}
		return string(e.marshal())
	}
	done := func(p string) string {
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		return string(doneRecord(wideKey{uint64(st.Dev), st.Ino}))
	}
	journalFile := func(name string, records ...string) string {
		p := filepath.Join(j, name)
		must(t, os.WriteFile(p, []byte(journalMagic+strings.Join(records, "")), 0o600))
		return p
	}

	a := file("dead", 0o400)
	c := file("changed", 0o600)
	fin := file("finished", 0o400) // widened and put back; chmodded to 0400 since
	torn := file("torn", 0o400)
	sudo := file("sudo", 0o4511)
	n := filepath.Join(dir, "n")
	must(t, os.Mkdir(n, 0o755))
	in := filepath.Join(n, "in")
	must(t, os.WriteFile(in, []byte("in"), 0o400))
	tornRec := widening(torn, 0, 0o400)
	deadJ := journalFile("1-dead"+journalSuffix,
		widening(a, 0o600, 0o700), // rewritten by the next one
		widening(a, 0, 0o400),
		widening(c, 0, 0o400),
		widening(fin, 0, 0o400), done(fin),
		widening(sudo, 0o4111, 0o4511),
		widening(in, 0, 0o400),
		widening(n, 0, 0o500),
		tornRec[:len(tornRec)-1]) // no newline: the kill cut it short
	must(t, unix.Chmod(n, 0o500))

	b := file("live", 0o400)
	liveJ := journalFile("2-live"+journalSuffix, widening(b, 0, 0o400))
	lf, err := os.Open(liveJ)
	must(t, err)
	defer lf.Close()
	must(t, unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB))

	// A dead process's journal with one widening it cannot reach now (in a
	// dir of mode 0000 that no widening opened) and one it can.
	shut := filepath.Join(dir, "shut")
	must(t, os.Mkdir(shut, 0o755))
	far := filepath.Join(shut, "far")
	must(t, os.WriteFile(far, nil, 0o400))
	near := file("near", 0o400)
	keptJ := journalFile("3-kept"+journalSuffix, widening(far, 0, 0o400), widening(near, 0, 0o400))
	must(t, unix.Chmod(shut, 0))

	notJ := journalFile("4-bad" + journalSuffix)
	must(t, os.WriteFile(notJ, []byte("not a journal"), 0o600))
	other := filepath.Join(j, "1-2-3") // not a journal's name: left alone
	must(t, os.WriteFile(other, []byte("x"), 0o600))

	RepairWidened(j)

	must(t, unix.Chmod(n, 0o100)) // to see into it
	for _, c := range []struct {
		name, path string
		want       uint32
	}{
		{"dead writer", a, 0},
		{"mode changed since", c, 0o600},
		{"done record", fin, 0o400},
		{"cut-short record", torn, 0o400},
		{"set-id file", sudo, 0o4111},
		{"file in a widened dir", in, 0},
		{"live writer", b, 0o400},
		{"reachable one of a kept journal", near, 0},
	} {
		if m := modeOf(t, c.path); m != c.want {
			t.Errorf("%s: %s is %04o after the repair, want %04o", c.name, c.path, m, c.want)
		}
	}
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	if exists(deadJ) || exists(notJ) {
		t.Errorf("dead or broken journal left: %v %v", exists(deadJ), exists(notJ))
	}
	if !exists(liveJ) || !exists(other) {
		t.Errorf("live journal or foreign file removed: %v %v", exists(liveJ), exists(other))
	}
	kb, err := os.ReadFile(keptJ)
	must(t, err)
	if standing, ok := parseJournal(kb); !ok || len(standing) != 1 {
		t.Errorf("kept journal has %v standing, want only %s", standing, far)
	} else {
		for _, e := range standing {
			if e.path != far {
				t.Errorf("kept journal has %s standing, want %s", e.path, far)
			}
		}
	}

	must(t, unix.Chmod(shut, 0o755)) // reachable now: the next repair does it
	RepairWidened(j)                 // again (as a second process would)
	if m := modeOf(t, far); m != 0 {
		t.Errorf("%s: %04o after a later repair, want 0000", far, m)
	}
	if exists(keptJ) {
		t.Errorf("journal %s left once all is put back", keptJ)
	}
	if m := modeOf(t, b); m != 0o400 {
		t.Errorf("live writer's file: %04o after a second repair, want 0400", m)
	}
	if m := modeOf(t, a); m != 0 {
		t.Errorf("dead writer's file: %04o after a second repair, want 0000", m)
	}
	lf.Close() // its process is gone now
	RepairWidened(j)
	if m := modeOf(t, b); m != 0 || exists(liveJ) {
		t.Errorf("once unlocked: %s is %04o (journal there: %v), want 0000 and none", b, modeOf(t, b), exists(liveJ))
	}
	must(t, unix.Chmod(n, 0o755))
}

// TestParseJournalPaths: a path is read back byte for byte, newlines, spaces,
// quotes and bytes that are not UTF-8 included, and a record cut anywhere is
// skipped, never misread.
func TestParseJournalPaths(t *testing.T) {
	for _, p := range []string{"/a b/\"c\"", "/x\ny", "/\xff\xfe/\x00", "/é/ d 1 2"} {
		e := journalEntry{dev: 7, ino: 9, saved: 0, set: 0o400, path: p}
		rec := e.marshal()
		standing, ok := parseJournal(append([]byte(journalMagic), rec...))
		if got := standing[wideKey{7, 9}]; !ok || got == nil || *got != e {
			t.Errorf("%q: read back %+v", p, got)
		}
		for i := range len(rec) {
			// cut short, then ended with a newline as journalAppend does when it cannot cut it off
			for _, tail := range []string{"", "\n"} {
				if tail != "" && i == len(rec)-1 {
					continue // the whole record
				}
				b := append([]byte(journalMagic), rec[:i]...)
				standing, _ := parseJournal(append(b, tail...))
				if len(standing) != 0 {
					t.Errorf("%q cut at %d%q: read %+v", p, i, tail, standing[wideKey{7, 9}])
				}
			}
		}
	}
}
