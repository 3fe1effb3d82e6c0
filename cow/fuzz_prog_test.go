package cow

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
	"time"
)

// Fuzz programs: FuzzApplyEntries and FuzzRoundTrip do not fuzz tar bytes, they
// fuzz a short program that buildProg turns into a valid tar. Names, link targets,
// types, modes and formats come from small alphabets chosen to collide (the same
// names again, ".." and "." components, whiteouts, links to the sentinel), so most
// mutations make a tar that reaches Apply's checks instead of archive/tar's.
//
// A program is a flags byte, then entries: op (bits 0-3 the type, bit 4 "with
// xattrs", bits 6-7 the gid), attr (bits 0-2 the mode, 3-4 the format, 5-7 the
// xattr set, 6-7 the uid), a path, and per type a link target, a data byte or
// device numbers. Missing bytes read as 0.

type progReader struct{ b []byte }

func (r *progReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// progComps are the path components a program picks from.
var progComps = []string{"a", "b", "c", ".", "..", "", WhiteoutName("a"), OpaqueMarker, "outside", "file",
	"d", strings.Repeat("n", 100), strings.Repeat("m", 255), strings.Repeat("x", 256), "caf\xe9", WhiteoutMetaPrefix + "x"}

// path reads a name: one to four components, maybe "./"-prefixed, "/"-suffixed or
// absolute (absolute names point into the sandbox, never at the host's /).
func (r *progReader) path(sb *sandbox) string {
	c := r.next()
	var parts []string
	for range 1 + int(c&3) {
		parts = append(parts, progComps[int(r.next())%len(progComps)])
	}
	p := strings.Join(parts, "/")
	switch c >> 2 & 3 {
	case 1:
		p = "./" + p
	case 2:
		p += "/"
	case 3:
		p = sb.base + "/" + p
	}
	return p
}

// symlinkTarget reads a symlink's target: a path as above, or one aimed at the
// sentinel or the target dir itself.
func (r *progReader) symlinkTarget(sb *sandbox) string {
	c := r.next()
	if c < 128 {
		r.b = append([]byte{c}, r.b...)
		return r.path(sb)
	}
	return []string{"..", "../..", "../outside", "../outside/file", "../outside/d", "../../outside", ".", "",
		sb.base, sb.outside, sb.outside + "/file", sb.root, sb.root + "/a", "a/../..", sb.base + "/..", "../root/a"}[c%16]
}

var progModes = []int64{0o644, 0o755, 0o4755, 0, 0o1777, 0o7777, 0o500, 0o200}

var progXattrs = []map[string]string{
	{"SCHILY.xattr.user.k": "v\x00w"},
	{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.overlay.redirect": "/x"},
	{"SCHILY.xattr.security.capability": capNetBindService},
	{"SCHILY.xattr.user.layerfs.origin": "1", "SCHILY.xattr.trusted.k": ""},
	{"SCHILY.xattr.system.posix_acl_access": "garbage"},
	{"SCHILY.xattr.user.big": strings.Repeat("v", 64<<10+1)},
	{"SCHILY.xattr.user." + strings.Repeat("k", 251): "v", "SCHILY.xattr.trusted.": "v"},
	{"SCHILY.xattr.": "v", "SCHILY.xattr.foo": "v"},
}

var progFormats = []tar.Format{tar.FormatUnknown, tar.FormatUSTAR, tar.FormatPAX, tar.FormatGNU}

// buildProg turns a program into a tar (at most 64 entries). Flags: bit 0 leaves
// out the end-of-archive marker, bit 1 appends trailing bytes after it, bit 2
// cuts the tar short (where, the last byte of the program says).
func buildProg(t testing.TB, prog []byte, sb *sandbox) []byte {
	t.Helper()
	r := &progReader{b: prog}
	flags := r.next()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n := 0; len(r.b) > 0 && n < 64; n++ {
		op, attr := r.next(), r.next()
		h := &tar.Header{Name: r.path(sb), Mode: progModes[attr&7], Format: progFormats[attr>>3&3],
			ModTime: time.Unix(1700000000, int64(attr)), Uid: int(attr >> 6), Gid: int(op >> 6)}
		if x := int(attr >> 5); x < len(progXattrs) && op&0x10 != 0 {
			h.PAXRecords = progXattrs[x]
		}
		var data []byte
		typ := (op & 0xf) % 12
		switch typ {
		case 0, 1:
			h.Typeflag = tar.TypeReg
			s := r.next()
			data = bytes.Repeat([]byte{'a' + s%26}, int(s>>2))
		case 2:
			h.Typeflag = tar.TypeDir
		case 3:
			h.Typeflag, h.Linkname = tar.TypeSymlink, r.symlinkTarget(sb)
		case 4:
			h.Typeflag, h.Linkname = tar.TypeLink, r.path(sb)
		case 5:
			h.Typeflag = tar.TypeFifo
		case 6, 7:
			h.Typeflag = tar.TypeChar
			if typ == 7 {
				h.Typeflag = tar.TypeBlock
			}
			h.Devmajor, h.Devminor = int64(r.next()%4), int64(r.next())
		case 8:
			h = &tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": h.Name}}
		case 9:
			h.Typeflag = []byte{'Z', tar.TypeCont, 'V', tar.TypeGNULongName}[op>>5&3]
		case 10:
			// Big enough for writeData's hole detection: zero blocks with data between.
			h.Typeflag = tar.TypeReg
			s := r.next()
			data = make([]byte, sparseMin+int(s)*1000)
			for i := int(s & 7); i < len(data); i += 9 * holeBlock {
				data[i] = s | 1
			}
		case 11:
			h.Typeflag = tar.TypeReg // a name again, with other content
			data = []byte(h.Name)
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			h.Format = tar.FormatUnknown
			if err := tw.WriteHeader(h); err != nil {
				continue // no tar can say this: next entry
			}
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatalf("buildProg: write %s: %v", h.Name, err)
		}
	}
	var err error
	if flags&1 != 0 {
		err = tw.Flush()
	} else {
		err = tw.Close()
	}
	if err != nil {
		t.Fatalf("buildProg: %v", err)
	}
	b := buf.Bytes()
	if flags&2 != 0 {
		b = append(b, bytes.Repeat([]byte{flags}, int(flags))...)
	}
	if flags&4 != 0 && len(prog) > 0 {
		b = b[:len(b)*int(prog[len(prog)-1])/256]
	}
	return b
}

// Program building, for the seeds: components by index into progComps.
const (
	cA, cB, cC, cDot, cDotDot, cEmpty, cWh, cOpq, cOutside, cFile, cD, cN100, cM255, cX256 byte = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
	pRel, pDotSlash, pSlash, pAbs                                                          byte = 0, 1, 2, 3
	opReg, opDir, opSymlink, opHard, opFifo, opChar, opBlock, opGlobal, opUnknown, opBig   byte = 0, 2, 3, 4, 5, 6, 7, 8, 9, 10
	opXattrs                                                                               byte = 0x10 // with attr>>5 choosing the set
)

// pn is a path: a prefix kind and components.
func pn(prefix byte, comps ...byte) []byte {
	return append([]byte{byte(len(comps)-1) | prefix<<2}, comps...)
}

// pe is one entry: op, attr, name, then the op's extra bytes (a data byte, a
// link target as pn or 128+special, device numbers).
func pe(op, attr byte, name []byte, extra ...[]byte) []byte {
	b := append([]byte{op, attr}, name...)
	for _, e := range extra {
		b = append(b, e...)
	}
	return b
}

func progOf(flags byte, entries ...[]byte) []byte {
	return append([]byte{flags}, bytes.Join(entries, nil)...)
}

// special link targets (symlinkTarget's list, from 128).
var (
	tDotDot      = []byte{128}
	tOutside     = []byte{130}
	tOutsideFile = []byte{131}
	tDot         = []byte{134}
	tAbsOutFile  = []byte{138}
	tAbsRootA    = []byte{140}
)

// progSeeds are programs worth starting from: each a pattern a hostile tar uses.
var progSeeds = [][]byte{
	progOf(0, pe(opDir, 1, pn(pRel, cA)), pe(opReg, 0, pn(pRel, cA, cB), []byte{20}),
		pe(opSymlink, 0, pn(pRel, cA, cC), pn(pRel, cDotDot, cDotDot)), pe(opHard, 0, pn(pRel, cA, cD), pn(pRel, cA, cB))),
	progOf(0, pe(opSymlink, 0, pn(pRel, cA), tOutside), pe(opReg, 0, pn(pRel, cA, cFile), []byte{40})),
	progOf(0, pe(opSymlink, 0, pn(pRel, cA), tAbsOutFile), pe(opReg, 0, pn(pRel, cA), []byte{9})),
	progOf(0, pe(opSymlink, 0, pn(pRel, cA), tOutsideFile), pe(opHard, 0, pn(pRel, cB), pn(pRel, cA)), pe(opReg, 0, pn(pRel, cB), []byte{9})),
	progOf(0, pe(opSymlink, 0, pn(pRel, cD), tDot), pe(opDir, 1, pn(pRel, cD, cD)), pe(opReg, 0, pn(pRel, cD, cD, cFile), []byte{7})),
	progOf(0, pe(opSymlink, 0, pn(pRel, cA), tAbsRootA), pe(opDir, 1, pn(pRel, cA)), pe(opReg, 0, pn(pRel, cA, cB), []byte{7})),
	progOf(0, pe(opReg, 0, pn(pRel, cWh), []byte{0}), pe(opDir, 1, pn(pRel, cA)), pe(opReg, 0, pn(pRel, cA, cOpq), []byte{0})),
	progOf(0, pe(opFifo, 0, pn(pRel, cA)), pe(opSymlink, 0, pn(pRel, cB), tDotDot), pe(opHard, 0, pn(pRel, cC), pn(pRel, cB)),
		pe(opReg, 0, pn(pRel, cC, cOutside, cFile), []byte{5})),
	progOf(0, pe(opDir, 1, pn(pRel, cD)), pe(opReg, 0, pn(pRel, cD, cA), []byte{5}), pe(opReg, 0, pn(pRel, cD), []byte{9}),
		pe(opDir, 1, pn(pSlash, cD)), pe(opReg, 0, pn(pRel, cD, cB), []byte{5}), pe(opHard, 0, pn(pRel, cA), pn(pRel, cD, cB)),
		pe(opDir, 6, pn(pDotSlash, cD))),
	progOf(0, pe(opReg|opXattrs, 0<<5, pn(pRel, cA), []byte{3}), pe(opDir|opXattrs, 1<<5|2<<3, pn(pRel, cD)),
		pe(opReg|opXattrs, 2<<5|3<<3, pn(pRel, cN100, cM255), []byte{4}), pe(opSymlink|opXattrs, 3<<5|2<<3, pn(pRel, cB), pn(pRel, cN100, cN100)),
		pe(opBig, 0, pn(pRel, cC), []byte{100})),
	progOf(0, pe(opChar, 0, pn(pRel, cA), []byte{0, 0}), pe(opBlock, 0, pn(pRel, cB), []byte{3, 9}), pe(opDir, 6, pn(pRel, cD)),
		pe(opFifo, 7, pn(pRel, cD, cA)), pe(opReg, 3, pn(pRel, cD, cB), []byte{8})),
	progOf(0, pe(opReg, 0, pn(pRel, cA), []byte{8}), pe(opHard, 0, pn(pRel, cA), pn(pRel, cA)), pe(opHard, 0, pn(pRel, cB), pn(pRel, cA)),
		pe(opHard, 0, pn(pRel, cC), pn(pRel, cB)), pe(opReg, 0, pn(pRel, cA), []byte{30}), pe(opHard, 0, pn(pRel, cD), pn(pRel, cFile))),
	progOf(0, pe(opDir, 1, pn(pRel, cA)), pe(opHard, 0, pn(pRel, cB), pn(pRel, cA))),
	progOf(0, pe(opReg, 0, pn(pAbs, cOutside, cFile), []byte{5})),
	progOf(0, pe(opReg, 0, pn(pRel, cA, cDotDot, cDotDot, cOutside), []byte{5})),
	progOf(0, pe(opGlobal, 0, pn(pRel, cA)), pe(opUnknown, 0, pn(pRel, cB))),
	progOf(4, pe(opReg, 0, pn(pRel, cA), []byte{200}), pe(opReg, 0, pn(pRel, cB), []byte{200}), []byte{180}),
	progOf(1, pe(opReg, 0, pn(pRel, cA), []byte{7})),
	progOf(2, pe(opReg, 0, pn(pRel, cA), []byte{7})),
}
