package cow

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCopySparse: zeros arrive as holes in a file of 64 KiB or more, whatever
// the reads' sizes, a trailing run of zeros included (the file keeps its
// size); a smaller file is written whole; the content reads back the same and
// a read error is returned.
func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	mib := 1 << 20
	var big bytes.Buffer
	big.Write(make([]byte, 3*mib+100))
	big.WriteString("data in the middle")
	big.Write(make([]byte, 5*mib))
	big.WriteString("tail")
	big.Write(make([]byte, 2*mib+7)) // a hole at the end
	for _, tc := range []struct {
		name      string
		data      []byte
		bufSize   int
		maxBlocks int64 // 512-byte blocks allocated at most; -1: all of it
	}{
		{"big", big.Bytes(), mib, 64},
		{"big, small reads", big.Bytes(), 64 << 10, 64},
		{"small zeros", make([]byte, 10000), mib, -1},
		{"empty", nil, mib, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n, err := CopySparse(int(f.Fd()), io.MultiReader(bytes.NewReader(tc.data)), make([]byte, tc.bufSize))
			if err != nil || n != int64(len(tc.data)) {
				t.Fatalf("CopySparse = %d, %v; want %d", n, err, len(tc.data))
			}
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("read back %d bytes (%v), not what was copied (%d bytes)", len(got), err, len(tc.data))
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			if tc.maxBlocks >= 0 && st.Blocks > tc.maxBlocks {
				t.Errorf("%d blocks allocated for %d bytes, want at most %d", st.Blocks, len(tc.data), tc.maxBlocks)
			}
			if tc.maxBlocks < 0 && st.Blocks*512 < int64(len(tc.data)) {
				t.Errorf("%d blocks allocated for a small file of %d bytes, want it written whole", st.Blocks, len(tc.data))
			}
		})
	}
	f, err := os.Create(filepath.Join(dir, "failing"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := CopySparse(int(f.Fd()), io.MultiReader(bytes.NewReader(make([]byte, 100)), errReader{}), make([]byte, 1<<20)); err == nil || err.Error() != "boom" {
		t.Errorf("CopySparse of a failing reader = %v, want its error", err)
	}
}
