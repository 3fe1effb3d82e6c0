// Package treecmp snapshots and compares directory trees for tests: type, mode, owner,
// size, content, link target, device numbers, xattrs, hardlink groups and mtime.
//
// Content is hashed canonically: the file is read in 64 KiB blocks, skipping holes
// with SEEK_DATA/SEEK_HOLE where the filesystem has them, and all-zero blocks are left
// out of the hash, so a sparse file and its dense copy compare equal and a 1 GiB
// sparse file costs only its data. Whether a file is still sparse is recorded
// separately (Entry.Blocks) for tests that care.
package treecmp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is what a Snapshot records of one path.
type Entry struct {
	Path   string      // slash-separated, relative to the root; "." is the root
	Mode   fs.FileMode // type bits and permission bits, including setuid/setgid/sticky
	UID    uint32
	GID    uint32
	Size   int64 // regular files and symlinks only (directory sizes are fs-specific)
	Hash   string
	Link   string // symlink target
	Rdev   uint64 // block and character devices
	Xattrs map[string]string
	Mtime  time.Time
	Blocks int64 // 512-byte blocks allocated (informational; not compared)
	// Group lists every path of the tree that shares this entry's inode (hard links),
	// sorted; nil for an inode seen once.
	Group []string

	ino uint64
}

// Tree is a snapshot of a directory tree, keyed by Entry.Path.
type Tree map[string]*Entry

// Options tune what Snapshot records and Compare checks.
type Options struct {
	// Skip reports paths (slash-separated, relative) to leave out with everything below.
	Skip func(rel string) bool
	// SkipXattr reports xattr names to ignore (for example security.selinux).
	SkipXattr func(name string) bool
	// NoMtime leaves every mtime out of the comparison.
	NoMtime bool
	// NoDirMtime leaves directory mtimes out of the comparison.
	NoDirMtime bool
	// NoRootMeta leaves the root directory's mode, owner and mtime out (a mountpoint
	// and an extracted rootfs dir often differ there for reasons outside the image).
	NoRootMeta bool
}

