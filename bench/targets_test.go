package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/layerfs/layerfs/bench/tree"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// benchSpec is the Go benchmarks' tree: the run.sh tree's shape, small enough that
// `go test -bench . -benchtime 1x ./bench/` stays brief.
var benchSpec = tree.Spec{Files: 2000, BinFiles: 400, CFiles: 2, BigSize: 64 << 20, MidSize: 16 << 20, Seed: 1}

// testSpec is TestWorkloadsAgree's tree.
var testSpec = tree.Spec{Files: 200, BinFiles: 40, CFiles: 1, BigSize: 2 << 20, MidSize: 1 << 20, Seed: 1}

var (
	dataDir    string // removed by TestMain
	scratchDir string // upper dirs and native copies: a tmpfs if there is one; removed by TestMain
	lowersMu   sync.Mutex
	lowers     = map[tree.Spec]string{}
)

func TestMain(m *testing.M) {
	var err error
	dataDir, err = os.MkdirTemp("", "layerfs-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Like run.sh, keep upper dirs and native writable copies off the shared disk,
	// whose journal stalls swamp what is measured; LAYERFS_BENCH_SCRATCH overrides.
	scratchDir = dataDir
	base := os.Getenv("LAYERFS_BENCH_SCRATCH")
	if base == "" {
		var st unix.Statfs_t
		if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC {
			base = "/dev/shm"
		}
	}
	if base != "" {
		if d, err := os.MkdirTemp(base, "layerfs-bench-"); err == nil {
			scratchDir = d
		}
	}
	code := m.Run()
	os.RemoveAll(scratchDir)
	os.RemoveAll(dataDir)
	os.Exit(code)
}

// lowerFor returns a generated lower tree for spec, shared by every test and
// benchmark of this process; its tar (for untar) is beside it as <dir>.tar.
func lowerFor(tb testing.TB, spec tree.Spec) string {
	tb.Helper()
	lowersMu.Lock()
	defer lowersMu.Unlock()
	if d, ok := lowers[spec]; ok {
		return d
	}
	d := filepath.Join(dataDir, fmt.Sprintf("lower-%d", len(lowers)))
	if err := tree.Generate(d, spec); err != nil {
		tb.Fatal(err)
	}
	if err := makeArchive(d, d+".tar"); err != nil {
		tb.Fatalf("makeArchive: %v", err)
	}
	lowers[spec] = d
	return d
}

// A target makes a dir that shows a lower tree: the lower itself or a copy of it
// (native), or a mount over it with a fresh upper dir.
type target struct {
	name string
	// setup returns the dir and a func that undoes everything setup made (the
	// caller must call it); write says the workload changes the dir (native then
	// copies the lower paths listed).
	setup func(tb testing.TB, lower string, write []string) (string, func())
}

var targets = []target{
	{"native", setupNative},
	{"overlay", setupOverlay},
	{"layerfs", setupLayerfs},
}

func setupNative(tb testing.TB, lower string, write []string) (string, func()) {
	if write == nil {
		return lower, func() {}
	}
	d := tempDir(tb)
	for _, p := range write {
		if err := copyTree(filepath.Join(lower, p), filepath.Join(d, p)); err != nil {
			os.RemoveAll(d)
			tb.Fatal(err)
		}
	}
	return d, func() { os.RemoveAll(d) }
}

// tempDir makes a dir under scratchDir; unlike tb.TempDir it can be removed early.
func tempDir(tb testing.TB) string {
	d, err := os.MkdirTemp(scratchDir, "t-")
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// scratch makes mnt, upper and work dirs in a fresh temp dir d.
func scratch(tb testing.TB) (d, mnt, upper, work string) {
	d = tempDir(tb)
	mnt, upper, work = filepath.Join(d, "mnt"), filepath.Join(d, "upper"), filepath.Join(d, "work")
	for _, p := range []string{mnt, upper, work} {
		if err := os.Mkdir(p, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	return d, mnt, upper, work
}

func setupOverlay(tb testing.TB, lower string, _ []string) (string, func()) {
	testenv.RequireRoot(tb)
	d, mnt, upper, work := scratch(tb)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		os.RemoveAll(d)
		tb.Skipf("kernel overlayfs unavailable: %v", err)
	}
	return mnt, func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			tb.Errorf("unmount %s: %v", mnt, err)
			return
		}
		os.RemoveAll(d)
	}
}

func setupLayerfs(tb testing.TB, lower string, _ []string) (string, func()) {
	testenv.RequireFUSE(tb)
	d, mnt, upper, work := scratch(tb)
	m, err := fs.Mount(mnt, fs.Options{Lowers: []string{lower}, Upper: upper, Work: work, Format: cow.FormatOverlay, FsName: "layerfs-bench"})
	if err != nil {
		os.RemoveAll(d)
		tb.Fatalf("fs.Mount: %v", err)
	}
	var st unix.Stat_t
	statErr := unix.Stat(mnt, &st)
	return mnt, func() {
		if err := m.Unmount(); err != nil {
			tb.Errorf("Unmount: %v", err)
			// Still busy (under heavy load, once): detach it and end the
			// connection, so the run leaves no mount and Wait returns.
			unix.Unmount(mnt, unix.MNT_DETACH)
			if statErr == nil {
				fs.AbortConnection(st.Dev)
			}
		}
		m.Wait()
		os.RemoveAll(d)
	}
}

// copyTree copies a file or dir tree (regular files, dirs, symlinks) like cp -a
// without owners.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(out, fi.Mode().Perm())
		case fi.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, out)
		default:
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, b, fi.Mode().Perm())
		}
	})
}
