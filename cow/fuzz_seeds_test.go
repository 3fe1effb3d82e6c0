package cow

import (
	"archive/tar"
	"strconv"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/internal/tartest"
)

// rawSeeds are FuzzApply's seed tars, built here rather than kept as files: each
// a shape a hostile or merely unusual layer has. Links aim at "../outside", the
// sentinel beside the target.
func rawSeeds(t testing.TB) map[string][]byte {
	long := strings.Repeat("long/", 30) + "name"
	pax := func(h tar.Header, recs map[string]string) tarEntry {
		h.Format, h.PAXRecords = tar.FormatPAX, recs
		return tarEntry{hdr: h}
	}
	gnu := func(e tarEntry) tarEntry { e.hdr.Format = tar.FormatGNU; return e }
	dev := func(typ byte, name string, major, minor int64) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: typ, Name: name, Devmajor: major, Devminor: minor}}
	}
	fifo := tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}}
	seeds := map[string][]byte{
		"links to earlier entries": buildTar(t, dir("a"), reg("a/b", "x"), symlink("a/l", "../.."), hardlink("a/h", "a/b"), hardlink("c", "a/h")),
		"links to missing targets": buildTar(t, symlink("s", "nope"), hardlink("h", "nope")),
		"file through symlink":     buildTar(t, symlink("link", "../outside"), reg("link/file", "pwned")),
		"file over symlink":        buildTar(t, symlink("s", "../outside/file"), reg("s", "pwned")),
		"dotdot":                   buildTar(t, reg("../outside/file", "pwned")),
		"dotdot inner":             buildTar(t, reg("a/../../outside/file", "pwned"), reg("a/../b", "fine")),
		"absolute":                 buildTar(t, reg("/outside/file", "pwned")),
		"hardlink out":             buildTar(t, hardlink("h", "../outside/file")),
		"symlink loop":             buildTar(t, symlink("d", "."), dir("d/d"), reg("d/d/f", "x")),
		"whiteouts":                buildTar(t, reg(".wh.x", ""), dir("o"), reg("o/.wh..wh..opq", ""), reg(".wh..wh.plnk", ""), reg("o/.wh..", "")),
		"fifo, root link":          buildTar(t, fifo, symlink("q", "/"), hardlink("r", "q"), reg("r/layerfs-fuzz-pwned", "x")),
		"global header, dup":       buildTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "c"}}}, reg("f", "x"), hardlink("f", "f"), reg("f", "y")),
		"dir to file and back":     buildTar(t, dir("d"), reg("d/x", "1"), reg("d", "file"), dir("d"), reg("d/y", "2"), symlink("d", "../outside"), dir("d")),
		"pax path and linkpath": buildTar(t,
			pax(tar.Header{Typeflag: tar.TypeReg, Name: long}, map[string]string{"path": "pax/name", "mtime": "1.5"}),
			pax(tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: long}, map[string]string{"linkpath": "../outside"})),
		"pax xattrs": buildTar(t,
			pax(tar.Header{Typeflag: tar.TypeReg, Name: "x"}, map[string]string{"SCHILY.xattr.user.k": "v\x00w", "SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.security.capability": capNetBindService}),
			pax(tar.Header{Typeflag: tar.TypeDir, Name: "d"}, map[string]string{"SCHILY.xattr.user.layerfs.x": "1", "SCHILY.xattr.trusted.overlay.redirect": "/x"})),
		"gnu long names": buildTar(t, gnu(reg(long, "x")), gnu(hardlink("h"+long, long)), gnu(symlink("s", long+"/../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../..")),
			reg(strings.Repeat("m", 255), "max"), reg(strings.Repeat("n", 256), "too long")),
		"devices": buildTar(t, dev(tar.TypeChar, "c", 1, 3), dev(tar.TypeBlock, "b", 7, 9), dev(tar.TypeChar, "wh", 0, 0),
			dev(tar.TypeChar, "big", 4096, 1<<20), fifo, reg("p", "over the fifo")),
		"modes": buildTar(t, tarEntry{hdr: dirHdr("ro", 0o500)}, reg("ro/f", "x"), tarEntry{hdr: dirHdr("./", 0o700)},
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "s", Mode: 0o7777}}),
		"unknown type": buildTar(t, reg("a", "x"), tarEntry{hdr: tar.Header{Typeflag: 'Z', Name: "z"}}),
	}
	// What archive/tar's Writer will not write.
	seeds["old gnu sparse"] = tartest.Cat(
		tartest.Entry(tartest.Header{Name: "sparse", Typeflag: 'S', Mode: 0o644, Magic: tartest.GNUMagic,
			Sparse: [][2]int64{{0, 5}, {70000, 5}}, RealSize: 80000}, []byte("helloworld")),
		tartest.End())
	seeds["old gnu sparse, extended"] = tartest.Cat(
		tartest.Header{Name: "sparse", Typeflag: 'S', Mode: 0o644, Magic: tartest.GNUMagic, Size: 5,
			Sparse: [][2]int64{{0, 1}, {10, 1}, {20, 1}, {30, 1}}, RealSize: 100000, Extended: true}.Bytes(),
		extSparse([2]int64{99000, 1}), tartest.Pad([]byte("abcde")), tartest.End())
	seeds["pax sparse 0.1"] = tartest.Cat(
		tartest.PAX(map[string]string{"GNU.sparse.map": "0,3,80000,3", "GNU.sparse.numblocks": "2", "GNU.sparse.size": "90000", "GNU.sparse.name": "s01"}),
		tartest.Entry(tartest.Header{Name: "GNUSparseFile.0/s01", Typeflag: '0', Mode: 0o644}, []byte("abcdef")),
		tartest.End())
	seeds["pax sparse 1.0"] = tartest.Cat(
		tartest.PAX(map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s10", "GNU.sparse.realsize": "70000"}),
		tartest.Entry(tartest.Header{Name: "GNUSparseFile.0/s10", Typeflag: '0', Mode: 0o644},
			append(tartest.Pad([]byte("2\n0\n3\n69997\n3\n")), "abcxyz"...)),
		tartest.End())
	seeds["pax size override"] = tartest.Cat(
		tartest.PAX(map[string]string{"size": "3", "path": "pax/f"}),
		tartest.Entry(tartest.Header{Name: "f", Typeflag: '0', Mode: 0o644, Size: 600}, []byte("abc")),
		tartest.End())
	seeds["pax NUL path"] = tartest.Cat(
		tartest.PAX(map[string]string{"path": "a\x00/../../outside/file"}),
		tartest.Entry(tartest.Header{Name: "f", Typeflag: '0', Mode: 0o644}, []byte("x")),
		tartest.End())
	seeds["huge size, no data"] = tartest.Cat(
		tartest.Header{Name: "huge", Typeflag: '0', Mode: 0o644, SizeField: []byte{0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0}}.Bytes(),
		tartest.Pad([]byte("x")))
	seeds["link with size"] = tartest.Cat(
		tartest.Entry(tartest.Header{Name: "f", Typeflag: '0', Mode: 0o644}, []byte("x")),
		tartest.Header{Name: "h", Typeflag: '1', Linkname: "f", Size: 512}.Bytes(),
		tartest.Entry(tartest.Header{Name: "g", Typeflag: '0', Mode: 0o644}, []byte("y")),
		tartest.End())
	good := buildTar(t, dir("a"), reg("a/b", strings.Repeat("x", 700)), reg("c", "y"))
	seeds["truncated in data"] = good[:1024+300]
	seeds["truncated in header"] = good[:2048+100]
	seeds["no end marker"] = good[:len(good)-1024]
	seeds["one end block, then more"] = tartest.Cat(good[:len(good)-1024], make([]byte, 512), buildTar(t, reg("late", "x")))
	return seeds
}

// extSparse is an old GNU sparse extension block holding entries.
func extSparse(entries ...[2]int64) []byte {
	b := make([]byte, tartest.Block)
	for i, e := range entries {
		copy(b[24*i:], octal12(e[0]))
		copy(b[24*i+12:], octal12(e[1]))
	}
	return b
}

func octal12(v int64) string {
	s := strings.Repeat("0", 11) + strconv.FormatInt(v, 8)
	return s[len(s)-11:] + "\x00"
}
