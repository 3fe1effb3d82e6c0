package tree

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestGenerateDeterministic(t *testing.T) {
	spec := Spec{Files: 300, BinFiles: 30, CFiles: 3, BigSize: 1 << 20, MidSize: 64 << 10, Seed: 7}
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
	spec := Spec{Files: 500, BinFiles: 120, CFiles: 2, BigSize: 3 << 20, MidSize: 1 << 20, Seed: 1}
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
	var bins []int64
	filepath.Walk(filepath.Join(dir, "bin"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().IsRegular() {
			bins = append(bins, fi.Size())
		}
		return nil
	})
	slices.Sort(bins)
	if len(bins) != spec.BinFiles || bins[0] < 1<<10 || bins[len(bins)-1] > 1<<20 ||
		bins[len(bins)/2] < 16<<10 || bins[len(bins)/2] > 64<<10 {
		t.Errorf("files under bin/: %d, sizes %v to %v, median %v; want %d of 1 KiB to 1 MiB, median ~32 KiB",
			len(bins), bins[0], bins[len(bins)-1], bins[len(bins)/2], spec.BinFiles)
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
