package fs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// The operations of the randomized oracle test (oracle_random_test.go): random
// lowers, a random program of concrete operations, and how one operation is applied
// to a merged root with its outcome as a string to compare.

// rndComps are the names random lowers and programs use: few, so that they collide.
var rndComps = []string{"a", "b", "c", "d"}

// rndPath is a random relative path of one to three components.
func rndPath(r *rand.Rand) string {
	n := 1 + r.IntN(3)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = rndComps[r.IntN(len(rndComps))]
	}
	return strings.Join(parts, "/")
}

// rndTarget is a symlink target. No ".." and nothing absolute: path operations
// that follow a symlink must stay inside the mount.
func rndTarget(r *rand.Rand) string {
	if r.IntN(4) == 0 {
		return "nowhere"
	}
	return rndPath(r)
}

var (
	rndModes = []uint32{0o644, 0o600, 0o755, 0o700, 0o444, 0o4755, 0o2755, 0o1777, 0o000}
	rndIDs   = []int{0, 1000, 65534}
	rndTimes = []time.Time{
		time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC),
		time.Date(2010, 1, 1, 0, 0, 0, 123456789, time.UTC),
	}
)

// rndData is file content: mostly short, sometimes past a page, rarely big.
func rndData(r *rand.Rand, tag string) string {
	switch r.IntN(10) {
	case 0:
		return strings.Repeat(tag, 70000/len(tag)+1)
	case 1:
		return ""
	}
	return tag
}

// buildRandomLowers writes two lowers (top first) from seed, in the overlay encoding
// (whiteouts are 0/0 char devices, opaque dirs carry trusted.overlay.opaque). The
// same seed gives the same trees.
func buildRandomLowers(seed uint64, l1, l2 string) error {
	r := rand.New(rand.NewPCG(seed, 0x10e2))
	var errs []error
	try := func(err error) {
		// a name whose parent is a file, say: expected, the tree just lacks it
		if err != nil && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	for li, root := range []string{l2, l1} {
		var files []string
		for i := range 6 + r.IntN(10) {
			p := rndPath(r)
			full := filepath.Join(root, p)
			if _, err := os.Lstat(full); err == nil {
				continue // taken (and maybe a fifo, where a write would wait)
			}
			parentErr := os.MkdirAll(filepath.Dir(full), 0o755)
			try(parentErr)
			if parentErr != nil {
				continue
			}
			switch k := r.IntN(10); {
			case k < 4:
				data := rndData(r, fmt.Sprintf("L%d-%d ", li, i))
				if r.IntN(20) == 0 {
					data = strings.Repeat("B", 1<<20+7) // a big copy-up
				}
				err := os.WriteFile(full, []byte(data), 0o644)
				try(err)
				if err == nil {
					files = append(files, full)
					try(os.Chmod(full, os.FileMode(rndModes[r.IntN(len(rndModes))])))
					if r.IntN(3) == 0 {
						try(unix.Setxattr(full, "user.k1", []byte("lower"), 0))
					}
				}
			case k < 6:
				try(os.MkdirAll(full, 0o755))
				if r.IntN(4) == 0 {
					try(unix.Setxattr(full, "user.k2", []byte("dir"), 0))
				}
			case k < 7:
				try(os.Symlink(rndTarget(r), full))
			case k < 8:
				if len(files) > 0 {
					try(os.Link(files[r.IntN(len(files))], full))
				}
			case k < 9 && li == 1: // top layer: whiteout, maybe over a bottom entry
				// Only where the dir is merged: overlayfs lists the whiteouts of a
				// dir it does not merge (as char devices that lstat does not find);
				// layerfs hides them.
				if mergedIn(l1, l2, p) {
					try(unix.Mknod(full, unix.S_IFCHR, 0))
				}
			case li == 1: // top layer: opaque dir
				try(os.MkdirAll(full, 0o755))
				try(unix.Setxattr(full, cow.OverlayOpaqueXattr, []byte("y"), 0))
				try(os.WriteFile(filepath.Join(full, "d"), []byte("opq"), 0o644))
			default:
				try(unix.Mkfifo(full, 0o640))
			}
			if r.IntN(6) == 0 {
				try(os.Lchown(full, rndIDs[r.IntN(len(rndIDs))], rndIDs[r.IntN(len(rndIDs))]))
			}
		}
	}
	for _, root := range []string{l1, l2} {
		ts := []unix.Timespec{unix.NsecToTimespec(oracleEpoch.UnixNano()), unix.NsecToTimespec(oracleEpoch.UnixNano())}
		err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		})
		try(err)
	}
	return errors.Join(errs...)
}

