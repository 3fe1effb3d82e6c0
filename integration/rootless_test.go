package integration

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerfs/layerfs/internal/testenv"
)

// rootlessEnv runs the binary as an unprivileged user (nobody) with its own store.
type rootlessEnv struct {
	t        *testing.T
	dir, bin string
}

const nobodyID = 65534

func newRootlessEnv(t *testing.T) *rootlessEnv {
	testenv.RequireRoot(t)
	dir, err := os.MkdirTemp("", "layerfs-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, err := range []error{os.Chmod(dir, 0o755), os.Chown(dir, nobodyID, nobodyID)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "layerfs")
	b, err := os.ReadFile(layerfsBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return &rootlessEnv{t: t, dir: dir, bin: bin}
}

// run runs the binary as nobody; it fails the test if it fails.
func (r *rootlessEnv) run(args ...string) string {
	r.t.Helper()
	cmd := exec.Command(r.bin, append([]string{"--root", filepath.Join(r.dir, "root")}, args...)...)
	cmd.Dir = r.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + r.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("layerfs %s as nobody: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// tarOwners lists a tar's entries as "name uid:gid mode", and its xattr records.
func tarOwners(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(strings.TrimSuffix(h.Name, "/"), "./")
		if name == "" || name == "." {
			continue
		}
		line := fmt.Sprintf("%s %d:%d %04o", name, h.Uid, h.Gid, h.Mode&0o7777)
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				line += " " + k
			}
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

// TestRootlessOwners: an unprivileged store cannot chown, so, as umoci's rootless
// mode does, the user stands for the image's root and other owners are kept in a
// user.rootlesscontainers xattr: an image imported and exported as nobody keeps
// every owner (it used to come out as nobody's), none of the xattrs reach the tar,
// and read-only files and dirs of other owners unpack. The same holds for a
// commit through a mount nobody serves: a copied-up file keeps its owner (a
// read-only one too: its xattrs are copied before its mode; one in a read-only
// dir too), a new one is root's.
func TestRootlessOwners(t *testing.T) {
	r := newRootlessEnv(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	entries := []struct {
		name     string
		typ      byte
		mode     int64
		uid, gid int
		data     string
	}{
		{"etc/", tar.TypeDir, 0o755, 0, 0, ""},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, "root:x:0:0::/:/bin/sh\n"},
		{"etc/ro", tar.TypeReg, 0o444, 33, 33, "read only\n"},
		{"var/", tar.TypeDir, 0o755, 0, 0, ""},
		{"var/www/", tar.TypeDir, 0o555, 33, 33, ""},
		{"var/www/index.html", tar.TypeReg, 0o444, 33, 33, "<p>hi</p>\n"},
		{"home/", tar.TypeDir, 0o755, 0, 0, ""},
		{"home/u/", tar.TypeDir, 0o700, 1000, 1000, ""},
		{"home/u/f", tar.TypeReg, 0o600, 1000, 100, "secret\n"},
		{"app", tar.TypeReg, 0o644, 0, 50, "app\n"},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Size: int64(len(e.data)), ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(r.dir, "in.tar")
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run("import", in, "img:1")
	r.run("export", "-o", "out.tar", "img:1")
	want := []string{
		"app 0:50 0644", "etc 0:0 0755", "etc/passwd 0:0 0644", "etc/ro 33:33 0444", "home 0:0 0755",
		"home/u 1000:1000 0700", "home/u/f 1000:100 0600", "var 0:0 0755",
		"var/www 33:33 0555", "var/www/index.html 33:33 0444",
	}
	if got := tarOwners(t, filepath.Join(r.dir, "out.tar")); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("export of the imported image as nobody:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	r.allowFuse()
	mnt := filepath.Join(r.dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, nobodyID, nobodyID); err != nil {
		t.Fatal(err)
	}
	r.run("mount", "--name", "c", "img:1", mnt)
	t.Cleanup(func() { exec.Command("fusermount3", "-u", mnt).Run() })
	as := func(script string) {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Dir = r.dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s as nobody: %v: %s", script, err, out)
		}
	}
	as("chmod u+w mnt/etc/ro && echo more >> mnt/etc/ro && chmod 0640 mnt/home/u/f && echo new > mnt/home/u/new" +
		" && chmod u+w mnt/var/www/index.html && echo more >> mnt/var/www/index.html")
	r.run("commit", "c", "img:2")
	r.run("umount", mnt)
	r.run("export", "-o", "out2.tar", "img:2")
	want2 := []string{
		"app 0:50 0644", "etc 0:0 0755", "etc/passwd 0:0 0644", "etc/ro 33:33 0644", "home 0:0 0755",
		"home/u 1000:1000 0700", "home/u/f 1000:100 0640", "home/u/new 0:0 0644", "var 0:0 0755",
		"var/www 33:33 0555", "var/www/index.html 33:33 0644",
	}
	if got := tarOwners(t, filepath.Join(r.dir, "out2.tar")); strings.Join(got, "\n") != strings.Join(want2, "\n") {
		t.Errorf("export of the committed image as nobody:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want2, "\n"))
	}
	// The upper holds a copy of the image's 0555 var/www: the container still
	// goes, whole, and gc (which would find a half-removed one) has nothing to
	// complain of.
	r.run("rm", "c")
	if _, err := os.Stat(filepath.Join(r.dir, "root", "work", "c")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container dir after rm as nobody: %v, want it gone", err)
	}
	r.run("gc")
}