// Snapshot walks root without following symlinks and records every entry.
func Snapshot(root string, o Options) (Tree, error) {
	t := Tree{}
	byIno := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && o.Skip != nil && o.Skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		e, err := stat(p, rel, o)
		if err != nil {
			return err
		}
		t[rel] = e
		if !e.Mode.IsDir() {
			byIno[e.ino] = append(byIno[e.ino], rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", root, err)
	}
	for _, paths := range byIno {
		if len(paths) < 2 {
			continue
		}
		sort.Strings(paths)
		for _, p := range paths {
			t[p].Group = paths
		}
	}
	return t, nil
}

func stat(p, rel string, o Options) (*Entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	e := &Entry{
		Path:   rel,
		Mode:   modeOf(st.Mode),
		UID:    st.Uid,
		GID:    st.Gid,
		Mtime:  time.Unix(st.Mtim.Unix()),
		Blocks: st.Blocks,
		ino:    st.Ino,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Size = st.Size
		h, err := hashFile(p, st.Size)
		if err != nil {
			return nil, err
		}
		e.Hash = h
	case unix.S_IFLNK:
		e.Size = st.Size
		l, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		e.Link = l
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Rdev = st.Rdev
	}
	x, err := xattrs(p, o.SkipXattr)
	if err != nil {
		return nil, err
	}
	e.Xattrs = x
	return e, nil
}

func modeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

const blockSize = 64 << 10

// hashFile hashes (block index, block) for every block that is not all zeros.
func hashFile(p string, size int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, blockSize)
	var idx [8]byte
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to EOF
		}
		if err != nil {
			data = off // no SEEK_DATA here: read everything
		}
		start := data / blockSize * blockSize
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole <= data {
			hole = size
		}
		for b := start; b < hole && b < size; b += blockSize {
			n, err := f.ReadAt(buf, b)
			if err != nil && err != io.EOF {
				return "", err
			}
			if allZero(buf[:n]) {
				continue
			}
			binary.BigEndian.PutUint64(idx[:], uint64(b/blockSize))
			h.Write(idx[:])
			h.Write(buf[:n])
		}
		off = (hole + blockSize - 1) / blockSize * blockSize
		if off <= data {
			off = data + blockSize
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func xattrs(p string, skip func(string) bool) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, &fs.PathError{Op: "llistxattr", Path: p, Err: err}
	}
	if sz == 0 {
		return nil, nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, &fs.PathError{Op: "llistxattr", Path: p, Err: err}
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" || (skip != nil && skip(name)) {
			continue
		}
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, &fs.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
		}
		v := make([]byte, vsz)
		vsz, err = unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, &fs.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
		}
		out[name] = string(v[:vsz])
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Diff lists the differences between want and got, one line each, sorted by path;
// empty means the trees are equal under o.
func Diff(want, got Tree, o Options) []string {
	var out []string
	paths := map[string]bool{}
	for p := range want {
		paths[p] = true
	}
	for p := range got {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	for _, p := range sorted {
		w, g := want[p], got[p]
		switch {
		case g == nil:
			out = append(out, fmt.Sprintf("%s: missing (want %s)", quote(p), w.Mode))
			continue
		case w == nil:
			out = append(out, fmt.Sprintf("%s: unexpected %s", quote(p), g.Mode))
			continue
		}
		for _, d := range entryDiff(w, g, o) {
			out = append(out, quote(p)+": "+d)
		}
	}
	return out
}

func entryDiff(w, g *Entry, o Options) []string {
	var d []string
	add := func(what string, want, got any) {
		d = append(d, fmt.Sprintf("%s = %v, want %v", what, got, want))
	}
	root := w.Path == "." && o.NoRootMeta
	if w.Mode.Type() != g.Mode.Type() {
		add("type", w.Mode.Type(), g.Mode.Type())
		return d
	}
	if !root && w.Mode != g.Mode {
		add("mode", w.Mode, g.Mode)
	}
	if !root && (w.UID != g.UID || w.GID != g.GID) {
		add("owner", fmt.Sprintf("%d:%d", w.UID, w.GID), fmt.Sprintf("%d:%d", g.UID, g.GID))
	}
	if w.Size != g.Size {
		add("size", w.Size, g.Size)
	}
	if w.Hash != g.Hash {
		add("content hash", short(w.Hash), short(g.Hash))
	}
	if w.Link != g.Link {
		add("link", quote(w.Link), quote(g.Link))
	}
	if w.Rdev != g.Rdev {
		add("rdev", fmt.Sprintf("%d,%d", unix.Major(w.Rdev), unix.Minor(w.Rdev)), fmt.Sprintf("%d,%d", unix.Major(g.Rdev), unix.Minor(g.Rdev)))
	}
	if !mapsEqual(w.Xattrs, g.Xattrs) {
		add("xattrs", w.Xattrs, g.Xattrs)
	}
	if strings.Join(w.Group, "\x00") != strings.Join(g.Group, "\x00") {
		add("hardlink group", w.Group, g.Group)
	}
	mt := !o.NoMtime && !root && !(o.NoDirMtime && w.Mode.IsDir())
	if mt && !w.Mtime.Equal(g.Mtime) {
		add("mtime", w.Mtime.UTC().Format(time.RFC3339Nano), g.Mtime.UTC().Format(time.RFC3339Nano))
	}
	return d
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return "(none)"
	}
	return h
}

// quote prints names with non-UTF-8 bytes or control characters readably.
func quote(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0xfffd }) || !isUTF8(s) {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\ufffd") == s }

// TB is the part of testing.TB that Equal uses.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Equal snapshots both trees and fails t with every difference (at most 50 lines).
func Equal(t TB, want, got string, o Options) {
	t.Helper()
	wt, err := Snapshot(want, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	gt, err := Snapshot(got, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	diffs := Diff(wt, gt, o)
	if len(diffs) == 0 {
		return
	}
	n := len(diffs)
	if n > 50 {
		diffs = append(diffs[:50], fmt.Sprintf("... and %d more", n-50))
	}
	t.Errorf("tree %s differs from %s (%d differences):\n  %s", got, want, n, strings.Join(diffs, "\n  "))
}