type rndKind int

const (
	opWrite     rndKind = iota // O_CREAT|O_TRUNC write of data, mode n for a new file
	opCreatExcl                // O_CREAT|O_EXCL
	opAppend
	opPwrite // write data at offset n, no truncation
	opTruncate
	opMkdir
	opRmdir
	opUnlink
	opRename // flags n: 0, RENAME_NOREPLACE or RENAME_EXCHANGE
	opLink
	opSymlink // a -> target data
	opChmod
	opChown // lchown to n:m
	opUtimes
	opSetxattr
	opRemovexattr
	opMkfifo
	opFdWrite // open a read-write, unlink it, write data through the fd, read back
	opFdMove  // open a read-write, rename it to b (n: flags), write through the fd, read b
	opStat
	opReaddir
	opRead
	nKinds
)

var rndKindNames = [...]string{"write", "creat-excl", "append", "pwrite", "truncate", "mkdir", "rmdir", "unlink",
	"rename", "link", "symlink", "chmod", "chown", "utimes", "setxattr", "removexattr", "mkfifo", "fd-write", "fd-move",
	"stat", "readdir", "read"}

// rndOp is one concrete operation; a and b are paths relative to the merged root.
type rndOp struct {
	Kind rndKind
	A, B string
	N, M int64
	Data string
}

func (o rndOp) String() string {
	s := rndKindNames[o.Kind] + " " + o.A
	if o.B != "" {
		s += " " + o.B
	}
	switch o.Kind {
	case opRename, opFdMove:
		s += fmt.Sprintf(" flags=%d", o.N)
	case opChmod, opMkdir, opMkfifo, opWrite, opCreatExcl:
		s += fmt.Sprintf(" mode=%o", o.N)
	case opChown:
		s += fmt.Sprintf(" %d:%d", o.N, o.M)
	case opTruncate, opPwrite, opUtimes:
		s += fmt.Sprintf(" n=%d", o.N)
	}
	if o.Data != "" {
		d := o.Data
		if len(d) > 20 {
			d = fmt.Sprintf("%s...(%d bytes)", d[:12], len(d))
		}
		s += fmt.Sprintf(" %q", d)
	}
	return s
}

// genOp makes an operation, picking paths mostly among existing ones (all, the
// merged tree's current entries).
func genOp(r *rand.Rand, i int, all []string) rndOp {
	pick := func() string {
		if len(all) > 0 && r.IntN(10) < 7 {
			return all[r.IntN(len(all))]
		}
		if len(all) > 0 && r.IntN(2) == 0 { // a new name beside or under an existing one
			return filepath.Join(filepath.Dir(all[r.IntN(len(all))]), rndComps[r.IntN(len(rndComps))])
		}
		return rndPath(r)
	}
	o := rndOp{Kind: rndKind(r.IntN(int(nKinds))), A: pick()}
	tag := fmt.Sprintf("w%d ", i)
	switch o.Kind {
	case opWrite, opCreatExcl, opMkdir, opMkfifo, opChmod:
		o.N = int64(rndModes[r.IntN(len(rndModes))])
		o.Data = rndData(r, tag)
	case opAppend, opFdWrite:
		o.Data = rndData(r, tag)
	case opFdMove:
		o.B = pick()
		o.N = int64([]int{0, 0, unix.RENAME_EXCHANGE}[r.IntN(3)])
		o.Data = rndData(r, tag)
	case opPwrite:
		o.N = int64([]int{0, 1, 3, 5000}[r.IntN(4)])
		o.Data = rndData(r, tag)
	case opTruncate:
		o.N = int64([]int{0, 1, 3, 100, 70000}[r.IntN(5)])
	case opRename:
		o.B = pick()
		o.N = int64([]int{0, 0, unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE}[r.IntN(4)])
	case opLink:
		o.B = pick()
	case opSymlink:
		o.Data = rndTarget(r)
	case opChown:
		o.N, o.M = int64(rndIDs[r.IntN(len(rndIDs))]), int64(rndIDs[r.IntN(len(rndIDs))])
	case opUtimes:
		o.N = int64(r.IntN(len(rndTimes)))
	case opSetxattr, opRemovexattr:
		o.Data = []string{"user.k1", "user.k2"}[r.IntN(2)]
	}
	if o.Kind == opSetxattr {
		o.B = tag
	}
	if o.Kind == opMkdir || o.Kind == opMkfifo {
		o.Data = ""
	}
	return o
}

