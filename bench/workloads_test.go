package bench

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/layerfs/layerfs/bench/tree"
)

// The workloads, written in Go so the benchmarks need no external tools. Each
// works on a dir that shows the generated lower tree (tree/, big/) and returns a
// small summary, which TestWorkloadsAgree compares across targets.

// walk stats every entry under tree/ (find + stat).
func walk(dir string) (string, error) {
	n, size := 0, int64(0)
	err := filepath.WalkDir(filepath.Join(dir, "tree"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		n++
		if fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	return fmt.Sprintf("%d entries, %d bytes", n, size), err
}

// tarTree writes a tar of tree/ to a counter (tar cf - tree | wc -c).
func tarTree(dir string) (string, error) {
	var cw countWriter
	tw := tar.NewWriter(&cw)
	root := filepath.Join(dir, "tree")
	buf := make([]byte, 128<<10)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		hdr.Name = rel
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(tw, f, buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	return fmt.Sprintf("%d tar bytes", cw), err
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// grep reads every regular file under tree/ and counts lines with tree.Needle.
func grep(dir string) (string, error) {
	hits := 0
	needle := []byte(tree.Needle)
	err := filepath.WalkDir(filepath.Join(dir, "tree"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		hits += bytes.Count(b, needle)
		return err
	})
	return fmt.Sprintf("%d hits", hits), err
}

// catBin reads every file under bin/ (find | xargs cat) and sums its bytes.
func catBin(dir string) (string, error) {
	n, sum := 0, crc32.NewIEEE()
	buf := make([]byte, 128<<10)
	err := filepath.WalkDir(filepath.Join(dir, "bin"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n++
		_, err = io.CopyBuffer(sum, onlyReader{f}, buf)
		return err
	})
	return fmt.Sprintf("%d files, crc %08x", n, sum.Sum32()), err
}

// seqRead reads big/big.bin in 1 MiB blocks.
func seqRead(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "big", "big.bin"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, onlyReader{f}, make([]byte, 1<<20))
	return fmt.Sprintf("%d bytes", n), err
}

// onlyReader hides WriterTo/ReaderFrom so the copy really reads in blocks.
type onlyReader struct{ io.Reader }

// seqWrite writes size bytes of zeros to a new file out.bin in 1 MiB blocks.
func seqWrite(dir string, size int64) (string, error) {
	f, err := os.Create(filepath.Join(dir, "out.bin"))
	if err != nil {
		return "", err
	}
	buf := make([]byte, 1<<20)
	var n int64
	for n < size {
		m, err := f.Write(buf[:min(int64(len(buf)), size-n)])
		n += int64(m)
		if err != nil {
			f.Close()
			return "", err
		}
	}
	return fmt.Sprintf("%d bytes", n), f.Close()
}

// copyUp appends one byte to big/mid.bin (opens a lower file for writing).
func copyUp(dir string) (string, error) {
	p := filepath.Join(dir, "big", "mid.bin")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", err
	}
	if _, err := f.Write([]byte{'x'}); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("size %d", fi.Size()), nil
}

// untar extracts the tar file archive into a new dir x/ (tar xf).
func untar(dir, archive string) (string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	root := filepath.Join(dir, "x")
	if err := os.Mkdir(root, 0o755); err != nil {
		return "", err
	}
	tr := tar.NewReader(f)
	n := 0
	buf := make([]byte, 128<<10)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		if strings.Contains(hdr.Name, "..") {
			return "", fmt.Errorf("untar: unexpected name %q", hdr.Name)
		}
		p := filepath.Join(root, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.Mkdir(p, fs.FileMode(hdr.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(root, hdr.Linkname), p)
		case tar.TypeReg:
			var out *os.File
			out, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(hdr.Mode).Perm())
			if err == nil {
				_, err = io.CopyBuffer(out, tr, buf)
				if cerr := out.Close(); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			return "", err
		}
		n++
	}
	return fmt.Sprintf("%d entries", n), nil
}

// makeArchive writes a tar of dir/tree to archive, for untar.
func makeArchive(dir, archive string) error {
	f, err := os.Create(archive)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	root := filepath.Join(dir, "tree")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name, _ = filepath.Rel(root, p)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeTree removes tree/ (rm -rf of a lower tree) and says whether it is gone.
func removeTree(dir string) (string, error) {
	if err := os.RemoveAll(filepath.Join(dir, "tree")); err != nil {
		return "", err
	}
	_, err := os.Lstat(filepath.Join(dir, "tree"))
	return fmt.Sprintf("gone: %v", errors.Is(err, fs.ErrNotExist)), nil
}
