package fs

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestMountReadahead: as root, the mount's bdi reads ahead readaheadKB, not the
// kernel's 128 KiB default, so a sequential read costs a READ per readaheadKB.
func TestMountReadahead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may set a bdi's readahead")
	}
	u := mountUnion(t, cow.FormatOverlay, tree(t, map[string]string{"f": "x"}))
	var st unix.Stat_t
	if err := unix.Stat(u.mnt, &st); err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if unix.Access(p, unix.W_OK) != nil {
		t.Skipf("%s is not writable here (read-only /sys?)", p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), fmt.Sprint(readaheadKB); got != want {
		t.Errorf("%s = %s, want %s", p, got, want)
	}
}

// TestMountFlags: the kernel's flags of the mount follow Options.Flags (the last of
// a pair wins); without any, nosuid,nodev as fusermount's.
func TestMountFlags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("suid, dev and noatime are for root")
	}
	for _, tc := range []struct {
		flags []string
		want  map[int64]bool // statfs flag -> set
	}{
		{nil, map[int64]bool{unix.ST_NOSUID: true, unix.ST_NODEV: true, unix.ST_NOEXEC: false, unix.ST_NOATIME: false}},
		{[]string{"suid", "nodev", "noatime"}, map[int64]bool{unix.ST_NOSUID: false, unix.ST_NODEV: true, unix.ST_NOATIME: true}},
		{[]string{"suid", "dev", "noexec", "noatime", "atime"}, map[int64]bool{unix.ST_NOSUID: false, unix.ST_NODEV: false, unix.ST_NOEXEC: true, unix.ST_NOATIME: false}},
		{[]string{"suid", "nosuid"}, map[int64]bool{unix.ST_NOSUID: true}},
	} {
		t.Run(strings.Join(tc.flags, ","), func(t *testing.T) {
			testenv.RequireFUSE(t)
			d := t.TempDir()
			mnt, upper, work := filepath.Join(d, "mnt"), filepath.Join(d, "upper"), filepath.Join(d, "work")
			for _, p := range []string{mnt, upper, work} {
				must(t, os.Mkdir(p, 0o755))
			}
			m, err := Mount(mnt, Options{Lowers: []string{tree(t, map[string]string{"f": "x"})}, Upper: upper, Work: work, Format: cow.FormatOverlay, FsName: "layerfs-test", Flags: tc.flags})
			if err != nil {
				t.Fatalf("Mount: %v", err)
			}
			t.Cleanup(func() {
				if err := m.Unmount(); err != nil {
					t.Errorf("unmount: %v", err)
				}
				m.Wait()
			})
			var st unix.Statfs_t
			must(t, unix.Statfs(mnt, &st))
			for f, want := range tc.want {
				if got := st.Flags&f != 0; got != want {
					t.Errorf("statfs flag %#x = %v, want %v (flags %#x)", f, got, want, st.Flags)
				}
			}
		})
	}
}

// TestFuseFdCloseOnExec: the mount's /dev/fuse fd is not inherited by programs
// this process starts (go-fuse leaves it open across exec for a direct mount): a
// child holding it keeps the connection alive after the server dies, and then
// waits on it for good.
func TestFuseFdCloseOnExec(t *testing.T) {
	mountUnion(t, cow.FormatOverlay, t.TempDir())
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l != "/dev/fuse" {
			continue
		}
		n++
		fd, _ := strconv.Atoi(e.Name())
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("/dev/fuse fd %d: flags %#x, %v; want FD_CLOEXEC", fd, flags, err)
		}
	}
	if n == 0 {
		t.Fatal("no /dev/fuse fd found")
	}
}

// TestMountOnFile: a mount on a regular file fails and leaves no mount: the
// kernel (and fusermount3) mount on a file, go-fuse's check then failed, and
// the mount stayed behind, dead, every access to the file ENOTCONN.
func TestMountOnFile(t *testing.T) {
	testenv.RequireFUSE(t)
	d := t.TempDir()
	f, lower, upper, work := filepath.Join(d, "file"), filepath.Join(d, "lower"), filepath.Join(d, "upper"), filepath.Join(d, "work")
	for _, p := range []string{lower, upper, work} {
		must(t, os.Mkdir(p, 0o755))
	}
	must(t, os.WriteFile(f, []byte("x"), 0o644))
	m, err := Mount(f, Options{Lowers: []string{lower}, Upper: upper, Work: work, Format: cow.FormatOverlay})
	if err == nil {
		t.Cleanup(func() { m.Unmount(); m.Wait() })
		t.Fatal("mounted on a regular file")
	}
	if !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("error %q does not say the mountpoint is not a directory", err)
	}
	b, rerr := os.ReadFile("/proc/self/mountinfo")
	must(t, rerr)
	if strings.Contains(string(b), " "+f+" ") {
		unix.Unmount(f, unix.MNT_DETACH)
		t.Errorf("the failed mount stayed behind on %s", f)
	}
	if b, err := os.ReadFile(f); err != nil || string(b) != "x" {
		t.Errorf("the file after the failed mount: %q, %v", b, err)
	}
}

// TestMaxReadWrite: READs stop at maxRead, whose replies fit go-fuse's splice
// pipe (past it go-fuse copies them and logs "trySplice" for each): the mount's
// max_read is maxRead, not go-fuse's MaxWrite (maxWrite, a whole MiB), and data
// written and read in 4 MiB calls comes back whole.
func TestMaxReadWrite(t *testing.T) {
	u := mountUnion(t, cow.FormatOverlay, tree(t, map[string]string{"f": "x"}))
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var opts string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == u.mnt {
			opts = f[len(f)-1]
		}
	}
	if want := fmt.Sprintf("max_read=%d", maxRead); !strings.Contains(","+opts+",", ","+want+",") {
		t.Errorf("mount options %q, want %s", opts, want)
	}
	var logged strings.Builder
	log.SetOutput(&logged)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	p := filepath.Join(u.mnt, "big")
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i / 4099)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// O_DIRECT reads of 4 MiB: READs as large as the mount lets them be.
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, len(data), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	if n, err := unix.Pread(fd, buf, 0); err != nil || n != len(data) {
		t.Fatalf("pread: %d, %v", n, err)
	}
	if string(buf) != string(data) {
		t.Error("read back other bytes than were written")
	}
	if strings.Contains(logged.String(), "trySplice") {
		t.Errorf("go-fuse could not splice a READ reply: %s", strings.SplitN(logged.String(), "\n", 2)[0])
	}
}