// errStr names an error's errno, "ok" for none.
func errStr(err error) string {
	if err == nil {
		return "ok"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	return err.Error()
}

// applyOp applies o under root and describes the outcome. oracle is true for kernel
// overlayfs: there a directory rename it refuses with EXDEV (it does not move lower
// dirs without redirect_dir, layerfs does) is done as mv(1) would, copy and delete.
func applyOp(root string, o rndOp, oracle bool) string {
	a, b := filepath.Join(root, o.A), filepath.Join(root, o.B)
	switch o.Kind {
	case opWrite, opCreatExcl, opAppend, opPwrite:
		flags := map[rndKind]int{opWrite: unix.O_CREAT | unix.O_TRUNC, opCreatExcl: unix.O_CREAT | unix.O_EXCL,
			opAppend: unix.O_APPEND, opPwrite: 0}[o.Kind]
		// O_NONBLOCK: a fifo without a reader fails (ENXIO) instead of waiting
		fd, err := unix.Open(a, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|flags, uint32(o.N))
		if err != nil {
			return errStr(err)
		}
		f := os.NewFile(uintptr(fd), a)
		if o.Kind == opPwrite {
			_, err = f.WriteAt([]byte(o.Data), o.N)
		} else {
			_, err = f.WriteString(o.Data)
		}
		return errStr(errors.Join(err, f.Close()))
	case opTruncate:
		return errStr(unix.Truncate(a, o.N))
	case opMkdir:
		return errStr(unix.Mkdir(a, uint32(o.N)))
	case opRmdir:
		return errStr(unix.Rmdir(a))
	case opUnlink:
		return errStr(unix.Unlink(a))
	case opRename:
		var dirs []string
		var times []unix.Stat_t
		if oracle {
			// Overlayfs copies the parents up, moving their times, in a rename
			// it then fails (ENOTEMPTY): put them back, layerfs rightly leaves
			// them (seeds 70 and 5068).
			for _, d := range []string{filepath.Dir(a), filepath.Dir(b)} {
				var st unix.Stat_t
				if unix.Stat(d, &st) == nil {
					dirs, times = append(dirs, d), append(times, st)
				}
			}
		}
		err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, uint(o.N))
		if oracle && errors.Is(err, unix.EXDEV) {
			return moveAsMv(root, a, b, uint(o.N))
		}
		if err != nil {
			for i, d := range dirs {
				var st unix.Stat_t
				if unix.Stat(d, &st) == nil && st.Mtim != times[i].Mtim {
					unix.UtimesNano(d, []unix.Timespec{times[i].Atim, times[i].Mtim})
				}
			}
		}
		return errStr(err)
	case opLink:
		return errStr(unix.Link(a, b))
	case opSymlink:
		return errStr(unix.Symlink(o.Data, a))
	case opChmod:
		return errStr(unix.Chmod(a, uint32(o.N)))
	case opChown:
		return errStr(unix.Lchown(a, int(o.N), int(o.M)))
	case opUtimes:
		ts := unix.NsecToTimespec(rndTimes[o.N].UnixNano())
		return errStr(unix.UtimesNanoAt(unix.AT_FDCWD, a, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	case opSetxattr:
		return errStr(unix.Lsetxattr(a, o.Data, []byte(o.B), 0))
	case opRemovexattr:
		return errStr(unix.Lremovexattr(a, o.Data))
	case opMkfifo:
		return errStr(unix.Mkfifo(a, uint32(o.N)))
	case opFdWrite:
		return fdWrite(a, o.Data)
	case opFdMove:
		return fdMove(root, a, b, uint(o.N), o.Data, oracle)
	case opStat:
		return statLine(a)
	case opReaddir:
		return readdirLine(a)
	case opRead:
		fd, err := unix.Open(a, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return errStr(err)
		}
		f := os.NewFile(uintptr(fd), a)
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return errStr(err)
		}
		return fmt.Sprintf("ok %d bytes %x", len(b), sha8(b))
	}
	panic("unknown op")
}

// fdWrite opens p read-write, unlinks it, writes data through the fd at its end and
// reads the whole file back through it.
func fdWrite(p, data string) string {
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "open " + errStr(err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	if err := unix.Unlink(p); err != nil {
		return "unlink " + errStr(err)
	}
	b, fail := appendReadBack(f, data)
	if fail != "" {
		return fail
	}
	return fmt.Sprintf("ok %d bytes %x", len(b), sha8(b))
}

// appendReadBack writes data at f's end and reads f back from 0 (2 MiB at most);
// fail says what failed, if anything did.
func appendReadBack(f *os.File, data string) (b []byte, fail string) {
	if _, err := f.Seek(0, 2); err != nil {
		return nil, "seek " + errStr(err)
	}
	if _, err := f.WriteString(data); err != nil {
		return nil, "write " + errStr(err)
	}
	b = make([]byte, 2<<20)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "read " + errStr(err)
	}
	return b[:n], ""
}

// fdMove opens a read-write, renames it to b (flags: 0 or RENAME_EXCHANGE; the
// oracle moves a dir overlayfs refuses as mv does), writes data through the fd at
// its end, and reads back through the fd and by b's name: writes through an fd
// follow the file, not its old name (the no-open mode reopens files by path).
func fdMove(root, a, b string, flags uint, data string, oracle bool) string {
	fd, err := unix.Open(a, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "open " + errStr(err)
	}
	f := os.NewFile(uintptr(fd), a)
	defer f.Close()
	err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, flags)
	if oracle && errors.Is(err, unix.EXDEV) {
		if r := moveAsMv(root, a, b, flags); r != "ok" {
			return "rename " + r
		}
	} else if err != nil {
		return "rename " + errStr(err)
	}
	buf, fail := appendReadBack(f, data)
	if fail != "" {
		return fail
	}
	byName, err := readNonblock(b) // b may be a fifo now (an exchange)
	if err != nil {
		return fmt.Sprintf("ok fd %d bytes %x, %s: %s", len(buf), sha8(buf), filepath.Base(b), errStr(err))
	}
	return fmt.Sprintf("ok fd %d bytes %x, by name %d bytes %x", len(buf), sha8(buf), len(byName), sha8(byName))
}

