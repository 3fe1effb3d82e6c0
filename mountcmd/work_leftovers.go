package mountcmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/layerfs/layerfs/cow"
)

// leftovers counts what removeContainerLeftovers removed (with dryRun, would
// remove).
type leftovers struct {
	files     int // container dirs without state.json, stray uppers, temp files
	abandoned int // whole containers that a killed mount or run left
}

// removeContainerLeftovers removes what killed commands left in the working
// containers' dirs, and returns how many things it removed (with dryRun, would
// remove):
//
//   - a container dir without state.json: an rm killed after it removed state.json,
//     or a create killed before it wrote it (listContainers already skips it, and
//     nothing else would ever remove it);
//   - an upper dir state.json does not name: the old one of a commit --rebase
//     killed after the swap, or the new one of a rebase killed before it;
//   - state.json's temp files (writeFileAtomic killed before its rename);
//   - a container a mount or run created and was killed before mounting, holding
//     no change (workContainer.abandoned).
//
// Each container is judged under its lock, skipped if busy: every writer of a
// container's dir holds it (create, rm, commit --rebase), so what is found there
// unnamed then is nobody's.
func removeContainerLeftovers(root string, dryRun bool) (leftovers, error) {
	var n leftovers
	ents, err := os.ReadDir(workDir(root))
	if errors.Is(err, os.ErrNotExist) {
		return n, nil
	}
	if err != nil {
		return n, fmt.Errorf("working containers: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		w, err := newWorkContainer(root, e.Name())
		if err != nil {
			continue
		}
		unlock, ok, err := tryLockContainer(w)
		if err != nil {
			return n, err
		}
		if !ok {
			continue
		}
		k, err := w.removeLeftovers(dryRun)
		unlock()
		n.files += k.files
		n.abandoned += k.abandoned
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// removeLeftovers is removeContainerLeftovers for one container; the caller holds
// its lock.
func (w *workContainer) removeLeftovers(dryRun bool) (leftovers, error) {
	// A live server writes here without the lock: its Rebase switches to a new
	// upper and then saves state.json, for a commit that holds the lock but may
	// have died meanwhile. Nothing of a container with a live server is judged
	// (a server cannot start without the lock, so this holds while we hold it).
	if w.serverAlive() {
		return leftovers{}, nil
	}
	st, err := w.load()
	if errors.Is(err, errNoSuchContainer) {
		if w.exists() { // made meanwhile (cannot be: we hold the lock)
			return leftovers{}, nil
		}
		if !dryRun {
			if err := cow.RemoveAll(w.Dir()); err != nil {
				return leftovers{}, fmt.Errorf("remove leftover container dir %s: %w", w.Dir(), err)
			}
			os.Remove(w.lockPath())
		}
		return leftovers{files: 1}, nil
	}
	if err != nil {
		return leftovers{}, nil // unreadable state: not ours to judge
	}
	if w.abandoned(st) {
		if !dryRun {
			if err := w.remove(); err != nil {
				return leftovers{}, err
			}
		}
		return leftovers{abandoned: 1}, nil
	}
	ents, err := os.ReadDir(w.Dir())
	if err != nil {
		return leftovers{}, fmt.Errorf("container %s: %w", w.name, err)
	}
	current := filepath.Base(w.upperPath(st))
	// An upper elsewhere, or one state.json names but that is gone: leave the
	// dir's uppers alone.
	_, cerr := os.Stat(w.upperPath(st))
	judgeUppers := !filepath.IsAbs(st.Upper) && cerr == nil
	n := 0
	for _, e := range ents {
		name := e.Name()
		stale := strings.HasPrefix(name, ".state.json.tmp") ||
			judgeUppers && e.IsDir() && (name == "upper" || strings.HasPrefix(name, "upper-")) && name != current
		if !stale {
			continue
		}
		if !dryRun {
			if err := cow.RemoveAll(filepath.Join(w.Dir(), name)); err != nil {
				return leftovers{files: n}, fmt.Errorf("container %s: remove leftover %s: %w", w.name, name, err)
			}
		}
		n++
	}
	return leftovers{files: n}, nil
}
