// Package tree generates the deterministic lower tree the filesystem benchmarks run
// on: a source-and-docs-like directory tree of small text files, a tree of
// mid-size binary files like a rootfs's /usr, a small C project to compile, and
// two large files for sequential I/O and copy-up.
//
// # Layout
//
//	<dir>/tree/   Spec.Files text files (plus a few symlinks and hard links) in
//	              nested project dirs, sizes skewed like source trees and docs
//	<dir>/bin/    Spec.BinFiles pseudo-random files of 1 KiB to 1 MiB (median
//	              32 KiB), 50 to a dir, like the programs and libraries of /usr
//	<dir>/src/    a C project (Spec.CFiles .c files, shared headers, a Makefile)
//	<dir>/big/big.bin   Spec.BigSize pseudo-random bytes (sequential read)
//	<dir>/big/mid.bin   Spec.MidSize pseudo-random bytes (copy-up)
//
// # Determinism
//
// Everything derives from one PCG seed and fixed mtimes, so the same Spec gives a
// byte-identical tree on every machine (Digest checks it). Generate writes into an
// empty or absent dir and marks completion with a stamp file, so an interrupted
// run is noticed (Ready) and regenerated.
package tree

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Spec sizes a generated tree.
type Spec struct {
	Files    int   // text files under tree/
	BinFiles int   // binary files under bin/
	CFiles   int   // .c files under src/
	BigSize  int64 // bytes of big/big.bin
	MidSize  int64 // bytes of big/mid.bin
	Seed     uint64
}

// Default is the tree run.sh uses: ~10k text files, 1,500 binary files (~80 MB),
// a 1 GiB and a 256 MiB file.
var Default = Spec{Files: 10000, BinFiles: 1500, CFiles: 24, BigSize: 1 << 30, MidSize: 256 << 20, Seed: 1}

// Quick is the --quick tree: the same shape, smaller.
var Quick = Spec{Files: 2000, BinFiles: 400, CFiles: 8, BigSize: 128 << 20, MidSize: 32 << 20, Seed: 1}

// Needle is a word planted in about one file in fifty, for grep.
const Needle = "LAYERFS_NEEDLE"

// stampName marks a complete tree; it holds the Spec it was made from.
const stampName = ".benchtree-done"

// mtime is every generated entry's modification time.
var mtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func (s Spec) String() string {
	return fmt.Sprintf("v3 files=%d bin=%d cfiles=%d big=%d mid=%d seed=%d", s.Files, s.BinFiles, s.CFiles, s.BigSize, s.MidSize, s.Seed)
}

// Ready reports whether dir holds a complete tree made from spec.
func Ready(dir string, spec Spec) bool {
	b, err := os.ReadFile(filepath.Join(dir, stampName))
	return err == nil && strings.TrimSpace(string(b)) == spec.String()
}

// Generate writes the tree for spec into dir, which must be absent or empty.
// It is not safe to run twice on the same dir at once.
func Generate(dir string, spec Spec) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("generate %s: directory not empty", dir)
	}
	g := &gen{root: dir, rng: rand.New(rand.NewPCG(spec.Seed, 0x6c61796572667321))}
	if err := g.textTree(filepath.Join(dir, "tree"), spec.Files); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	if err := g.binTree(filepath.Join(dir, "bin"), spec.BinFiles, spec.Seed+3); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	if err := g.cProject(filepath.Join(dir, "src"), spec.CFiles); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	big := filepath.Join(dir, "big")
	if err := os.Mkdir(big, 0o755); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	if err := randomFile(filepath.Join(big, "big.bin"), spec.BigSize, spec.Seed+1); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	if err := randomFile(filepath.Join(big, "mid.bin"), spec.MidSize, spec.Seed+2); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	if err := g.fixTimes(); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, stampName), []byte(spec.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("generate %s: %w", dir, err)
	}
	return nil
}

type gen struct {
	root string
	rng  *rand.Rand
}

var words = strings.Fields(`the of and to in is for on that with as by this are be from
at or it an was which have not can has but use file data value return error buffer
layer image mount struct func type const var string int uint64 bytes length offset
index table node inode entry cache read write open close sync path name dir tree
list map set get new free alloc lock unlock wait signal config option flag default
kernel user group mode size time version update remove create delete copy move`)

