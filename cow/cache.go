package cow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// LayerCache is the directory of unpacked lower layers, one dir per diffID:
// Dir/<diffID hex>/, created once and never changed after. Temp dirs (".tmp-*") and
// lock files (".locks/") live beside them.
//
// Concurrency: Ensure and EnsureAll are safe from any number of goroutines and
// processes at once; a per-layer flock makes sure one of them unpacks while the
// others wait and then use the result. Prune takes the same locks and skips a layer
// being filled.
type LayerCache struct {
	Dir string
	// Pinned, if set, names layers whose dir must stay as it is although an
	// older format unpacked it (see UnpackFormat): a working container's upper
	// records inode numbers of the dir's files (copy-up origins, inode maps), and
	// a new unpack would give those numbers to other files, so that two names in
	// the container would read one file's data. Asked only for such a dir.
	Pinned func(diffID digest.Digest) bool
}

// LayerSource names one layer and how to read its uncompressed tar stream.
type LayerSource struct {
	DiffID digest.Digest
	// Open returns the uncompressed layer tar; Ensure closes it.
	Open func() (io.ReadCloser, error)
}

const (
	tmpPrefix   = ".tmp-"
	stalePrefix = ".stale-"
	locksDir    = ".locks"
	formatsDir  = ".formats"
)

// UnpackFormat is the version of what Apply makes of a layer tar on disk. Bump it
// whenever a fix changes that for some tar (a time, a marker, an xattr): layer
// dirs are reused for ever, so without it a store keeps serving, exporting and
// committing what an older, wrong unpack made of the same blob (an upgrade
// review: mtimes after 2262 read back as 1901 on a store an older version had
// unpacked). Each filled layer records its format in .formats/<hex>; a layer dir
// without a record, or with an older one, is unpacked again (see Ensure).
const UnpackFormat = 2

// Path returns where the layer diffID is (or will be) unpacked. It does not check
// that it is there.
func (c *LayerCache) Path(diffID digest.Digest) string {
	return filepath.Join(c.Dir, diffID.Encoded())
}

// Ensure makes sure the layer diffID is unpacked and returns its dir. When it is
// missing, Ensure calls open, unpacks the stream into a temp dir inside c.Dir with
// Apply, checks that the stream's sha256 is diffID, and renames the dir into place;
// on a mismatch (ErrDigestMismatch) or any other error nothing is left behind.
// Idempotent; concurrent calls for the same layer, in this or other processes, all
// succeed and only one of them unpacks. A dir an older format unpacked is
// unpacked again, unless Pinned, and swapped in at the same path
// (RENAME_EXCHANGE); the old one is kept as .stale-<hex>-N for any mount that
// holds it open, until Prune finds no process using it.
func (c *LayerCache) Ensure(ctx context.Context, diffID digest.Digest, open func() (io.ReadCloser, error)) (string, error) {
	if err := diffID.Validate(); err != nil {
		return "", fmt.Errorf("ensure layer %s: %w", diffID, err)
	}
	final := c.Path(diffID)
	if isDir(final) && c.usable(diffID) {
		return final, nil
	}
	unlock, err := c.lock(ctx, diffID.Encoded())
	if err != nil {
		return "", fmt.Errorf("ensure layer %s: %w", diffID, err)
	}
	defer unlock()
	if isDir(final) && c.usable(diffID) { // another process filled it while we waited
		return final, nil
	}
	if err := c.fill(ctx, diffID, open); err != nil {
		return "", fmt.Errorf("ensure layer %s: %w", diffID, err)
	}
	return final, nil
}

// usable reports whether the existing dir of diffID may be used as it is.
func (c *LayerCache) usable(diffID digest.Digest) bool {
	return c.current(diffID.Encoded()) || c.Pinned != nil && c.Pinned(diffID)
}

// current reports whether the layer dir hex was unpacked in UnpackFormat (or a
// later one, by a newer binary): its record names that format and this very dir.
//
// The record names the dir (inode and change time) because a binary older than
// the records does not know them: its gc removed a layer dir and left the
// record, its next mount unpacked the layer again the old, wrong way, and after
// an upgrade back the record vouched for that dir (review rev23-upg: mtimes
// after 2262 read as 1901 again). A record without the dir's identity, as the
// first ones were written, is taken for no record: the layer is unpacked once
// more.
func (c *LayerCache) current(hex string) bool {
	b, err := os.ReadFile(filepath.Join(c.Dir, formatsDir, hex))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return false
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < UnpackFormat {
		return false
	}
	id, err := dirIdentity(c.Path(digest.NewDigestFromEncoded(digest.SHA256, hex)))
	return err == nil && id == f[1]+" "+f[2]
}

