package mountcmd

// Working containers.
//
// A working container is one writable view of an image: <root>/work/<name>/ holds
//
//	state.json    the image it was made from (config and manifest digests, the ref the
//	              user typed), the lower layer dirs last mounted, the upper dir's name,
//	              the mountpoint while mounted, the server's pid, options, creation time
//	upper/        the copy-on-write upper dir (OCI whiteouts); kept after umount
//	work/         scratch dir for atomic copy-up, emptied before every mount
//	server.lock   flock held by the live mount server for its whole life
//	control.sock  the live server's control socket (0600)
//	server.log    the detached server's stdout and stderr
//
// Concurrency: every writer of a container's state holds its flock
// (<root>/locks/work-<name>.lock, see lockContainer); state.json is replaced
// atomically (temp file, fsync, rename), so readers need no lock. Whether a server
// is alive is decided by server.lock, never by the pid (pids are reused): the
// server holds it exclusively until it exits, however it exits.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"
)

// Errors about working containers, checked with errors.Is. The container verbs
// print errNoSuchContainer in docker's words (userError).
var (
	errNoSuchContainer = errors.New("no such container")
	errInvalidName     = errors.New("invalid container name")
	errAmbiguousID     = errors.New("multiple IDs found with provided prefix") // docker's words
)

// userError is how the container verbs print err: a missing container in
// docker's words, "No such container: NAME".
func userError(err error) string {
	msg := err.Error()
	if errors.Is(err, errNoSuchContainer) {
		if rest, ok := strings.CutPrefix(msg, errNoSuchContainer.Error()); ok {
			return "No such container" + rest
		}
	}
	return msg
}

// errSkipped tells forEachName that fn had nothing to do for a name (rm -f of a
// missing container): nothing is printed.
var errSkipped = errors.New("skipped")

