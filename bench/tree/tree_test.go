package tree

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGenerateDeterministic(t *testing.T) {
	spec := Spec{Files: 300, CFiles: 3, BigSize: 1 << 20, MidSize: 64 << 10, Seed: 7}
	var digests []string
	for i := 0; i < 2; i++ {
		dir := filepath.Join(t.TempDir(), "lower")
		if err := Generate(dir, spec); err != nil {
			t.Fatal(err)
		}
		if !Ready(dir, spec) {
			t.Fatalf("Ready(%s) = false after Generate", dir)
		}
		d, err := Digest(dir)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Errorf("Digest of two generations = %s, %s, want equal", digests[0], digests[1])
	}
}

func TestGenerateShape(t *testing.T) {
	spec := Spec{Files: 500, CFiles: 2, BigSize: 3 << 20, MidSize: 1 << 20, Seed: 1}
	dir := t.TempDir()
	if err := Generate(dir, spec); err != nil {
		t.Fatal(err)
	}
	files, dirs := 0, 0
	filepath.Walk(filepath.Join(dir, "tree"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case fi.IsDir():
			dirs++
		case fi.Mode().IsRegular():
			files++
		}
		return nil
	})
	if files < spec.Files || files > spec.Files*11/10 {
		t.Errorf("regular files under tree/ = %d, want about %d", files, spec.Files)
	}
	if dirs < 10 {
		t.Errorf("dirs under tree/ = %d, want a nested tree", dirs)
	}
	for name, want := range map[string]int64{"big/big.bin": spec.BigSize, "big/mid.bin": spec.MidSize} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Size() != want {
			t.Errorf("Stat(%s) = %v, %v, want size %d", name, fi, err, want)
		}
	}
	if err := Generate(dir, spec); err == nil {
		t.Errorf("Generate into a non-empty dir succeeded, want an error")
	}
}
