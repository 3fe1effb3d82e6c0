package cow

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// The properties every fuzz target of Apply checks, on one tar (checkApply):
//
//   - nothing outside the target changes: a sentinel dir beside it (the target of
//     the "../outside" and absolute links the seeds and programs use) keeps its
//     inode numbers, link counts, ctimes, content and names, and so do the dirs
//     above the target;
//   - CheckLayer refuses exactly the tars Apply refuses, at the same entry, and
//     fails (for a read error) exactly when Apply does;
//   - what Apply accepts it unpacks as an independent model of the tar says (types,
//     data, modes, symlink targets, hard-link groups): an entry written through a
//     symlink that points inside the target shows up here, not in the sentinel;
//   - the diffID is the sha256 of the whole stream.

// sandbox is one iteration's dirs: base/root is Apply's target, base/outside the
// sentinel.
type sandbox struct {
	base, root, outside string
	before              string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	base := filepath.Join(fastTempDir(t), "base")
	sb := &sandbox{base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	must(t, os.Mkdir(base, 0o755))
	must(t, os.Mkdir(sb.root, 0o755))
	writeFile(t, filepath.Join(sb.outside, "file"), "host", 0o644)
	must(t, os.Mkdir(filepath.Join(sb.outside, "d"), 0o755))
	sb.before = sb.state(t)
	return sb
}

// fastTempDir is tempDir on tmpfs (/dev/shm) when there is one. A fuzz run makes
// and removes a few dirs per input, and on ext4 that churn makes mkdir slow (the
// inode allocator scans past recently deleted inodes): it took over half the time.
func fastTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp(shmDir, "layerfs-fuzz-")
	must(t, err)
	t.Cleanup(func() { RemoveAll(d) })
	return d
}

// shmDir is /dev/shm if it is a tmpfs we may write, else "" (the default temp dir).
var shmDir = func() string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC && unix.Access("/dev/shm", unix.W_OK) == nil {
		return "/dev/shm"
	}
	return ""
}()

