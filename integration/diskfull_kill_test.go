package integration

// A command SIGKILLed on a nearly full disk: the retry of the same command must
// find the space the killed one took (rev17-crash FINDINGS 1). Its temp files
// used to stay until gc: a killed import's or commit's blob-* temp file, a killed
// load's spool (removed by the next load only when older than 5 minutes).

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// smallTmpfs mounts a tmpfs of sizeMiB and returns its mount point; it is
// unmounted when t ends.
func smallTmpfs(t *testing.T, sizeMiB int) string {
	t.Helper()
	testenv.RequireRoot(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(sizeMiB)+"m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	return mnt
}

// usedBytes is what the filesystem of dir has in use.
func usedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// killMidStream starts `layerfs --root root args...` reading stdin, feeds it the
// first feed bytes of input, waits until the store's filesystem holds wantUsed
// bytes more than before (the command wrote them into its temp files; the rest
// of stdin never comes, so it stalls there) and kills it with SIGKILL.
func killMidStream(t *testing.T, root, input string, feed, wantUsed int64, args ...string) {
	t.Helper()
	base := usedBytes(t, root)
	cmd := exec.Command(layerfsBin, append([]string{"--root", root}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(input)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	go io.Copy(stdin, io.LimitReader(f, feed)) // stdin stays open: the command waits for more
	deadline := time.Now().Add(30 * time.Second)
	for usedBytes(t, root)-base < wantUsed && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	used := usedBytes(t, root) - base
	cmd.Process.Kill()
	cmd.Wait()
	stdin.Close()
	if used < wantUsed {
		t.Fatalf("layerfs %s wrote %d bytes of its %d-byte input in 30s (stderr %q), want %d before the kill", strings.Join(args, " "), used, feed, stderr.String(), wantUsed)
	}
}

// storeTmp lists the store's temp dir, made first if it is not there.
func storeTmp(t *testing.T, root string) []string {
	t.Helper()
	dir := filepath.Join(root, "store", ".layerfs", "tmp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestKilledImportRetryOnFullDisk: an import killed part-way leaves no temp file
// (its blob temp is unnamed until placed), so its retry fits in the space there
// is. Before, a 20 MiB blob-* file stayed and the retry failed with ENOSPC.
func TestKilledImportRetryOnFullDisk(t *testing.T) {
	mnt := smallTmpfs(t, 40)
	root := filepath.Join(mnt, "root")
	big := randomTar(t, 24<<20)
	storeTmp(t, root) // the store's dirs, before the space is measured
	killMidStream(t, root, big, 21<<20, 18<<20, "import", "-q", "-", "big:1")
	if got := storeTmp(t, root); len(got) != 0 {
		t.Errorf("a killed import left %v in the store's tmp/, want nothing", got)
	}
	if r := runWith(t, cmdOpts{root: root}, "import", "-q", big, "big:1"); r.Code != 0 {
		t.Fatalf("import after a killed one on a nearly full disk: exit %d, stderr %q; want it to fit", r.Code, r.Stderr)
	}
}

// TestKilledLoadRetryOnFullDisk: a load killed part-way leaves its spool, which
// the next load removes at once (the spool is locked before it has its load-*
// name, so an unlocked one is a dead load's), and the retry fits. Before, a spool
// younger than 5 minutes stayed and the retry failed with ENOSPC.
func TestKilledLoadRetryOnFullDisk(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	mustRunIn(t, src, "import", "-q", randomTar(t, 16<<20), "big:1")
	archive := filepath.Join(t.TempDir(), "big.tar")
	mustRunIn(t, src, "save", "-q", "-o", archive, "big:1")
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	mnt := smallTmpfs(t, 28)
	root := filepath.Join(mnt, "root")
	storeTmp(t, root)
	killMidStream(t, root, archive, fi.Size()-(1<<20), fi.Size()-(3<<20), "load", "-q")
	if got := storeTmp(t, root); len(got) == 0 {
		t.Fatalf("a killed load left nothing in tmp/: the test no longer kills it mid-spool")
	}
	r := runWith(t, cmdOpts{root: root}, "load", "-q", "-i", archive)
	if r.Code != 0 || r.Stdout != "Loaded image: big:1\n" {
		t.Fatalf("load after a killed one on a nearly full disk: exit %d, stdout %q, stderr %q; want it to fit", r.Code, r.Stdout, r.Stderr)
	}
	if got := storeTmp(t, root); len(got) != 0 {
		t.Errorf("after the retried load tmp/ holds %v, want the killed load's spool gone", got)
	}
}

// TestNoSpaceSaysGCOnlyWithLeftovers: an import that runs out of space says that
// `layerfs gc` frees leftover temp files when the store's tmp/ holds some (a named
// blob temp file as a killed writer on a filesystem without O_TMPFILE, or an older
// layerfs, leaves), in its one line, and not when there are none.
func TestNoSpaceSaysGCOnlyWithLeftovers(t *testing.T) {
	mnt := smallTmpfs(t, 24)
	root := filepath.Join(mnt, "root")
	big := randomTar(t, 16<<20)
	storeTmp(t, root)
	leftover := filepath.Join(root, "store", ".layerfs", "tmp", "blob-killed")
	if err := os.WriteFile(leftover, make([]byte, 12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runWith(t, cmdOpts{root: root}, "import", "-q", big, "big:1")
	oneLineError(t, "import with a leftover temp file", r, "")
	if !strings.Contains(r.Stderr, "`layerfs gc` frees 1 leftover temp file") {
		t.Errorf("import out of space with a 12 MiB leftover: stderr %q, want it to name `layerfs gc`", r.Stderr)
	}
	if out := mustRunIn(t, root, "gc"); !strings.Contains(out, "leftover temporary file") {
		t.Errorf("gc = %q, want it to free the leftover", out)
	}
	// no leftovers: the disk is just full
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runWith(t, cmdOpts{root: root}, "import", "-q", big, "big:1")
	oneLineError(t, "import on a full disk", r, "")
	if strings.Contains(r.Stderr, "layerfs gc") {
		t.Errorf("import out of space with nothing left over: stderr %q, want no word of gc", r.Stderr)
	}
	os.Remove(filler)
	mustRunIn(t, root, "import", "-q", big, "big:1")
}
