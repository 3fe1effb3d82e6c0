package fs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The oracle side of a directory rename that overlayfs refuses with EXDEV (it moves
// no lower dirs without redirect_dir; layerfs does): the move mv(1) would make.

// moveAsMv does what mv(1) does when rename fails with EXDEV: a copy and a delete,
// with rename(2)'s checks that come after overlayfs's EXDEV (a non-empty dir at
// the target). An exchange goes through a temporary name. Unlike cp -a, it keeps
// the moved files' hard links to names outside the moved tree, as a rename does.
// It returns the outcome as applyOp does.
func moveAsMv(root, a, b string, flags uint) string {
	if flags&unix.RENAME_EXCHANGE != 0 {
		tmp := filepath.Join(filepath.Dir(a), ".xchg-tmp")
		for _, m := range [][2]string{{a, tmp}, {b, a}, {tmp, b}} {
			if res := moveOne(root, m[0], m[1]); res != "ok" {
				return "exchange fallback: " + res
			}
		}
		return "ok"
	}
	return moveOne(root, a, b)
}

func moveOne(root, a, b string) string {
	err := unix.Rename(a, b)
	if !errors.Is(err, unix.EXDEV) {
		return errStr(err)
	}
	if err := unix.Rmdir(b); err != nil && !errors.Is(err, unix.ENOENT) {
		return errStr(err) // ENOTEMPTY, as rename(2)
	}
	if out, err := exec.Command("cp", "-a", a, b).CombinedOutput(); err != nil {
		return fmt.Sprintf("fallback cp -a: %v: %s", err, out)
	}
	// cp keeps a set-group-ID bit that a new dir inherited; rename keeps the mode
	err = filepath.Walk(a, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		return unix.Chmod(filepath.Join(b, rel), uint32(fi.Sys().(*syscall.Stat_t).Mode&0o7777))
	})
	if err != nil {
		return "fallback chmod: " + err.Error()
	}
	if err := relinkOutside(root, a, b); err != nil {
		return "fallback relink: " + err.Error()
	}
	if err := os.RemoveAll(a); err != nil {
		return "fallback rm: " + err.Error()
	}
	return "ok"
}

// relinkOutside replaces each file in the copy b of tree a that is a hard link of a
// file outside a by a link to that file, keeping the times of its dir.
func relinkOutside(root, a, b string) error {
	outside := map[uint64]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == a || p == b {
			return filepath.SkipDir
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() && st.Nlink > 1 {
			outside[st.Ino] = p
		}
		return nil
	})
	if err != nil {
		return err
	}
	return filepath.Walk(a, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		o, ok := outside[st.Ino]
		if fi.IsDir() || !ok {
			return nil
		}
		rel, _ := filepath.Rel(a, p)
		dst := filepath.Join(b, rel)
		var dir unix.Stat_t
		if err := unix.Lstat(filepath.Dir(dst), &dir); err != nil {
			return err
		}
		if err := errors.Join(os.Remove(dst), os.Link(o, dst)); err != nil {
			return err
		}
		return unix.UtimesNano(filepath.Dir(dst), []unix.Timespec{dir.Atim, dir.Mtim})
	})
}