var exts = []string{".c", ".h", ".go", ".py", ".txt", ".md", ".html", ".json", ".rst", ".sh"}

var dirWords = []string{"src", "lib", "docs", "include", "internal", "pkg", "cmd", "test",
	"examples", "util", "net", "fs", "core", "api", "tools", "scripts", "share", "man", "html"}

// textTree writes n files in nested dirs: projects of a few hundred files each,
// dirs of ~1-15 files, depth up to 6.
func (g *gen) textTree(root string, n int) error {
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	var files []string
	written := 0
	for proj := 0; written < n; proj++ {
		pdir := filepath.Join(root, fmt.Sprintf("project%02d", proj))
		dirs := []string{pdir}
		if err := os.Mkdir(pdir, 0o755); err != nil {
			return err
		}
		target := min(n-written, 300+g.rng.IntN(900))
		for i := 0; i < target; {
			d := dirs[g.rng.IntN(len(dirs))]
			// New subdir, unless that would nest too deep.
			if strings.Count(d[len(pdir):], "/") < 5 && g.rng.IntN(2) == 0 {
				sub := filepath.Join(d, fmt.Sprintf("%s%d", dirWords[g.rng.IntN(len(dirWords))], len(dirs)))
				if err := os.Mkdir(sub, 0o755); err != nil {
					return err
				}
				dirs = append(dirs, sub)
				d = sub
			}
			k := min(target-i, 1+g.rng.IntN(14))
			for j := 0; j < k; j++ {
				name := filepath.Join(d, fmt.Sprintf("%s_%d%s", words[g.rng.IntN(len(words))], i+j, exts[g.rng.IntN(len(exts))]))
				if err := g.textFile(name, g.textSize()); err != nil {
					return err
				}
				files = append(files, name)
			}
			i += k
		}
		written += target
	}
	// About 1% symlinks (relative, to a sibling file) and 0.5% hard links, in
	// addition to the n files.
	for i := 0; i < n/100; i++ {
		f := files[g.rng.IntN(len(files))]
		link := f + ".link"
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Base(f), link); err != nil {
			return err
		}
	}
	for i := 0; i < n/200; i++ {
		f := files[g.rng.IntN(len(files))]
		link := f + ".hard"
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Link(f, link); err != nil {
			return err
		}
	}
	return nil
}

// textSize is skewed like source files: median ~4 KiB, a tail to ~256 KiB.
func (g *gen) textSize() int {
	x := g.rng.NormFloat64()*1.1 + 8.3 // ln(4000) ~ 8.3
	return int(min(max(math.Exp(x), 64), 256<<10))
}

// textFile writes size bytes of word lines; about one file in fifty has Needle.
func (g *gen) textFile(name string, size int) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	needle := g.rng.IntN(50) == 0
	col, n := 0, 0
	for n < size {
		var s string
		if needle && n > size/2 {
			s, needle = Needle, false
		} else {
			s = words[g.rng.IntN(len(words))]
		}
		if col+len(s) > 72 {
			w.WriteByte('\n')
			n, col = n+1, 0
		} else if col > 0 {
			w.WriteByte(' ')
			n, col = n+1, col+1
		}
		w.WriteString(s)
		n, col = n+len(s), col+len(s)
	}
	w.WriteByte('\n')
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if g.rng.IntN(10) == 0 {
		if err := f.Chmod(0o755); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// binTree writes n pseudo-random files, 50 to a dir, their sizes spread like a
// rootfs's programs and libraries: median 32 KiB, from 1 KiB to 1 MiB. Files of
// a few tens of KiB read through FUSE cost about one READ each, where tree/'s
// small text files cost less than their lookups and big.bin is one stream.
func (g *gen) binTree(root string, n int, seed uint64) error {
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		d := filepath.Join(root, fmt.Sprintf("d%02d", i/50))
		if i%50 == 0 {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
		}
		x := g.rng.NormFloat64() + math.Log(32<<10)
		size := int64(min(max(math.Exp(x), 1<<10), 1<<20))
		if err := randomFile(filepath.Join(d, fmt.Sprintf("%s%04d", words[g.rng.IntN(len(words))], i)), size, seed+uint64(i)<<8); err != nil {
			return err
		}
	}
	return nil
}

