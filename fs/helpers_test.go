package fs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// Helper mode: a page fault on a FUSE mount served by this very process can
	// deadlock the Go runtime (a faulting thread cannot be stopped for GC while the
	// server goroutines are), so mmap tests run their client side in a child.
	if p := os.Getenv("LAYERFS_TEST_MMAP_WRITE"); p != "" {
		os.Exit(mmapWrite(p))
	}
	if p := os.Getenv("LAYERFS_TEST_LOCK"); p != "" {
		os.Exit(tryLocks(p))
	}
	if os.Getenv("LAYERFS_TEST_FILEOPS") != "" {
		os.Exit(fileOps()) // killpriv_test.go
	}
	if m := os.Getenv("LAYERFS_TEST_UMASK"); m != "" {
		os.Exit(umaskOps(m, os.Args[1:])) // acl_test.go
	}
	if p := os.Getenv("LAYERFS_TEST_BIG_WRITES"); p != "" {
		os.Exit(bigWrites(p)) // pause_test.go
	}
	if p := os.Getenv("LAYERFS_TEST_MMAP_HOLD"); p != "" {
		os.Exit(mmapHold(p)) // pause_test.go
	}
	if p := os.Getenv("LAYERFS_TEST_OPEN_LOOP"); p != "" {
		os.Exit(openLoop(p, os.Getenv("LAYERFS_TEST_OPEN_READ"))) // ptwrite_test.go
	}
	if d := os.Getenv("LAYERFS_TEST_SELF_WAIT"); d != "" {
		os.Exit(selfWait(d, os.Getenv("LAYERFS_TEST_SELF_WAIT_HOW"))) // abort_test.go
	}
	os.Exit(m.Run())
}

func mmapWrite(p string) int {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 9, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	copy(mem, "READ")
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := unix.Munmap(mem); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// union is one test mount with its dirs.
type union struct {
	mnt, upper, work string
	lowers           []string
	inos             InodeMaps // of lowers made by commitRebase
	passthrough      bool
	m                *MountPoint
}

// mountUnion mounts lowers (top first) with a fresh upper dir; it unmounts in Cleanup.
func mountUnion(t testing.TB, f cow.Format, lowers ...string) *union {
	t.Helper()
	return mountUnionMode(t, f, false, lowers...)
}

// mountUnionMode is mountUnion with Options.Passthrough set to pt.
func mountUnionMode(t testing.TB, f cow.Format, pt bool, lowers ...string) *union {
	t.Helper()
	testenv.RequireFUSE(t)
	d := t.TempDir()
	u := &union{mnt: filepath.Join(d, "mnt"), upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"), lowers: lowers, passthrough: pt}
	for _, p := range []string{u.mnt, u.upper, u.work} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Mount(u.mnt, Options{Lowers: lowers, Upper: u.upper, Work: u.work, Format: f, FsName: "layerfs-test", Passthrough: pt})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	u.m = m
	t.Cleanup(func() { u.unmount(t) })
	return u
}

func (u *union) unmount(t testing.TB) {
	if u.m == nil {
		return
	}
	if err := u.m.Unmount(); err != nil {
		t.Errorf("Unmount: %v", err)
		// Still mounted: detach it and end the connection, or Wait would
		// wait for good (and the test binary with it).
		unix.Unmount(u.mnt, unix.MNT_DETACH)
		AbortConnection(u.m.dev)
	}
	u.m.Wait()
	u.m = nil
}

func (u *union) remount(t testing.TB, f cow.Format) {
	t.Helper()
	u.unmount(t)
	m, err := Mount(u.mnt, Options{Lowers: u.lowers, Upper: u.upper, Work: u.work, Format: f, Passthrough: u.passthrough, InodeMaps: u.inos})
	if err != nil {
		t.Fatalf("Mount again: %v", err)
	}
	u.m = m
}

// tree writes a layer dir from a spec: path -> content; a trailing "/" makes a dir,
// "->target" a symlink.
func tree(t testing.TB, spec map[string]string) string {
	t.Helper()
	d := t.TempDir()
	for p, c := range spec {
		full := filepath.Join(d, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case len(p) > 0 && p[len(p)-1] == '/':
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		case len(c) > 2 && c[:2] == "->":
			if err := os.Symlink(c[2:], full); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	return string(b)
}

// tryLocks opens p read-write (a copy-up) and tries, without waiting, an fcntl
// write lock and then an exclusive flock; it prints what each returned.
func tryLocks(p string) int {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	fmt.Println("fcntl:", unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk))
	fmt.Println("flock:", unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	return 0
}

// inMount returns a command that runs script with sh in dir, a mount this process
// serves. It must not be made with cmd.Dir = dir (or Chroot): Go's child changes
// dir before its exec while the forking thread waits for the exec, vfork-style,
// holding its P, so a FUSE request the child sends then is served only if no
// stop-the-world comes first: a garbage collection deadlocks the test. sh
// changes dir after the exec.
func inMount(dir, script string) *exec.Cmd {
	return exec.Command("/bin/sh", "-c", `cd "$1" && shift && eval "$1"`, "sh", dir, script)
}

// mountOverlay mounts kernel overlayfs, the oracle, over lowers (top first) with
// a fresh upper and work dir in parent (a temp dir if ""), with extra options
// (",index=on"); it unmounts in Cleanup and skips t where overlayfs is missing.
func mountOverlay(t *testing.T, parent, extra string, lowers ...string) string {
	t.Helper()
	if parent == "" {
		parent = t.TempDir()
	}
	mnt, up, work := filepath.Join(parent, "mnt"), filepath.Join(parent, "upper"), filepath.Join(parent, "work")
	for _, d := range []string{mnt, up, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s%s", strings.Join(lowers, ":"), up, work, extra)
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		t.Skipf("kernel overlayfs unavailable: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}
