package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestRebaseOpenHandles writes through files opened before a Rebase that, as
// commit --rebase does, turns a copy of the old upper into the new top lower and
// deletes the old upper: the writes must land in the new stack, not in the deleted
// file. A file made by create(2) comes with a handle (served by this process), a
// lower file opened for writing in no-open mode has none.
func TestRebaseOpenHandles(t *testing.T) {
	lower := tree(t, map[string]string{"old": "0\n"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	created, err := os.OpenFile(p("created"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	must(t, err)
	defer created.Close()
	_, err = created.WriteString("one\n")
	must(t, err)
	both, err := os.OpenFile(p("both"), os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	defer both.Close()
	_, err = both.WriteAt([]byte("ab"), 0)
	must(t, err)
	rw, err := os.OpenFile(p("old"), os.O_RDWR|os.O_APPEND, 0)
	must(t, err)
	defer rw.Close()
	_, err = rw.WriteString("1\n")
	must(t, err)

	// Commit: the old upper's content becomes a new lower layer (a copy, as the
	// layer cache unpacks it), a fresh upper replaces it, the old one is removed.
	oldUpper := u.upper
	newUpper := commitRebase(t, u, []string{lower})
	must(t, os.RemoveAll(oldUpper))

	// A read first moves the handle to the new lower file; the write then copies up.
	b := make([]byte, 2)
	if _, err := both.ReadAt(b, 0); err != nil || string(b) != "ab" {
		t.Errorf("read of both after Rebase = %q, %v", b, err)
	}
	_, err = both.WriteAt([]byte("c"), 2)
	must(t, err)
	_, err = created.WriteString("two\n")
	must(t, err)
	_, err = rw.WriteString("2\n")
	must(t, err)
	for name, want := range map[string]string{"created": "one\ntwo\n", "old": "0\n1\n2\n", "both": "abc"} {
		if got := readFile(t, p(name)); got != want {
			t.Errorf("%s through the mount after Rebase = %q, want %q", name, got, want)
		}
		if got, _ := os.ReadFile(filepath.Join(newUpper, name)); string(got) != want {
			t.Errorf("%s in the new upper = %q, want %q", name, got, want)
		}
	}
	buf := make([]byte, 64)
	n, err := rw.ReadAt(buf, 0)
	if string(buf[:n]) != "0\n1\n2\n" {
		t.Errorf("read through the fd opened before Rebase = %q, %v", buf[:n], err)
	}
}

// TestRebasePassthroughWritesLand: in passthrough mode the kernel writes through
// files opened before a Rebase to the old upper's files itself; when such a file
// is closed, what was written after the Rebase lands in the new stack.
func TestRebasePassthroughWritesLand(t *testing.T) {
	lower := tree(t, map[string]string{"old": "0\n", "kept": "k\n"})
	u := mountUnionMode(t, cow.FormatOCI, true, lower)
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	created, err := os.OpenFile(p("created"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	must(t, err)
	_, err = created.WriteString("one\n")
	must(t, err)
	rw, err := os.OpenFile(p("old"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = rw.WriteString("1\n")
	must(t, err)
	idle, err := os.OpenFile(p("kept"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = idle.WriteString("1\n")
	must(t, err)

	oldUpper := u.upper
	newUpper := commitRebase(t, u, []string{lower})
	must(t, os.RemoveAll(oldUpper))

	_, err = created.WriteString("two\n")
	must(t, err)
	_, err = rw.WriteString("2\n")
	must(t, err)
	must(t, created.Close())
	must(t, rw.Close())
	must(t, idle.Close()) // unchanged since the Rebase: nothing to land

	want := map[string]string{"created": "one\ntwo\n", "old": "0\n1\n2\n"}
	// RELEASE reaches the server after close(2) returns.
	deadline := time.Now().Add(5 * time.Second)
	for name, w := range want {
		for {
			got, _ := os.ReadFile(filepath.Join(newUpper, name))
			if string(got) == w {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s in the new upper = %q, want %q", name, got, w)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := readFile(t, p(name)); got != w {
			t.Errorf("%s through the mount = %q, want %q", name, got, w)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Lstat(filepath.Join(newUpper, "kept")); !os.IsNotExist(err) {
		t.Errorf("kept was copied into the new upper although unchanged since the Rebase (%v)", err)
	}
	if got := readFile(t, p("kept")); got != "k\n1\n" {
		t.Errorf("kept through the mount = %q", got)
	}
}

// TestRebaseLandedWriteVisible: a file in a subdir, open for writing through
// passthrough across a Rebase (which drops the kernel's entries), written and closed,
// and stat'ed right after close(2), racing the RELEASE that lands the write in the
// new upper: once landed, the mount shows it. The stat looks the path up again into
// new nodes that may resolve before the landing copies the file up; they used to
// keep that resolution (the committed copy) and its attributes for an hour.
func TestRebaseLandedWriteVisible(t *testing.T) {
	lower := tree(t, map[string]string{"data/": "", "data/a": "x\n"})
	u := mountUnionMode(t, cow.FormatOCI, true, lower)
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	lowers := []string{lower}
	want := "x\n"
	for i := 0; i < 15; i++ {
		w, err := os.OpenFile(p("data/a"), os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		newUpper := commitRebase(t, u, lowers)
		lowers = u.lowers

		_, err = w.WriteString("after\n")
		must(t, err)
		must(t, w.Close())
		os.Lstat(p("data/a")) // races the RELEASE
		want += "after\n"

		deadline := time.Now().Add(5 * time.Second)
		for {
			got, _ := os.ReadFile(filepath.Join(newUpper, "data/a"))
			if string(got) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: data/a in the new upper = %q, want %q", i, got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// The kernel's notices are sent by goroutines: give them time (a busy
		// machine delays them by tens of ms), not an hour (the attr timeout).
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			st := lstat(t, p("data/a"))
			if st.Size == int64(len(want)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: data/a through the mount: size %d, want %d (the landed write)", i, st.Size, len(want))
			}
		}
	}
}

// TestRebaseTwoInodesOneFile: no-open mode. A file open for writing across a
// Rebase keeps its inode, while a lookup after the Rebase makes another (the
// committed layer's copy has another inode number): writes through the old one
// must show through the new one too, not its stale page cache.
func TestRebaseTwoInodesOneFile(t *testing.T) {
	lower := tree(t, map[string]string{"data/": "", "data/w": ""})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	w, err := os.OpenFile(p("data/w"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	defer w.Close()
	_, err = w.WriteString("before\n")
	must(t, err)

	commitRebase(t, u, []string{lower})

	if got := readFile(t, p("data/w")); got != "before\n" {
		t.Fatalf("data/w after the Rebase = %q", got)
	}
	_, err = w.WriteString("after\n")
	must(t, err)
	want := "before\nafter\n"
	deadline := time.Now().Add(2 * time.Second) // the notice is sent by a goroutine
	for {
		got := readFile(t, p("data/w"))
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("data/w by path after a write through the fd opened before the Rebase = %q, want %q", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// commitRebase does what commit --rebase does to the mount: while paused, the upper
// dir's content becomes a new top lower layer over lowers (a copy, as the layer
// cache unpacks it) and a fresh upper dir replaces it. It returns the new upper,
// which u records, with the new lowers and the inode map that keeps the numbers.
func commitRebase(t *testing.T, u *union, lowers []string) string {
	t.Helper()
	committed := filepath.Join(t.TempDir(), "layer")
	must(t, u.m.Pause(context.Background()))
	defer u.m.Resume()
	if out, err := exec.Command("cp", "-a", u.upper, committed).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	newUpper := t.TempDir()
	u.lowers = append([]string{committed}, lowers...)
	if u.inos == nil {
		u.inos = InodeMaps{}
	}
	u.inos[committed] = filepath.Join(t.TempDir(), "inodes")
	must(t, u.m.KeepInodes(u.inos[committed], committed))
	must(t, u.m.Rebase(u.lowers, newUpper, u.inos))
	u.upper = newUpper
	return newUpper
}

// TestRebaseLandingSkipsReplacedName: a writer keeps its fd across commit
// --rebase while root renames another file over the name (write a temp, rename
// it into place). On a local filesystem the writer's later writes go to the
// unlinked old file; here they must not land on root's new file at close.
func TestRebaseLandingSkipsReplacedName(t *testing.T) {
	testenv.RequireRoot(t)
	lower := t.TempDir()
	u := mountUnionMode(t, cow.FormatOCI, true, lower)
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	walkable(t, u.mnt)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("a"), []byte("old-content"), 0o666))
	must(t, os.Chmod(p("a"), 0o666))
	nb := startUser(t, 65534, 65534)
	nb.do("open", p("a"), os.O_WRONLY)
	nb.do("write", p("a"), 0)
	commitRebase(t, u, []string{lower})
	must(t, os.WriteFile(p("a.tmp"), []byte("ROOT-ONLY"), 0o644))
	must(t, os.Rename(p("a.tmp"), p("a")))
	nb.do("write", p("a"), 1)
	nb.do("close", p("a"))
	time.Sleep(300 * time.Millisecond) // RELEASE, and a landing, come after close(2)
	if b := readFile(t, p("a")); b != "ROOT-ONLY" {
		t.Errorf("a, renamed over after the rebase, = %q: the old writer's data landed on it", b)
	}
}

// TestRebaseKeepsInodes: commit --rebase turns the upper dir into a new lower
// layer, unpacked anew; files the container changed or made must keep the st_ino
// (and readdir's d_ino) they had, across the rebase, a remount and a second
// rebase, as files only in the image's layers do. Hard links stay one inode.
func TestRebaseKeepsInodes(t *testing.T) {
	lower := tree(t, map[string]string{"etc/conf": "a\n", "etc/keep": "k\n", "bin/tool": "t\n"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("etc/conf"), []byte("changed\n"), 0o644)) // copied up
	must(t, os.MkdirAll(p("new/sub"), 0o755))
	must(t, os.WriteFile(p("new/sub/file"), []byte("new\n"), 0o644))
	must(t, os.Link(p("new/sub/file"), p("new/link")))
	must(t, os.Symlink("sub/file", p("new/sym")))
	must(t, os.Remove(p("bin/tool")))
	names := []string{"etc", "etc/conf", "etc/keep", "bin", "new", "new/sub", "new/sub/file", "new/link", "new/sym"}
	inos := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, n := range names {
			var st unix.Stat_t
			must(t, unix.Lstat(p(n), &st))
			m[n] = st.Ino
		}
		for _, d := range []string{"", "etc", "new", "new/sub"} {
			ents, err := os.ReadDir(p(d))
			must(t, err)
			for _, e := range ents {
				info, err := e.Info()
				must(t, err)
				m["readdir:"+filepath.Join(d, e.Name())] = info.Sys().(*syscall.Stat_t).Ino
			}
		}
		return m
	}
	before := inos()
	if before["new/sub/file"] != before["new/link"] {
		t.Fatalf("hard links differ before the commit")
	}
	same := func(when string) {
		t.Helper()
		after := inos()
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s: st_ino of %s = %d, was %d", when, k, after[k], v)
			}
		}
		if len(after) != len(before) {
			t.Errorf("%s: %d names, were %d", when, len(after), len(before))
		}
	}
	commitRebase(t, u, []string{lower})
	same("after the rebase")
	u.remount(t, cow.FormatOCI)
	same("after a remount")
	must(t, os.WriteFile(p("new/sub/file"), []byte("again\n"), 0o644)) // copy-up from the committed layer
	must(t, os.Chmod(p("etc"), 0o750))
	commitRebase(t, u, u.lowers)
	same("after a second rebase")
	if b := readFile(t, p("new/link")); b != "again\n" {
		t.Errorf("new/link = %q after the second rebase", b)
	}
}

// TestRebaseNewFilesOwnInodes: commit --rebase removes the old upper dir, whose
// files' inode numbers the inode map keeps for the committed layer; the upper dir's
// filesystem hands those numbers out again to the next files made in the new upper
// dir. A new file must not show the st_ino of a committed file (cp then refuses to
// copy one onto the other as "the same file", diff calls them equal unread).
func TestRebaseNewFilesOwnInodes(t *testing.T) {
	lower := tree(t, map[string]string{"etc/motd": "hi\n"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	for i := 0; i < 20; i++ {
		must(t, os.WriteFile(p(fmt.Sprintf("old%d", i)), []byte("old\n"), 0o644))
		must(t, os.Mkdir(p(fmt.Sprintf("olddir%d", i)), 0o755))
	}
	oldUpper := u.upper
	commitRebase(t, u, []string{lower})
	must(t, os.RemoveAll(oldUpper)) // as commit --rebase does
	for i := 0; i < 60; i++ {
		must(t, os.WriteFile(p(fmt.Sprintf("new%d", i)), []byte("new\n"), 0o644))
		must(t, os.Mkdir(p(fmt.Sprintf("newdir%d", i)), 0o755))
	}
	check := func(when string) {
		t.Helper()
		seen := map[uint64]string{}
		ents, err := os.ReadDir(u.mnt)
		must(t, err)
		for _, e := range ents {
			st := lstat(t, p(e.Name()))
			if o, ok := seen[st.Ino]; ok {
				t.Errorf("%s: %s and %s share st_ino %d", when, o, e.Name(), st.Ino)
			}
			seen[st.Ino] = e.Name()
		}
	}
	check("after the rebase")
	u.remount(t, cow.FormatOCI)
	check("after a remount")
}

// TestRebasePassthroughOpenStaysOpenable: in passthrough mode a file held open
// across commit --rebase (a log a daemon appends to) must stay openable by others:
// the Rebase pins the node to the old upper's file (the kernel's backing file of
// the open), and a pinned node refuses other opens (ETXTBSY) while the open lives.
// Keeping the file's inode number made every lookup after the Rebase find that
// pinned node again, so cat, or a second writer, failed until the daemon closed.
func TestRebasePassthroughOpenStaysOpenable(t *testing.T) {
	lower := tree(t, map[string]string{"etc/motd": "hi\n"})
	u := mountUnionMode(t, cow.FormatOCI, true, lower)
	if !u.m.fs.passthrough.Load() {
		t.Skip("the kernel refused FUSE passthrough")
	}
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	w, err := os.OpenFile(p("log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	must(t, err)
	defer w.Close()
	_, err = w.WriteString("one\n")
	must(t, err)
	oldUpper := u.upper
	commitRebase(t, u, []string{lower})
	must(t, os.RemoveAll(oldUpper))
	// The kernel's entries are dropped by a goroutine: the first opens may still
	// reach the pinned node.
	var b []byte
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err = os.ReadFile(p("log")); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || string(b) != "one\n" {
		t.Fatalf("log, while open for writing across the rebase, reads %q, %v", b, err)
	}
	f, err := os.OpenFile(p("log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("a second writer of log: %v", err)
	}
	f.Close()
	_, err = w.WriteString("two\n")
	must(t, err)
	must(t, w.Close())
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ = os.ReadFile(p("log")); string(b) == "one\ntwo\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log after its writer closed = %q, want the write made after the rebase too", b)
		}
	}
}

// TestRebaseDropsNamesTheLayerLacks: a name the committed layer lacks (a
// socket: commit's tar leaves them out) is gone after the Rebase, while a name
// that stays the node it was keeps the kernel's entry. Keeping every entry (to
// keep what is mounted on them) left the socket stat-able with nlink 0 though
// no listing showed it (found by a review).
func TestRebaseDropsNamesTheLayerLacks(t *testing.T) {
	lower := tree(t, map[string]string{"etc/motd": "hi\n"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("kept"), []byte("k"), 0o644))
	sfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	must(t, err)
	defer unix.Close(sfd)
	must(t, unix.Bind(sfd, &unix.SockaddrUnix{Name: p("gone")}))
	var before, st unix.Stat_t
	must(t, unix.Lstat(p("kept"), &before))
	must(t, unix.Lstat(p("gone"), &st))

	committed := filepath.Join(t.TempDir(), "layer")
	must(t, u.m.Pause(context.Background()))
	if out, err := exec.Command("cp", "-a", u.upper, committed).CombinedOutput(); err != nil {
		u.m.Resume()
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	must(t, os.Remove(filepath.Join(committed, "gone"))) // as commit's tar drops a socket
	maps := InodeMaps{committed: filepath.Join(t.TempDir(), "inodes")}
	must(t, u.m.KeepInodes(maps[committed], committed))
	must(t, u.m.Rebase([]string{committed, lower}, t.TempDir(), maps))
	u.m.Resume()

	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err = unix.Lstat(p("gone"), &st); errors.Is(err, unix.ENOENT) || time.Now().After(deadline) {
			break
		}
	}
	if !errors.Is(err, unix.ENOENT) {
		t.Errorf("lstat of a name the committed layer lacks, after the rebase: %v (nlink %d), want ENOENT", err, st.Nlink)
	}
	var after unix.Stat_t
	must(t, unix.Lstat(p("kept"), &after))
	if after.Ino != before.Ino {
		t.Errorf("kept's inode number went from %d to %d", before.Ino, after.Ino)
	}
}

// TestRebaseClosesOldUpperFds: no-open mode. Files written or read before a
// Rebase have data fds on the old upper's files, which commit --rebase removes:
// the Rebase closes them (a soak review found 1,817 such fds after six rebases,
// each keeping its deleted file's space, of any size, until the kernel forgot
// the node or the fd budget pushed it out). A file removed while open keeps its
// fd: it is all that is left of it.
func TestRebaseClosesOldUpperFds(t *testing.T) {
	lower := tree(t, map[string]string{"low": "l\n"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	for i := range 20 {
		must(t, os.WriteFile(p(fmt.Sprintf("f%02d", i)), []byte("data\n"), 0o644))
		readUncached(t, p(fmt.Sprintf("f%02d", i)))
	}
	gone, err := os.OpenFile(p("gone"), os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	defer gone.Close()
	_, err = gone.WriteString("gone\n")
	must(t, err)
	must(t, os.Remove(p("gone")))
	oldUpper := u.upper
	if n, _ := fdsUnder(t, oldUpper); n < 20 {
		t.Fatalf("%d fds on the upper's files before the Rebase, want 20 or more (the test's premise)", n)
	}

	commitRebase(t, u, []string{lower})
	if n, names := fdsUnder(t, oldUpper); n != 1 {
		t.Errorf("%d fds on the old upper's files after the Rebase, want 1 (the removed open file):\n%s", n, strings.Join(names, "\n"))
	}
	b := make([]byte, 16)
	must(t, unix.Fadvise(int(gone.Fd()), 0, 0, unix.FADV_DONTNEED))
	if n, err := gone.ReadAt(b, 0); string(b[:n]) != "gone\n" {
		t.Errorf("read of the removed file through its fd after the Rebase = %q, %v", b[:n], err)
	}
	if got := readUncached(t, p("f03")); got != "data\n" {
		t.Errorf("f03 after the Rebase = %q", got)
	}
}

// TestRebaseClosesPinnedOldUpperFds: a file that lost one of two names before a
// Rebase (ln f g; rm g) had its fd kept for the removal; the Rebase moved it
// aside and kept it, and the LRU then let go of the node with it: the old
// upper's copy, which the commit deletes, kept its space until the kernel forgot
// the inode (a code review). The Rebase hands such nodes to releaseNamed.
func TestRebaseClosesPinnedOldUpperFds(t *testing.T) {
	lower := tree(t, map[string]string{"low": "l\n"})
	u := mountUnion(t, cow.FormatOCI, lower)
	p := func(s string) string { return filepath.Join(u.mnt, s) }
	must(t, os.WriteFile(p("f"), []byte("data\n"), 0o644))
	must(t, os.Link(p("f"), p("g")))
	must(t, os.Remove(p("g")))
	oldUpper := u.upper
	if n, _ := fdsUnder(t, oldUpper); n != 1 {
		t.Fatalf("%d fds on the upper's files before the Rebase, want 1 (the test's premise)", n)
	}
	commitRebase(t, u, []string{lower})
	n, names := fdsUnder(t, oldUpper)
	for try := 0; n > 0 && try < 50; try++ {
		time.Sleep(100 * time.Millisecond)
		n, names = fdsUnder(t, oldUpper)
	}
	if n > 0 {
		t.Errorf("%d fds on the old upper's files after the Rebase, want none (f has its name):\n%s", n, strings.Join(names, "\n"))
	}
	if got := readUncached(t, p("f")); got != "data\n" {
		t.Errorf("f after the Rebase = %q", got)
	}
}
