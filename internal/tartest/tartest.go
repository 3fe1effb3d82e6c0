// Package tartest builds tars that archive/tar's Writer refuses to write (old GNU
// sparse headers, PAX sparse maps, raw PAX records, broken fields) and repairs the
// header checksums of mutated tars, for the fuzz targets of cow and blobstore.
//
// Fuzzing raw tar bytes mostly exercises archive/tar's checksum check: almost every
// mutation of a header block breaks its checksum and the reader stops there.
// FixChecksums recomputes the checksum of every header block, so a mutated field
// reaches the code under test instead.
package tartest

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"

	"github.com/layerfs/layerfs/internal/tarhdr"
)

// Block is the tar block size.
const Block = 512

// FixChecksums returns a copy of b in which every block that a tar reader would
// read as a header (walking the entries by their size fields, PAX "size" records
// included) carries a valid checksum. Blocks past a size field that runs off the
// end of b are left alone.
func FixChecksums(b []byte) []byte {
	out := bytes.Clone(b)
	paxSize := int64(-1)
	for off := 0; off+Block <= len(out); {
		blk := out[off : off+Block]
		off += Block
		if isZero(blk) {
			continue
		}
		copy(blk[148:156], "        ")
		var sum int64
		for _, c := range blk {
			sum += int64(c)
		}
		copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
		size, ok := tarhdr.Number(blk[124:136])
		if !ok || size < 0 {
			return out
		}
		flag := blk[156]
		if flag == 'S' && blk[482] != 0 { // old GNU sparse: extension blocks follow
			for off+Block <= len(out) {
				ext := out[off : off+Block]
				off += Block
				if ext[504] == 0 {
					break
				}
			}
		}
		switch flag {
		case 'x', 'g', 'L', 'K':
		default:
			if paxSize >= 0 {
				size = paxSize
			}
			paxSize = -1
			if flag >= '1' && flag <= '6' {
				size = 0 // header-only types
			}
		}
		n := (size + Block - 1) / Block * Block
		if n > int64(len(out)-off) {
			return out
		}
		if flag == 'x' {
			paxSize = paxRecordSize(out[off : off+int(size)])
		}
		off += int(n)
	}
	return out
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// paxRecordSize is the "size" record of PAX extended header data, or -1.
func paxRecordSize(recs []byte) int64 {
	size := int64(-1)
	for len(recs) > 0 {
		sp := bytes.IndexByte(recs, ' ')
		if sp <= 0 {
			break
		}
		n, err := strconv.Atoi(string(recs[:sp]))
		if err != nil || n <= sp || n > len(recs) {
			break
		}
		rec := bytes.TrimSuffix(recs[sp+1:n], []byte("\n"))
		recs = recs[n:]
		if v, ok := bytes.CutPrefix(rec, []byte("size=")); ok {
			if x, err := strconv.ParseInt(string(v), 10, 64); err == nil && x >= 0 {
				size = x
			}
		}
	}
	return size
}

// Header is one raw header block. Zero fields stay zero (NUL) in the block; Magic
// defaults to ustar ("ustar\x0000"); use GNUMagic for the old GNU format.
type Header struct {
	Name     string
	Mode     int64
	Size     int64
	Typeflag byte
	Linkname string
	Magic    string
	Devmajor int64
	Devminor int64
	// SizeField, if set, is written verbatim into the size field (base-256 sizes,
	// garbage) instead of Size.
	SizeField []byte
	// Sparse (old GNU format only) is the sparse map in the header: offset, length
	// pairs, at most 4; RealSize is the file's logical size and Extended sets the
	// "extension blocks follow" flag.
	Sparse   [][2]int64
	RealSize int64
	Extended bool
}

// GNUMagic is the old GNU format's magic and version.
const GNUMagic = "ustar  \x00"

// Bytes is the 512-byte header block, with its checksum.
func (h Header) Bytes() []byte {
	b := make([]byte, Block)
	copy(b[0:100], h.Name)
	octal(b[100:108], h.Mode)
	octal(b[108:116], 0)
	octal(b[116:124], 0)
	if h.SizeField != nil {
		copy(b[124:136], h.SizeField)
	} else {
		octal(b[124:136], h.Size)
	}
	octal(b[136:148], 1700000000)
	b[156] = h.Typeflag
	copy(b[157:257], h.Linkname)
	magic := h.Magic
	if magic == "" {
		magic = "ustar\x0000"
	}
	copy(b[257:265], magic)
	octal(b[329:337], h.Devmajor)
	octal(b[337:345], h.Devminor)
	for i, e := range h.Sparse {
		octal(b[386+24*i:386+24*i+12], e[0])
		octal(b[386+24*i+12:386+24*i+24], e[1])
	}
	if h.Extended {
		b[482] = 1
	}
	if magic == GNUMagic {
		octal(b[483:495], h.RealSize)
	}
	return FixChecksums(b)
}

func octal(f []byte, v int64) {
	s := strconv.FormatInt(v, 8)
	if len(s) > len(f)-1 {
		s = s[len(s)-(len(f)-1):]
	}
	copy(f, fmt.Sprintf("%0*s", len(f)-1, s))
}

// PAXData encodes PAX records (sorted by key, for stable bytes).
func PAXData(recs map[string]string) []byte {
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		b = append(b, PAXRecord(k, recs[k])...)
	}
	return b
}

// PAXRecord encodes one "<len> key=value\n" record.
func PAXRecord(k, v string) []byte {
	body := " " + k + "=" + v + "\n"
	n := len(body) + 1
	for len(strconv.Itoa(n))+len(body) != n {
		n++
	}
	return []byte(strconv.Itoa(n) + body)
}

// Entry is a header block and its data, padded to whole blocks.
func Entry(h Header, data []byte) []byte {
	if h.SizeField == nil && h.Size == 0 && h.Typeflag != '1' && h.Typeflag != '2' {
		h.Size = int64(len(data))
	}
	return append(h.Bytes(), Pad(data)...)
}

// PAX is an extended header ('x') carrying recs, for the entry that follows it.
func PAX(recs map[string]string) []byte {
	return Entry(Header{Name: "PaxHeaders/x", Typeflag: 'x', Mode: 0o644}, PAXData(recs))
}

// Pad pads data with NULs to whole blocks.
func Pad(data []byte) []byte {
	n := (len(data) + Block - 1) / Block * Block
	return append(bytes.Clone(data), make([]byte, n-len(data))...)
}

// End is the end-of-archive marker: two zero blocks.
func End() []byte { return make([]byte, 2*Block) }

// SparseTail is a tar (end marker included) of one PAX 1.0 sparse file, name,
// of logical size real, whose only data is its last byte, 'x': all but that byte
// is a hole.
func SparseTail(name string, real int64) []byte {
	return Cat(
		PAX(map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name, "GNU.sparse.realsize": strconv.FormatInt(real, 10)}),
		Entry(Header{Name: "GNUSparseFile.0/" + name, Typeflag: '0', Mode: 0o644},
			append(Pad([]byte("1\n"+strconv.FormatInt(real-1, 10)+"\n1\n")), 'x')),
		End())
}

// Cat concatenates parts into one tar.
func Cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
