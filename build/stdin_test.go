package build

import (
	"archive/tar"
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/layerfs/layerfs/internal/testenv"
)

// TestStdinContextTruncatedCompressed: a compressed context cut short is a
// context that fails to unpack, as docker's IsArchive takes anything with a
// compression magic; it was read as a Dockerfile, whose parse error printed
// the compressed bytes as an "unknown instruction".
func TestStdinContextTruncatedCompressed(t *testing.T) {
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	data := strings.Repeat("FROM busybox\n", 200)
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write([]byte(data))
	tw.Close()

	var zb bytes.Buffer
	zw, err := zstd.NewWriter(&zb)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(tarball.Bytes())
	zw.Close()
	compressed := map[string]func(t *testing.T) []byte{
		"zstd": func(*testing.T) []byte { return zb.Bytes() },
		"bzip2": func(t *testing.T) []byte {
			testenv.RequireTool(t, "bzip2")
			cmd := exec.Command("bzip2", "-c")
			cmd.Stdin = bytes.NewReader(tarball.Bytes())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("bzip2: %v", err)
			}
			return out
		},
	}
	for name, compress := range compressed {
		t.Run(name, func(t *testing.T) {
			b := compress(t)
			cut := b[:len(b)-20]
			_, df, cleanup, err := StdinContext(bytes.NewReader(cut), t.TempDir())
			if err == nil {
				cleanup()
				t.Fatalf("StdinContext(truncated %s) = Dockerfile %q, want an unpack error", name, df)
			}
			if !strings.Contains(err.Error(), "unpack build context from stdin") {
				t.Errorf("StdinContext(truncated %s) = %v, want an unpack error", name, err)
			}
		})
	}
}
