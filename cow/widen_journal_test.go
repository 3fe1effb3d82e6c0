package cow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
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

// recordOf is the journal record of a widening of p from saved to set.
func recordOf(t *testing.T, p string, saved, set uint32) string {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	e := journalEntry{dev: uint64(st.Dev), ino: st.Ino, saved: saved, set: set, path: p}
	return string(e.marshal())
}

// writeJournal makes the journal file name in j holding records.
func writeJournal(t *testing.T, j, name string, records ...string) string {
	t.Helper()
	p := filepath.Join(j, name)
	must(t, os.WriteFile(p, []byte(journalMagic+strings.Join(records, "")), 0o600))
	return p
}

// lockedJournal makes the journal file name in j, held locked until the test
// ends (or the returned func): the journal of a live process.
func lockedJournal(t *testing.T, j, name string, records ...string) (string, func()) {
	t.Helper()
	p := writeJournal(t, j, name, records...)
	f, err := os.Open(p)
	must(t, err)
	must(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	t.Cleanup(func() { f.Close() })
	return p, func() { f.Close() }
}

// TestUnprivRepairStacked: a widening stacked on another process's (A makes a
// 0000 dir 0100 to search it; B finds 0100, saves it and makes it 0500) is
// unwound whichever dies first and in whatever order the journals are read:
// both dead, B's record is put back before A's; A dead and B alive, A's record
// is kept until B has put back its 0100, and the next repair makes it 0000.
// The repair dropped A's record (its mode was not A's 0100), and B then put
// back 0100 for good.
func TestUnprivRepairStacked(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	j := filepath.Join(dir, "layers", ".widened")
	must(t, os.MkdirAll(j, 0o700))
	sec := filepath.Join(dir, "layers", "l1", "sec")
	must(t, os.MkdirAll(sec, 0o755))
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	journals := func() []string {
		ents, err := os.ReadDir(j)
		must(t, err)
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		return n
	}

	// Both dead, in both orders of their journals' names.
	for _, names := range [][2]string{{"1-b", "2-a"}, {"2-b", "1-a"}} {
		must(t, unix.Chmod(sec, 0o500))
		writeJournal(t, j, names[0]+journalSuffix, recordOf(t, sec, 0o100, 0o500))
		writeJournal(t, j, names[1]+journalSuffix, recordOf(t, sec, 0, 0o100))
		RepairWidened(j)
		if m := modeOf(t, sec); m != 0 || len(journals()) != 0 {
			t.Errorf("B's journal %s, A's %s, both dead: %04o after the repair, journals %v; want 0000 and none", names[0], names[1], m, journals())
		}
	}

	// A dead, B alive (a journal another process holds locked).
	for _, names := range [][2]string{{"1-b", "2-a"}, {"2-b", "1-a"}} {
		must(t, unix.Chmod(sec, 0o500))
		liveJ, end := lockedJournal(t, j, names[0]+journalSuffix, recordOf(t, sec, 0o100, 0o500))
		deadJ := writeJournal(t, j, names[1]+journalSuffix, recordOf(t, sec, 0, 0o100))
		RepairWidened(j)
		if m := modeOf(t, sec); m != 0o500 || !exists(deadJ) || !exists(liveJ) {
			t.Errorf("%v: while B lives, %04o and journals %v; want 0500 and both", names, m, journals())
		}
		b, err := os.ReadFile(deadJ)
		must(t, err)
		if standing, ok := parseJournal(b); !ok || len(standing) != 1 {
			t.Errorf("%v: A's journal holds %v after the repair, want its record", names, standing)
		}
		// B ends: puts back its saved 0100 (its mode is still its 0500) and
		// removes its journal.
		must(t, unix.Chmod(sec, 0o100))
		os.Remove(liveJ)
		end()
		RepairWidened(j)
		if m := modeOf(t, sec); m != 0 || len(journals()) != 0 {
			t.Errorf("%v: once B is done, %04o and journals %v; want 0000 and none", names, m, journals())
		}
	}

	// B is this process, widening with the real code (its journal is
	// locked, its widening stands in wide): its own putting back composes.
	useJournal(t, j)
	must(t, unix.Chmod(sec, 0o100))
	deadJ := writeJournal(t, j, "1-a"+journalSuffix, recordOf(t, sec, 0, 0o100))
	fd, err := unix.Open(sec, unix.O_PATH|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)
	undo := widenFd(fd)
	if m := modeOf(t, sec); m != 0o500 {
		t.Fatalf("widened: %04o, want 0500", m)
	}
	RepairWidened(j)
	if m := modeOf(t, sec); m != 0o500 || !exists(deadJ) {
		t.Errorf("while this process has it widened: %04o, A's journal there: %v; want 0500 and it", m, exists(deadJ))
	}
	undo()
	EndWidenJournal()
	if m := modeOf(t, sec); m != 0o100 {
		t.Errorf("after this process's widening: %04o, want the 0100 it saved", m)
	}
	RepairWidened(j)
	if m := modeOf(t, sec); m != 0 || len(journals()) != 0 {
		t.Errorf("after the next repair: %04o and journals %v; want 0000 and none", m, journals())
	}

	// A dead record whose mode changed since, with no widening of the inode
	// standing anywhere (a live journal of another inode), is dropped.
	other := filepath.Join(dir, "layers", "l1", "other")
	must(t, os.WriteFile(other, nil, 0o400))
	must(t, unix.Chmod(sec, 0o700))
	_, end := lockedJournal(t, j, "1-live"+journalSuffix, recordOf(t, other, 0, 0o400))
	deadJ = writeJournal(t, j, "2-a"+journalSuffix, recordOf(t, sec, 0, 0o100))
	RepairWidened(j)
	if m := modeOf(t, sec); m != 0o700 || exists(deadJ) {
		t.Errorf("a changed mode, nothing live on it: %04o, journal there: %v; want 0700 and none", m, exists(deadJ))
	}
	end()
}

// TestUnprivRepairTrusts: the repair chmods only paths inside the store's own
// trees (layers/, work/, tmp/ beside the journal dir's layers/), by their real
// paths, reads only regular journal files, and reads no journal dir that is a
// symlink. It chmodded any path any *.journal named, and a FIFO named
// x.journal hung it (and every command) for good.
func TestUnprivRepairTrusts(t *testing.T) {
	dir, ok := asNobody(t)
	if !ok {
		return
	}
	// The store through a symlink (as --root may be): records name real paths.
	real := filepath.Join(dir, "real")
	must(t, os.Mkdir(real, 0o755))
	root := filepath.Join(dir, "root")
	must(t, os.Symlink(real, root))
	j := filepath.Join(root, "layers", ".widened")
	must(t, os.MkdirAll(j, 0o700))
	file := func(p string) string {
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, nil, 0o600))
		return p
	}
	layer := file(filepath.Join(real, "layers", "l1", "f"))
	upper := file(filepath.Join(real, "work", "c1", "upper", "f"))
	scratch := file(filepath.Join(real, "tmp", "step-1", "upper", "f"))
	outside := file(filepath.Join(dir, "outside"))
	beside := file(filepath.Join(real, "other", "f"))
	dotdot := file(filepath.Join(real, "layers", "l1", "g"))
	viaLink := file(filepath.Join(real, "layers", "l2", "f"))
	must(t, os.Symlink(filepath.Join(real, "layers", "l2"), filepath.Join(real, "layers", "l3")))
	rec := func(p, as string) string {
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		e := journalEntry{dev: uint64(st.Dev), ino: st.Ino, saved: 0o644, set: 0o600, path: as}
		return string(e.marshal())
	}
	writeJournal(t, j, "1-x"+journalSuffix,
		rec(layer, layer), rec(upper, upper), rec(scratch, scratch),
		rec(outside, outside), rec(beside, beside),
		rec(dotdot, real+"/layers/../layers/l1/g"),
		rec(viaLink, filepath.Join(real, "layers", "l3", "f")))
	must(t, unix.Mkfifo(filepath.Join(j, "2-fifo"+journalSuffix), 0o600))
	must(t, os.Mkdir(filepath.Join(j, "3-dir"+journalSuffix), 0o700))

	repaired := make(chan struct{})
	go func() { RepairWidened(j); close(repaired) }()
	select {
	case <-repaired:
	case <-time.After(10 * time.Second):
		t.Fatal("RepairWidened hangs on a FIFO named *.journal")
	}
	for _, c := range []struct {
		path string
		want uint32
	}{
		{layer, 0o644}, {upper, 0o644}, {scratch, 0o644},
		{outside, 0o600}, {beside, 0o600}, {dotdot, 0o600}, {viaLink, 0o600},
	} {
		if m := modeOf(t, c.path); m != c.want {
			t.Errorf("%s: %04o after the repair, want %04o", c.path, m, c.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(j, "1-x"+journalSuffix)); err == nil {
		t.Errorf("dead journal left")
	}

	// A journal dir that is a symlink is not read.
	must(t, unix.Chmod(layer, 0o600))
	other := filepath.Join(real, "layers", ".other")
	must(t, os.Mkdir(other, 0o700))
	writeJournal(t, other, "1-x"+journalSuffix, rec(layer, layer))
	linked := filepath.Join(real, "layers", ".linked")
	must(t, os.Symlink(other, linked))
	RepairWidened(linked)
	if m := modeOf(t, layer); m != 0o600 {
		t.Errorf("through a symlinked journal dir: %04o, want 0600 (not read)", m)
	}
}

// TestRepairSkipsForeignJournal: a journal file that is not the user's own (a
// shared store's layers dir another user can write to) is not read. Run as
// root, taken for an unprivileged process of nobody's.
func TestRepairSkipsForeignJournal(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	j := filepath.Join(dir, "layers", ".widened")
	must(t, os.MkdirAll(j, 0o700))
	f := filepath.Join(dir, "layers", "l1", "f")
	must(t, os.MkdirAll(filepath.Dir(f), 0o755))
	must(t, os.WriteFile(f, nil, 0o600))
	var st unix.Stat_t
	must(t, unix.Lstat(f, &st))
	e := journalEntry{dev: uint64(st.Dev), ino: st.Ino, saved: 0o644, set: 0o600, path: f}
	p := writeJournal(t, j, "1-x"+journalSuffix, string(e.marshal()))
	must(t, os.Chown(p, 65534, 65534)) // not root's
	defer func(u bool) { unprivileged = u }(unprivileged)
	unprivileged = true
	RepairWidened(j)
	if m := modeOf(t, f); m != 0o600 {
		t.Errorf("a journal of another user's: %04o, want 0600 (not read)", m)
	}
	must(t, os.Chown(p, 0, 0)) // the user's own: read
	RepairWidened(j)
	if m := modeOf(t, f); m != 0o644 {
		t.Errorf("a journal of the user's own: %04o, want 0644", m)
	}
}
