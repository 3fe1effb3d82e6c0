package cow

import (
	"bytes"
	"testing"
)

// The rootless containers message as umoci writes it (protobuf Resource, root's
// ids as 2^32-1), and back.
func TestRootlessXattrValue(t *testing.T) {
	for _, c := range []struct {
		uid, gid int
		enc      []byte
	}{
		{0, 0, nil},
		{33, 0, []byte{0x08, 0x21, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{0, 100, []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x10, 0x64}},
		{1000, 70000, []byte{0x08, 0xe8, 0x07, 0x10, 0xf0, 0xa2, 0x04}},
	} {
		got := encodeRootless(c.uid, c.gid)
		if !bytes.Equal(got, c.enc) {
			t.Errorf("encode(%d, %d) = %x, want %x", c.uid, c.gid, got, c.enc)
		}
		if c.enc == nil {
			continue
		}
		uid, gid, err := decodeRootless(got)
		if err != nil || uid != c.uid || gid != c.gid {
			t.Errorf("decode(%x) = %d, %d, %v; want %d, %d", got, uid, gid, err, c.uid, c.gid)
		}
	}
	// Fields absent are root's (proto3), unknown fields are skipped, and a
	// value cut short is refused.
	if uid, gid, err := decodeRootless([]byte{0x10, 0x05, 0x1a, 0x01, 'x'}); err != nil || uid != 0 || gid != 5 {
		t.Errorf("decode(gid 5, unknown field) = %d, %d, %v", uid, gid, err)
	}
	if _, _, err := decodeRootless([]byte{0x08, 0xff}); err == nil {
		t.Error("decode of a cut varint: no error")
	}
}
