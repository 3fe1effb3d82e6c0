package fs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// Inode numbers across commit --rebase.
//
// A rebase makes the upper dir's content a new lower layer: the committed layer,
// unpacked from its tar, whose files have inode numbers of their own. Lower entries
// take their numbers from their layer, so without help every file the container
// had changed would change its st_ino at the rebase, and programs that remember
// inode numbers (git's index, tail -F, backup tools) would see it replaced. An
// inode map keeps the numbers the union showed: for each entry of the committed
// layer, keyed by its inode number there, the number and generation its path had
// in the stack before the rebase. It lives in a file beside the container
// (InodeMaps), so a remount shows the same numbers.
//
// The file is bound to the layer dir it was made for (device, inode number and
// birth time of its root): a layer unpacked again, whose files have other inode
// numbers, ignores it.

// InodeMaps names, for lower layer dirs, the files KeepInodes wrote for them.
type InodeMaps map[string]string

type inoMap map[uint64][2]uint64

const inoMapMagic = "layerfs inode map 1\n"

// layerID identifies a layer dir: device, inode number, birth time of its root.
func layerID(fd int) ([4]uint64, error) {
	var sx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_BTIME, &sx); err != nil {
		return [4]uint64{}, err
	}
	return [4]uint64{uint64(unix.Mkdev(sx.Dev_major, sx.Dev_minor)), sx.Ino, uint64(sx.Btime.Sec), uint64(sx.Btime.Nsec)}, nil
}

// writeInoMap writes m for the layer dir whose identity is id to file, atomically.
func writeInoMap(file string, id [4]uint64, m inoMap) error {
	var b bytes.Buffer
	b.WriteString(inoMapMagic)
	binary.Write(&b, binary.LittleEndian, id)
	for k, v := range m {
		binary.Write(&b, binary.LittleEndian, [3]uint64{k, v[0], v[1]})
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, file)
}

// readInoMap reads file for the layer dir whose identity is id. A map made for
// another unpacking of the layer is an error.
func readInoMap(file string, id [4]uint64) (inoMap, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	rest, ok := bytes.CutPrefix(b, []byte(inoMapMagic))
	if !ok || len(rest) < 32 || (len(rest)-32)%24 != 0 {
		return nil, fmt.Errorf("inode map %s: not a layerfs inode map", file)
	}
	var got [4]uint64
	for i := range got {
		got[i] = binary.LittleEndian.Uint64(rest[8*i:])
	}
	if got != id {
		return nil, fmt.Errorf("inode map %s: made for another copy of the layer", file)
	}
	rest = rest[32:]
	m := make(inoMap, len(rest)/24)
	for ; len(rest) > 0; rest = rest[24:] {
		m[binary.LittleEndian.Uint64(rest)] = [2]uint64{binary.LittleEndian.Uint64(rest[8:]), binary.LittleEndian.Uint64(rest[16:])}
	}
	return m, nil
}

// loadInoMaps attaches the inode maps of maps to the stack's lower layers. A map
// that cannot be used is left out: the layer's own numbers are the fallback.
func (s *stack) loadInoMaps(maps InodeMaps) []error {
	var errs []error
	for _, l := range s.layers {
		file, ok := maps[l.path]
		if !ok || l.upper {
			continue
		}
		id, err := layerID(l.fd)
		if err == nil {
			l.inos, err = readInoMap(file, id)
		}
		if err != nil {
			errs = append(errs, err)
		}
		for _, v := range l.inos {
			if s.kept == nil {
				s.kept = map[uint64]bool{}
			}
			s.kept[v[0]] = true
		}
	}
	return errs
}

// freeIno returns ino, a number made from a file's own inode number (mapIno), or,
// if an inode map keeps that number for another file, a number no map keeps. The
// numbers maps keep are mostly those of the old upper dir's files, which commit
// --rebase removes: the upper dir's filesystem hands their inode numbers out again,
// to the next files made in the new upper dir, which must not show the number of a
// committed file (cp, diff and tar take two files with one st_ino for one file).
func (s *stack) freeIno(ino uint64) uint64 {
	for s.kept[ino] || ino <= 1 {
		// splitmix64's finaliser; the top bit keeps it clear of the numbers
		// mapIno makes of the usual devices' files.
		ino ^= ino >> 30
		ino *= 0xbf58476d1ce4e5b9
		ino ^= ino >> 27
		ino *= 0x94d049bb133111eb
		ino ^= ino >> 31
		ino |= 1 << 63
	}
	return ino
}