// state describes everything a write that escaped the target could change.
func (sb *sandbox) state(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{filepath.Dir(sb.base), sb.base, sb.outside, filepath.Join(sb.outside, "file"), filepath.Join(sb.outside, "d")} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			continue
		}
		fmt.Fprintf(&b, "%s: ino=%d mode=%o uid=%d gid=%d size=%d nlink=%d mtime=%d ctime=%d xattrs=%s",
			p, st.Ino, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Nano(), st.Ctim.Nano(), xattrString(t, p))
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			ents, err := os.ReadDir(p)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			fmt.Fprintf(&b, " names=%v %v", names, err)
		} else {
			data, err := os.ReadFile(p)
			fmt.Fprintf(&b, " data=%q %v", data, err)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func (sb *sandbox) checkSentinel(t testing.TB) {
	t.Helper()
	if after := sb.state(t); after != sb.before {
		t.Fatalf("ESCAPE: something outside the target changed:\nbefore:\n%s\nafter:\n%s", sb.before, after)
	}
}

// verdict sums up an Apply or CheckLayer error for comparing the two.
func verdict(err error) string {
	var ee *EntryError
	switch {
	case err == nil:
		return "ok"
	case (errors.Is(err, ErrUnsafePath) || errors.Is(err, ErrUnsupported)) && errors.As(err, &ee):
		return fmt.Sprintf("refused %q", ee.Path)
	case errors.Is(err, ErrUnsafePath) || errors.Is(err, ErrUnsupported):
		return "refused without an *EntryError"
	}
	return "failed"
}

// checkApply unpacks b into sb.root and checks the properties above. It returns
// Apply's error.
func checkApply(t testing.TB, sb *sandbox, b []byte) error {
	t.Helper()
	sum, aerr := Apply(context.Background(), sb.root, bytes.NewReader(b))
	sb.checkSentinel(t)
	_, cerr := CheckLayer(bytes.NewReader(b))
	if a, c := verdict(aerr), verdict(cerr); a != c {
		t.Fatalf("Apply and CheckLayer disagree:\nApply:      %s: %v\nCheckLayer: %s: %v", a, aerr, c, cerr)
	}
	if aerr != nil {
		return aerr
	}
	if want := digest.FromBytes(b); sum != want {
		t.Errorf("Apply diffID = %s, want %s", sum, want)
	}
	got := snapshot(t, sb.root, snapOpts{noMtime: true})
	for p, n := range got {
		n.UID, n.GID, n.Xattrs = 0, 0, ""
		got[p] = n
	}
	compareTrees(t, "Apply vs model", got, modelApply(t, b))
	return nil
}

// umask is the process umask: the mode of the parents Apply creates.
var umask = func() uint32 {
	m := unix.Umask(0o22)
	unix.Umask(m)
	return uint32(m)
}()

// mnode is one inode of the model; paths sharing a *mnode are hard links.
type mnode struct {
	node
	data []byte
}

// modelName is where an accepted tar name lands: absolute names count from the
// root, as docker's unpack takes them (filepath.Clean, then a join below the root).
func modelName(name string) string {
	if p := strings.TrimPrefix(path.Clean("/"+name), "/"); p != "" {
		return p
	}
	return "."
}

// modelApply is what Apply must make of a tar it accepted, worked out without
// touching disk: later entries replace earlier ones (a dir over a dir merges),
// missing parents become 0755 dirs, hard links share the inode they name.
func modelApply(t testing.TB, b []byte) map[string]node {
	t.Helper()
	m := map[string]*mnode{}
	remove := func(p string) {
		delete(m, p)
		for k := range m {
			if strings.HasPrefix(k, p+"/") {
				delete(m, k)
			}
		}
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("model: Apply accepted a tar archive/tar cannot read: %v", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p := modelName(h.Name)
		if p == "." {
			continue
		}
		for i := range len(p) {
			if p[i] == '/' && m[p[:i]] == nil {
				m[p[:i]] = &mnode{node: node{Type: "dir", Mode: 0o755 &^ umask}}
			}
		}
		mode := uint32(h.Mode) & 0o7777
		switch h.Typeflag {
		case tar.TypeLink:
			l := modelName(h.Linkname)
			if l != p {
				remove(p)
				m[p] = m[l]
			}
		case tar.TypeDir:
			if old := m[p]; old != nil && old.Type == "dir" {
				old.Mode = mode
				continue
			}
			remove(p)
			m[p] = &mnode{node: node{Type: "dir", Mode: mode}}
		case tar.TypeSymlink:
			remove(p)
			m[p] = &mnode{node: node{Type: "symlink", Mode: 0o777, Link: h.Linkname}}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			remove(p)
			typ := map[byte]string{tar.TypeChar: "char", tar.TypeBlock: "block", tar.TypeFifo: "fifo"}[h.Typeflag]
			if typ != "fifo" && os.Geteuid() != 0 {
				continue // unprivileged: no device nodes
			}
			n := &mnode{node: node{Type: typ, Mode: mode}}
			if typ != "fifo" {
				n.Rdev = mknodDev(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
			}
			m[p] = n
		default:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("model: read %s: %v", h.Name, err)
			}
			remove(p)
			m[p] = &mnode{node: node{Type: "file", Mode: mode, Size: int64(len(data))}, data: data}
		}
	}
	out := map[string]node{}
	groups := map[*mnode][]string{}
	for p, n := range m {
		if n.Type == "file" {
			s := sha256.Sum256(n.data)
			n.Sum = hex.EncodeToString(s[:8])
		}
		out[p] = n.node
		if n.Type != "dir" {
			groups[n] = append(groups[n], p)
		}
	}
	for _, ps := range groups {
		if len(ps) < 2 {
			continue
		}
		sort.Strings(ps)
		for _, p := range ps {
			n := out[p]
			n.Group = ps[0]
			out[p] = n
		}
	}
	return out
}

// mknodDev is the device number mknod(2) makes of dev: the syscall takes 32 bits
// (new_encode_dev), so a major above 4095 or a minor above 2^20-1 comes out cut.
func mknodDev(dev uint64) uint64 {
	d := uint32(dev)
	return unix.Mkdev((d&0xfff00)>>8, (d&0xff)|((d>>12)&0xfff00))
}