// dirIdentity is what tells the dir at p from another made there later: its
// inode number and change time (set when it was renamed into place; nothing
// changes a layer dir's own metadata after that).
func dirIdentity(p string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %d.%09d", st.Ino, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// stamp records that the layer dir hex holds an UnpackFormat unpack; it is
// written after the dir is in place, so a crash between the two costs an unpack,
// never a stale dir taken for current.
func (c *LayerCache) stamp(hex string) error {
	id, err := dirIdentity(c.Path(digest.NewDigestFromEncoded(digest.SHA256, hex)))
	if err != nil {
		return err
	}
	dir := filepath.Join(c.Dir, formatsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, tmpPrefix)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(tmp, "%d %s\n", UnpackFormat, id)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, hex))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return syncDir(dir, false)
}

func (c *LayerCache) fill(ctx context.Context, diffID digest.Digest, open func() (io.ReadCloser, error)) (err error) {
	// We hold the layer's lock: any temp dir of it is left from a crashed fill.
	stale, _ := filepath.Glob(filepath.Join(c.Dir, tmpPrefix+diffID.Encoded()+"-*"))
	for _, s := range stale {
		if err := RemoveAll(s); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp(c.Dir, tmpPrefix+diffID.Encoded()+"-")
	if err != nil {
		return err
	}
	swapped := false // tmp holds the old dir, which a mount may serve
	defer func() {
		if err != nil && !swapped {
			RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	got, err := Apply(ctx, tmp, rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close layer stream: %w", cerr)
	}
	if err != nil {
		return err
	}
	if got != diffID {
		return fmt.Errorf("%w: unpacked %s", ErrDigestMismatch, got)
	}
	if err := syncDir(tmp, true); err != nil {
		return err
	}
	final := c.Path(diffID)
	if isDir(final) {
		// An older format's unpack: swap the new one in at once (a mount made
		// from now on finds it whole), and move the old one out of the way.
		if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE); err != nil {
			return fmt.Errorf("replace the unpack of an older version: %w", err)
		}
		swapped = true
		stale := filepath.Join(c.Dir, fmt.Sprintf("%s%s-%d", stalePrefix, diffID.Encoded(), time.Now().UnixNano()))
		if err := os.Rename(tmp, stale); err != nil {
			return fmt.Errorf("move the unpack of an older version aside: %w", err)
		}
	} else if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := syncDir(c.Dir, false); err != nil {
		return err
	}
	return c.stamp(diffID.Encoded())
}

// EnsureAll runs Ensure for every layer, a few at a time, and returns their dirs in
// the order given. The first error cancels the rest and is returned.
func (c *LayerCache) EnsureAll(ctx context.Context, layers []LayerSource) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	paths := make([]string, len(layers))
	errs := make([]error, len(layers))
	sem := make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	var wg sync.WaitGroup
	for i, l := range layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			paths[i], errs[i] = c.Ensure(ctx, l.DiffID, l.Open)
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// Prefer a real error over the cancellations it caused.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// Prune removes every unpacked layer not in keep (keyed by diffID), and temp dirs
// left by interrupted unpacks. A layer another process is filling right now is
// skipped. Safe to run concurrently with Ensure.
func (c *LayerCache) Prune(keep map[digest.Digest]bool) error {
	ents, err := os.ReadDir(c.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prune layers: %w", err)
	}
	keepHex := map[string]bool{}
	for d := range keep {
		keepHex[d.Encoded()] = true
	}
	var inUse map[string]bool // entries of c.Dir that processes use, read once
	for _, e := range ents {
		name := e.Name()
		hex := name
		if rest, ok := strings.CutPrefix(name, tmpPrefix); ok {
			hex, _, _ = strings.Cut(rest, "-")
		} else if rest, ok := strings.CutPrefix(name, stalePrefix); ok {
			// An older format's unpack, swapped out by Ensure: a mount made
			// before holds it open (by fd) until it ends.
			hex, _, _ = strings.Cut(rest, "-")
			if inUse == nil {
				inUse = entriesInUse(c.Dir)
			}
			if inUse[name] {
				continue
			}
		} else if strings.HasPrefix(name, ".") || keepHex[name] {
			continue
		}
		if !isHex(hex) {
			continue
		}
		unlock, ok, err := c.tryLock(hex)
		if err != nil {
			return fmt.Errorf("prune layer %s: %w", name, err)
		}
		if !ok {
			continue // being filled
		}
		victim := filepath.Join(c.Dir, name)
		if hex == name {
			// Out of sight first, so nobody finds a half-removed layer at its path.
			gone := filepath.Join(c.Dir, tmpPrefix+hex+"-pruned")
			if err = os.Rename(victim, gone); err == nil {
				victim = gone
			}
		}
		err = RemoveAll(victim)
		if err == nil && hex == name {
			os.Remove(filepath.Join(c.Dir, formatsDir, hex))
		}
		unlock()
		if err != nil {
			return fmt.Errorf("prune layer %s: %w", name, err)
		}
	}
	// Records of dirs that are gone (an older binary's gc removed the dir and
	// not the record it knew nothing of). A record is written after its dir
	// is in place, so one without its dir is no fill under way.
	recs, _ := os.ReadDir(filepath.Join(c.Dir, formatsDir))
	for _, r := range recs {
		if isHex(r.Name()) && !isDir(filepath.Join(c.Dir, r.Name())) {
			os.Remove(filepath.Join(c.Dir, formatsDir, r.Name()))
		}
	}
	return nil
}

// IsStaleLayerDir reports whether name, an entry of a LayerCache's Dir, is an
// older format's unpack that Ensure replaced (Prune removes it once unused).
func IsStaleLayerDir(name string) bool { return strings.HasPrefix(name, stalePrefix) }

// LayerDirsInUse returns the entries of the LayerCache dir dir that some process
// holds (see entriesInUse).
func LayerDirsInUse(dir string) map[string]bool { return entriesInUse(dir) }

// entriesInUse returns the entries of dir that some process has a file, working
// dir or root in (from /proc/*/fd, cwd and root: a mount's server holds its layer
// dirs as O_PATH fds). Processes it cannot read are taken to use nothing, so an
// unprivileged gc may remove a stale dir a root-owned process holds: it cannot
// be the user's store's mount.
func entriesInUse(dir string) map[string]bool {
	out := map[string]bool{}
	// /proc's links name resolved paths: so must the prefix (a store reached
	// through a symlink found no holder, and gc removed a dir a mount served).
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	prefix := filepath.Clean(dir) + "/"
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if !isDigits(p.Name()) {
			continue
		}
		links := []string{filepath.Join("/proc", p.Name(), "cwd"), filepath.Join("/proc", p.Name(), "root")}
		if fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd")); err == nil {
			for _, fd := range fds {
				links = append(links, filepath.Join("/proc", p.Name(), "fd", fd.Name()))
			}
		}
		for _, l := range links {
			t, err := os.Readlink(l)
			if rest, ok := strings.CutPrefix(t, prefix); err == nil && ok {
				name, _, _ := strings.Cut(rest, "/")
				out[name] = true
			}
		}
	}
	return out
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func isHex(s string) bool {
	if len(s) == 0 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

func (c *LayerCache) lockFile(hex string) (*os.File, error) {
	// The unpacked layers hold the images' device nodes and set-id files as
	// they are: no other user may reach them (mounts serve them to others
	// with the server's checks).
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(c.Dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		os.Chmod(c.Dir, 0o700) // made wider by a version before
	}
	dir := filepath.Join(c.Dir, locksDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, hex+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
}

// lock takes the layer's flock, waiting for it while ctx allows.
func (c *LayerCache) lock(ctx context.Context, hex string) (func(), error) {
	f, err := c.lockFile(hex)
	if err != nil {
		return nil, err
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

func (c *LayerCache) tryLock(hex string) (func(), bool, error) {
	f, err := c.lockFile(hex)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return func() { f.Close() }, true, nil
}

// syncDir flushes a dir to disk: the whole filesystem it is on (one syncfs instead of
// an fsync per unpacked file) when all is set, else just the dir's own entries.
func syncDir(dir string, all bool) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if all {
		err = unix.Syncfs(fd)
	} else {
		err = unix.Fsync(fd)
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