// forEachName runs fn for each name as docker's multi-container verbs do (rm, stop,
// umount): every name on its own; an error printed as "Error: ..." on stderr and
// exit status 1 once all are done; with echo, the name printed on success.
func forEachName(cmd *cobra.Command, names []string, echo bool, fn func(name string) error) error {
	failed := false
	for _, name := range names {
		err := fn(name)
		switch {
		case errors.Is(err, errSkipped):
		case err != nil:
			fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", userError(err))
			failed = true
		case echo:
			fmt.Fprintln(cmd.OutOrStdout(), name)
		}
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// Status values shown by ps.
const (
	statusMounted   = "mounted"   // a live server serves the mount
	statusPaused    = "paused"    // mounted, writers held at the commit barrier
	statusDead      = "dead"      // the server died and left its mount behind: umount clears it
	statusUnmounted = "unmounted" // not mounted; the upper dir is kept until rm
	statusBroken    = "broken"    // state.json cannot be read: rm -f removes it
)

// validName is docker's container name rule.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// workState is state.json: what a working container is made of.
type workState struct {
	Name           string        `json:"name"`
	ID             string        `json:"id,omitempty"`          // 64 hex digits, set at create (containerID)
	ImageID        digest.Digest `json:"imageID"`               // config digest
	ManifestDigest digest.Digest `json:"manifestDigest"`        // the manifest that gc keeps
	ImageRef       string        `json:"imageRef,omitempty"`    // familiar ref the user named, "" for an ID
	Lowers         []string      `json:"lowers,omitempty"`      // layer dirs, top first, as last mounted
	Upper          string        `json:"upper"`                 // upper dir name inside the container dir
	Mountpoint     string        `json:"mountpoint,omitempty"`  // set while mounted (or dead), cleared by umount
	PID            int           `json:"pid,omitempty"`         // server pid while mounted (informational)
	ReadOnly       bool          `json:"readOnly,omitempty"`    // the current or last mount was read-only
	Passthrough    bool          `json:"passthrough,omitempty"` // ... used per-open FUSE passthrough
	// InodeMaps: for lowers made by commit --rebase, the file (in the container
	// dir) that keeps the inode numbers their files had (fs.KeepInodes).
	InodeMaps map[string]string `json:"inodeMaps,omitempty"`
	Created   time.Time         `json:"created"`
	// Incomplete marks a container a mount or run created and has not yet brought
	// up to its first mount (it unpacks layers meanwhile). One left so by a killed
	// command is taken over by the next create of its name, and removed by gc
	// (abandoned).
	Incomplete bool `json:"incomplete,omitempty"`
	// Run marks a container run made: its run config is written once it is
	// mounted, so wait meanwhile waits for it rather than refuse it.
	Run bool `json:"run,omitempty"`
}

// workContainer names one working container's directory.
type workContainer struct {
	root string // the store root (--root)
	name string
}

func newWorkContainer(root, name string) (*workContainer, error) {
	if !validName.MatchString(name) || len(name) > 253 {
		return nil, fmt.Errorf("%w %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", errInvalidName, name)
	}
	return &workContainer{root: root, name: name}, nil
}

func workDir(root string) string { return filepath.Join(root, "work") }

func (w *workContainer) Dir() string        { return filepath.Join(workDir(w.root), w.name) }
func (w *workContainer) statePath() string  { return filepath.Join(w.Dir(), "state.json") }
func (w *workContainer) ScratchDir() string { return filepath.Join(w.Dir(), "work") }
func (w *workContainer) socketPath() string { return filepath.Join(w.Dir(), "control.sock") }
func (w *workContainer) serverLock() string { return filepath.Join(w.Dir(), "server.lock") }
func (w *workContainer) logPath() string    { return filepath.Join(w.Dir(), "server.log") }
func (w *workContainer) lockPath() string {
	return filepath.Join(w.root, "locks", "work-"+w.name+".lock")
}
func (w *workContainer) fsName() string { return "layerfs:" + w.name }
func (w *workContainer) upperPath(s *workState) string {
	u := s.Upper
	if u == "" {
		u = "upper"
	}
	if filepath.IsAbs(u) {
		return u
	}
	return filepath.Join(w.Dir(), u)
}

// inodeMaps returns the inode maps of the state's lowers, with absolute paths.
func (w *workContainer) inodeMaps(s *workState) fs.InodeMaps {
	var maps fs.InodeMaps
	for _, l := range s.Lowers {
		f, ok := s.InodeMaps[l]
		if !ok {
			continue
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(w.Dir(), f)
		}
		if maps == nil {
			maps = fs.InodeMaps{}
		}
		maps[l] = f
	}
	return maps
}

// withInodeMap returns the state's inode maps for the new lowers, plus file for
// the lower committed when file is set.
func withInodeMap(s *workState, lowers []string, committed, file string) map[string]string {
	var maps map[string]string
	for _, l := range lowers {
		f, ok := s.InodeMaps[l]
		if l == committed && file != "" {
			f, ok = file, true
		}
		if !ok {
			continue
		}
		if maps == nil {
			maps = map[string]string{}
		}
		maps[l] = f
	}
	return maps
}

// exists reports whether the container has a state.json (a dir without one is the
// leftover of a create that died half way, and is recreated).
func (w *workContainer) exists() bool {
	_, err := os.Stat(w.statePath())
	return err == nil
}

// load reads state.json; errNoSuchContainer if there is none.
func (w *workContainer) load() (*workState, error) {
	b, err := os.ReadFile(w.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", errNoSuchContainer, w.name)
	}
	if err != nil {
		return nil, fmt.Errorf("read container %s: %w", w.name, err)
	}
	var s workState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read container %s: state.json: %w", w.name, err)
	}
	s.Name = w.name
	return &s, nil
}

// save replaces state.json atomically. The caller holds the container lock.
func (w *workContainer) save(s *workState) error {
	if s.ID == "" { // a container of before IDs: its derived one, kept from now on
		s.Name = w.name
		s.ID = containerID(s)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save container %s: %w", w.name, err)
	}
	if err := writeFileAtomic(w.statePath(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save container %s: %w", w.name, err)
	}
	return nil
}

// create makes the container's directories and its first state.json. The caller
// holds the container lock and has checked that it does not exist, or that it is
// abandoned.
func (w *workContainer) create(s *workState) error {
	// A dir without state.json is a create that died half way: start over.
	if err := cow.RemoveAll(w.Dir()); err != nil {
		return fmt.Errorf("create container %s: %w", w.name, err)
	}
	if s.Upper == "" {
		s.Upper = "upper"
	}
	for _, d := range []string{w.Dir(), w.upperPath(s), w.ScratchDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create container %s: %w", w.name, err)
		}
	}
	// The upper dir is the root of the merged tree: give it the usual mode.
	if err := os.Chmod(w.upperPath(s), 0o755); err != nil {
		return fmt.Errorf("create container %s: %w", w.name, err)
	}
	s.Name = w.name
	if s.ID == "" {
		s.ID = randomID()
	}
	if s.Created.IsZero() {
		s.Created = time.Now().UTC()
	}
	return w.save(s)
}

// resetScratch empties the work dir before a mount: what a dead server left there
// (half-done copy-ups) is garbage by construction.
func (w *workContainer) resetScratch() error {
	if err := cow.RemoveAll(w.ScratchDir()); err != nil {
		return fmt.Errorf("reset work dir of %s: %w", w.name, err)
	}
	if err := os.MkdirAll(w.ScratchDir(), 0o700); err != nil {
		return fmt.Errorf("reset work dir of %s: %w", w.name, err)
	}
	return nil
}

// remove deletes the container and everything in it. The caller holds the lock
// and has made sure nothing is mounted.
func (w *workContainer) remove() error {
	// Remove state.json first: a crash half way leaves a dir that is no container.
	if err := os.Remove(w.statePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove container %s: %w", w.name, err)
	}
	if err := cow.RemoveAll(w.Dir()); err != nil {
		return fmt.Errorf("remove container %s: %w", w.name, err)
	}
	os.Remove(w.lockPath()) // best effort; a racing locker recreates it harmlessly
	return nil
}

// abandoned reports whether st is what a create killed before its first mount
// left: marked incomplete, no server, no mount, and nothing in the upper dir. The
// caller holds the container lock, which the creating command holds throughout.
func (w *workContainer) abandoned(st *workState) bool {
	if !st.Incomplete || w.serverAlive() || w.status(st) == statusDead {
		return false
	}
	d, err := os.Open(w.upperPath(st))
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	return len(names) == 0 && errors.Is(err, io.EOF)
}

// removeIfAbandoned removes the container if it is abandoned (see abandoned) and
// nobody holds its lock; it reports whether it did.
func (w *workContainer) removeIfAbandoned() bool {
	if !w.mayBeAbandoned() {
		return false
	}
	unlock, ok, err := tryLockContainer(w)
	if err != nil || !ok {
		return false
	}
	defer unlock()
	st, err := w.load()
	return err == nil && w.abandoned(st) && w.remove() == nil
}

// mayBeAbandoned is abandoned's cheap test, without the lock: whether state.json
// says incomplete.
func (w *workContainer) mayBeAbandoned() bool {
	st, err := w.load()
	return err == nil && st.Incomplete
}

// serverAlive reports whether a server holds server.lock.
func (w *workContainer) serverAlive() bool {
	f, err := os.OpenFile(w.serverLock(), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false
	}
	return errors.Is(err, unix.EWOULDBLOCK)
}

// status derives the container's status from the server lock and the mount table;
// state.json alone cannot tell (a server may have died since it was written).
func (w *workContainer) status(s *workState) string {
	if w.serverAlive() {
		return statusMounted
	}
	if s.Mountpoint != "" && isOurMount(s.Mountpoint, w.fsName()) {
		return statusDead
	}
	return statusUnmounted
}

// listContainers returns every working container under root, sorted by name.
// Containers being created (no state.json yet) are skipped.
func listContainers(root string) ([]*workContainer, error) {
	ents, err := os.ReadDir(workDir(root))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list working containers: %w", err)
	}
	var out []*workContainer
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		w, err := newWorkContainer(root, e.Name())
		if err != nil || !w.exists() {
			continue
		}
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// writeFileAtomic writes data to a temp file beside path, fsyncs, and renames it
// over path, so a reader sees the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