// root returns the union root's entry in s: every layer down to the first opaque one.
func (s *stack) root() (*entry, error) {
	e := &entry{ino: 1}
	for i := range s.layers {
		e.layers = append(e.layers, i)
		if i == len(s.layers)-1 {
			break
		}
		fd, err := s.openDir(i, "", unix.O_RDONLY)
		if err != nil {
			return nil, err
		}
		opq, _ := cow.IsOpaqueDir(fd)
		unix.Close(fd)
		if opq {
			break
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(s.layers[0].fd, &st); err != nil {
		return nil, err
	}
	if l := s.layers[0]; l.override != nil {
		l.overrideFd(&st, l.fd)
	}
	e.st = attrsOf(&st)
	return e, nil
}

// keepInodes writes to file the inode map of the layer dir committed against s:
// each entry of committed gets the number and generation its path has in s, but
// those in skip.
func (s *stack) keepInodes(file, committed string, skip map[[2]uint64]bool) error {
	fd, err := unix.Open(committed, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	id, err := layerID(fd)
	unix.Close(fd)
	if err != nil {
		return err
	}
	root, err := s.root()
	if err != nil {
		return err
	}
	dirs := map[string]*entry{".": root}
	m := inoMap{}
	err = filepath.WalkDir(committed, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(committed, p)
		if err != nil || rel == "." {
			return err
		}
		parent := dirs[filepath.Dir(rel)]
		if parent == nil {
			return filepath.SkipDir // not a dir of the union: nothing under it is
		}
		prel := filepath.Dir(rel)
		if prel == "." {
			prel = ""
		}
		e, err := s.lookupIn(parent.layers, filepath.ToSlash(prel), d.Name())
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil // a whiteout, or gone
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Mode&unix.S_IFMT != e.st.Mode&unix.S_IFMT {
			return nil
		}
		if !skip[[2]uint64{e.ino, e.gen}] {
			m[st.Ino] = [2]uint64{e.ino, e.gen}
		}
		if e.isDir() {
			dirs[rel] = e
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keep inode numbers: %w", err)
	}
	return writeInoMap(file, id, m)
}

// KeepInodes writes to file the inode map of the layer dir committed, made from
// the upper dir of the union of lowers (top first, with their own maps) and upper,
// for a remount on a stack whose lowers include committed (Options.InodeMaps). For
// a container that is not mounted; MountPoint.KeepInodes is for a live one.
func KeepInodes(file, committed string, lowers []string, upper string, maps InodeMaps, f cow.Format) error {
	s, err := openStack(append([]string{upper}, lowers...), "", "", f)
	if err != nil {
		return err
	}
	defer s.close()
	s.layers[0].upper = true // its entries carry their origin (identify); never written
	s.loadInoMaps(maps)
	return s.keepInodes(file, committed, nil)
}

// KeepInodes is KeepInodes for the live mount's stack. Call it between Pause and
// Rebase, with the layer dir the upper dir was committed to.
//
// Files with live passthrough opens keep no number: the Rebase pins their nodes
// to the old upper's files, the kernel's backing files of those opens (taintOpen),
// and a pinned node refuses every other open (ETXTBSY) until they end. Under a
// new number a lookup after the Rebase makes a new node that opens, as before
// inode maps; the writes through the old opens land at their release
// (landRebased).
func (m *MountPoint) KeepInodes(file, committed string) error {
	skip := map[[2]uint64]bool{}
	m.fs.ptOpenIDs(m.fs.root.EmbeddedInode(), skip)
	return m.fs.stack.Load().keepInodes(file, committed, skip)
}

// ptOpenIDs adds to ids the number and generation of every node below in with
// live passthrough opens.
func (fsys *unionFS) ptOpenIDs(in *fusefs.Inode, ids map[[2]uint64]bool) {
	n := in.Operations().(*node)
	n.mu.Lock()
	if n.fstIf().ptOpens > 0 {
		ids[[2]uint64{in.StableAttr().Ino, in.StableAttr().Gen}] = true
	}
	n.mu.Unlock()
	for _, ch := range in.Children() {
		fsys.ptOpenIDs(ch, ids)
	}
}