// readNonblock reads p whole, opening it with O_NONBLOCK so that a fifo fails or
// reads empty instead of waiting for a writer.
func readNonblock(p string) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	return io.ReadAll(f)
}

// statLine describes what lstat says of p that both mounts must agree on. A
// regular file's link count is left out: after one name of a link group that
// lives only in a layer is removed, layerfs still shows the layer's count
// (docs/NOTES.md, "Left"); the final trees compare link groups.
func statLine(p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return errStr(err)
	}
	typ := st.Mode & unix.S_IFMT
	s := fmt.Sprintf("type=%o mode=%o uid=%d gid=%d", typ, st.Mode&0o7777, st.Uid, st.Gid)
	switch typ {
	case unix.S_IFREG, unix.S_IFLNK:
		s += fmt.Sprintf(" size=%d", st.Size)
	case unix.S_IFDIR:
		s += fmt.Sprintf(" nlink=%d", st.Nlink)
	}
	if typ == unix.S_IFREG || typ == unix.S_IFDIR {
		x, err := userXattrs(p)
		if err != nil {
			return "listxattr " + errStr(err)
		}
		s += " xattrs=" + strings.Join(x, ",")
	}
	return s
}

// readDir lists dir with getdents: name -> (d_ino, d_type), without . and ..
func readDir(dir string) (map[string][2]uint64, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	out := map[string][2]uint64{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(b[16]) | int(b[17])<<8
			ino := uint64(0)
			for i := 7; i >= 0; i-- {
				ino = ino<<8 | uint64(b[i])
			}
			typ := b[18]
			name := string(b[19:reclen])
			name = name[:strings.IndexByte(name, 0)]
			if name != "." && name != ".." {
				out[name] = [2]uint64{ino, uint64(typ)}
			}
			b = b[reclen:]
		}
	}
}

func readdirLine(dir string) string {
	ents, err := readDir(dir)
	if err != nil {
		return errStr(err)
	}
	var l []string
	for n, e := range ents {
		l = append(l, fmt.Sprintf("%s:%d", n, e[1]))
	}
	sort.Strings(l)
	return "ok " + strings.Join(l, " ")
}

// mergedIn reports whether the parent dir of p is a dir in the bottom layer l2 and
// no dir above it in the top layer l1 is opaque.
func mergedIn(l1, l2, p string) bool {
	for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
		if fi, err := os.Lstat(filepath.Join(l2, d)); err != nil || !fi.IsDir() {
			return false
		}
	}
	for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
		if _, err := unix.Lgetxattr(filepath.Join(l1, d), cow.OverlayOpaqueXattr, nil); err == nil {
			return false
		}
	}
	return true
}

func sha8(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:4]
}