// cProject writes a small C program: n translation units that include a few
// project headers, and a Makefile (make -j2 builds it; make clean resets).
func (g *gen) cProject(dir string, n int) error {
	inc := filepath.Join(dir, "include")
	if err := os.MkdirAll(inc, 0o755); err != nil {
		return err
	}
	const headers = 8
	for h := 0; h < headers; h++ {
		var b strings.Builder
		fmt.Fprintf(&b, "#ifndef BENCH_H%d\n#define BENCH_H%d\n#include <stddef.h>\n#include <stdint.h>\n", h, h)
		for i := 0; i < 40; i++ {
			fmt.Fprintf(&b, "struct s%d_%d { int64_t a; uint32_t b[%d]; const char *name; };\n", h, i, 1+g.rng.IntN(16))
			fmt.Fprintf(&b, "static inline int64_t inl%d_%d(int64_t x) { return x * %d + %d; }\n", h, i, 1+g.rng.IntN(97), g.rng.IntN(1000))
		}
		b.WriteString("#endif\n")
		if err := os.WriteFile(filepath.Join(inc, fmt.Sprintf("h%d.h", h)), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	var objs []string
	for i := 0; i < n; i++ {
		var b strings.Builder
		b.WriteString("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n")
		for h := 0; h < headers; h++ {
			fmt.Fprintf(&b, "#include \"h%d.h\"\n", h)
		}
		for f := 0; f < 12; f++ {
			fmt.Fprintf(&b, "int64_t unit%d_fn%d(int64_t x) {\n\tint64_t acc = %d;\n", i, f, g.rng.IntN(100))
			fmt.Fprintf(&b, "\tfor (int64_t i = 0; i < x; i++) { acc += inl%d_%d(i) ^ (acc >> %d); }\n", g.rng.IntN(headers), g.rng.IntN(40), 1+g.rng.IntN(7))
			fmt.Fprintf(&b, "\tchar buf[64]; snprintf(buf, sizeof buf, \"%%lld\", (long long)acc);\n\treturn acc + (int64_t)strlen(buf);\n}\n")
		}
		if i == 0 {
			fmt.Fprintf(&b, "int main(void) {\n\tint64_t t = 0;\n")
			for j := 0; j < n; j++ {
				fmt.Fprintf(&b, "\t{ extern int64_t unit%d_fn0(int64_t); t += unit%d_fn0(3); }\n", j, j)
			}
			b.WriteString("\tprintf(\"%lld\\n\", (long long)t);\n\treturn 0;\n}\n")
		}
		name := fmt.Sprintf("unit%03d.c", i)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			return err
		}
		objs = append(objs, strings.TrimSuffix(name, ".c")+".o")
	}
	mk := "CFLAGS = -O1 -Iinclude\nOBJS = " + strings.Join(objs, " ") + "\n" +
		"prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n" +
		"%.o: %.c $(wildcard include/*.h)\n\t$(CC) $(CFLAGS) -c -o $@ $<\n" +
		"clean:\n\trm -f prog $(OBJS)\n.PHONY: clean\n"
	return os.WriteFile(filepath.Join(dir, "Makefile"), []byte(mk), 0o644)
}

// randomFile writes size pseudo-random (incompressible) bytes.
func randomFile(name string, size int64, seed uint64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	var key [32]byte
	for i := range key {
		key[i] = byte(seed >> (8 * (i % 8)))
	}
	src := rand.NewChaCha8(key)
	if _, err := io.CopyBuffer(f, io.LimitReader(src, size), make([]byte, 1<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fixTimes sets every entry's mtime and atime to the fixed generation time, dirs
// last so writing children does not bump them again.
func (g *gen) fixTimes() error {
	var dirs []string
	err := filepath.WalkDir(g.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		return os.Chtimes(p, mtime, mtime)
	})
	if err != nil {
		return err
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if err := os.Chtimes(d, mtime, mtime); err != nil {
			return err
		}
	}
	return nil
}

// Digest hashes the tree under dir (names, types, modes, sizes, link targets and
// contents of files up to 1 MiB; big files by size only), for determinism checks.
func Digest(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", rel, fi.Mode(), fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "-> %s\n", t)
		case fi.Mode().IsRegular() && fi.Size() <= 1<<20:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
