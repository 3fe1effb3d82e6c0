package cow

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestCheckDeviceNumbers: mknod(2) takes a 32-bit dev_t, so Apply made another
// device of numbers past Linux's 12:20 bits (1048576:1073741824 became 0:0, a
// whiteout that hid the entry in a mount); both now refuse them.
func TestCheckDeviceNumbers(t *testing.T) {
	for _, tc := range []struct {
		major, minor int64
		ok           bool
	}{
		{1, 3, true}, {maxDevMajor, maxDevMinor, true},
		{maxDevMajor + 1, 0, false}, {0, maxDevMinor + 1, false},
		{1 << 20, 1 << 30, false}, {-1, 0, false}, {0, 1 << 32, false},
	} {
		for _, typ := range []byte{tar.TypeChar, tar.TypeBlock} {
			t.Run(fmt.Sprintf("%c-%d:%d", typ, tc.major, tc.minor), func(t *testing.T) {
				var b bytes.Buffer
				tw := tar.NewWriter(&b)
				h := &tar.Header{Typeflag: typ, Name: "d", Mode: 0o600, Devmajor: tc.major, Devminor: tc.minor, Format: tar.FormatGNU}
				if err := tw.WriteHeader(h); err != nil {
					t.Skipf("tar cannot write %d:%d: %v", tc.major, tc.minor, err)
				}
				tw.Close()
				_, err := CheckLayer(bytes.NewReader(b.Bytes()))
				if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrUnsupported) {
					t.Errorf("CheckLayer(device %d:%d) = %v, want ok: %v, else ErrUnsupported", tc.major, tc.minor, err, tc.ok)
				}
				sb := newSandbox(t)
				checkApply(t, sb, b.Bytes()) // Apply agrees with CheckLayer
			})
		}
	}
}
