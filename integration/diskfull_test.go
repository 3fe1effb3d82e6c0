package integration

// Full-disk hunt: a store root on a small ext4 that is filled up so that a command
// runs out of space part-way. Every such run must fail with one line naming what
// it wrote and leave the store as it was; once space is freed it succeeds.

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
	"golang.org/x/sys/unix"
)

// smallExt4 mounts a fresh ext4 of sizeMiB (1 KiB blocks, nothing reserved for
// root, so every free block is one a command can take) and returns its mount
// point; it is unmounted when t ends.
func smallExt4(t *testing.T, sizeMiB int) string {
	t.Helper()
	testenv.RequireRoot(t)
	mkfs := testenv.RequireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(int64(sizeMiB) << 20)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-b", "1024", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", img, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	return mnt
}

// fillFS fills the filesystem of dir until leaveKiB KiB are free, with a file in
// dir that the returned func removes again.
func fillFS(t *testing.T, dir string, leaveKiB int64) (free func()) {
	t.Helper()
	p := filepath.Join(dir, "filler")
	os.Remove(p)
	unix.Sync()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	n := avail - leaveKiB<<10
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// ext4 may need a block or two for the filler's own extent tree: take a KiB
	// less until it fits.
	for ; n > 0; n -= 1 << 10 {
		err := unix.Fallocate(int(f.Fd()), 0, 0, n)
		if err == nil {
			break
		}
		if err != unix.ENOSPC || n < avail-(leaveKiB+64)<<10 {
			t.Fatalf("fallocate %d bytes in %s: %v", n, dir, err)
		}
	}
	return func() { os.Remove(p) }
}

// randomTar writes a tar holding one file of n random bytes (so it does not
// compress) and returns its path.
func randomTar(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, "data"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "random.tar")
	if o, err := exec.Command("tar", "-C", dir, "-cf", out, "data").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, o)
	}
	return out
}

// storeState is what a failed command must leave unchanged: index.json's bytes
// and the image list.
type storeState struct{ index, images string }

func stateOf(t *testing.T, root string) storeState {
	t.Helper()
	idx, err := os.ReadFile(filepath.Join(root, "store", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Not the CREATED column: "Less than a second ago" turns into "1 second ago".
	return storeState{string(idx), mustRunIn(t, root, "images", "--no-trunc", "-a", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}")}
}

// sameStore fails t if the store's state moved from before during what.
func sameStore(t *testing.T, root, what string, before storeState) {
	t.Helper()
	after := stateOf(t, root)
	if after.images != before.images {
		t.Errorf("%s changed the image list:\nbefore:\n%s\nafter:\n%s", what, before.images, after.images)
	} else if after.index != before.index {
		t.Errorf("%s changed index.json:\nbefore: %s\nafter: %s", what, before.index, after.index)
	}
}

// oneLineError fails t unless r is a failure with exactly one line on stderr that
// starts with "Error: "+prefix and says the disk is full.
func oneLineError(t *testing.T, what string, r result, prefix string) {
	t.Helper()
	msg := strings.TrimRight(r.Stderr, "\n")
	if r.Code == 0 || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "Error: "+prefix) || !strings.Contains(msg, "no space left on device") {
		t.Errorf("%s on a full disk: exit %d, stderr %q; want one line \"Error: %s...: no space left on device\"", what, r.Code, r.Stderr, prefix)
	}
}

// padIndex tags image with padding refs until index.json's size is 60 bytes short
// of a multiple of the fs's 1 KiB block: the next entry written then needs a block
// more than the index had.
func padIndex(t *testing.T, root, image string) {
	t.Helper()
	idx := filepath.Join(root, "store", "index.json")
	size := func() int64 {
		fi, err := os.Stat(idx)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	first := "pad/a:1"
	mustRunIn(t, root, "tag", image, first)
	base := size() - before - int64(len(first)) // what a tag adds besides its name
	for i := 0; i < 20; i++ {
		rem := (1024 - 60 - size()%1024 + 1024) % 1024
		if rem == 0 {
			return
		}
		ref := fmt.Sprintf("pad/b%d:1", i)
		if n := rem - base - int64(len("pad/:1")); n >= 1 && n <= 120 {
			ref = "pad/" + strings.Repeat("c", int(n)) + ":1"
		}
		mustRunIn(t, root, "tag", image, ref)
	}
	t.Fatalf("index.json not padded: size %d", size())
}

// TestDiskFullImportTagged: an import with a tag that runs out of space at any
// point, also between recording the image and tagging it, leaves index.json and
// the image list as they were (before, a full disk at the tag left an untagged
// <none> image behind), and fails with one line.
func TestDiskFullImportTagged(t *testing.T) {
	fs := smallExt4(t, 8)
	root := filepath.Join(fs, "root")
	base := strings.TrimSpace(mustRunIn(t, root, "import", "-q", busyboxRootfs(t), "base:1"))
	padIndex(t, root, base)
	tarball := randomTar(t, 3000)
	failed := 0
	for leave := int64(0); leave <= 14; leave++ {
		before := stateOf(t, root)
		free := fillFS(t, fs, leave)
		r := runWith(t, cmdOpts{root: root}, "import", "-q", tarball, "new:1")
		free()
		if r.Code == 0 {
			mustRunIn(t, root, "rmi", "new:1")
			continue
		}
		failed++
		what := fmt.Sprintf("import with %d KiB free", leave)
		oneLineError(t, what, r, "import: ")
		sameStore(t, root, what+" ("+strings.TrimSpace(r.Stderr)+")", before)
	}
	if failed == 0 {
		t.Fatal("no import ran out of space")
	}
	mustRunIn(t, root, "import", "-q", tarball, "new:1")
}
