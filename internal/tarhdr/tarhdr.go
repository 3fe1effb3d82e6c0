// Package tarhdr reads fields of raw tar headers, for code that walks a tar stream
// without archive/tar (blobstore's layer size counter, the fuzz helpers).
package tarhdr

import (
	"bytes"
	"strconv"
)

// Number parses a numeric header field: octal text, or base-256 when the high
// bit of the first byte is set (GNU, for sizes of 8 GiB and more).
func Number(f []byte) (int64, bool) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		if f[0]&0x40 != 0 {
			return 0, false // negative
		}
		var v int64
		for i, x := range f {
			if i == 0 {
				x &= 0x7f
			}
			if v > (1<<55)-1 {
				return 0, false
			}
			v = v<<8 | int64(x)
		}
		return v, true
	}
	s := string(bytes.Trim(f, " \x00"))
	if s == "" {
		return 0, true
	}
	v, err := strconv.ParseInt(s, 8, 64)
	return v, err == nil
}
