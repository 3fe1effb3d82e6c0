package blobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

const (
	privDir       = ".layerfs"
	indexLockName = "index.lock"
	gcLockName    = "gc.lock"
	tmpName       = "tmp"
	// metaTempPrefix names writeFileAtomic's temp files in tmp/; GC spares young ones.
	metaTempPrefix = "file-"
)

// Store is one OCI image layout on disk. Its methods are safe for concurrent use by
// goroutines and by other processes opening the same directory.
type Store struct {
	dir string
	// OnGCWait, if set, is called once when GC has to wait for the leases other
	// processes hold, with their PIDs (as far as /proc/locks tells).
	OnGCWait func(pids []int)
	// OnRemoveWait, if set, is called once when Remove has to wait for commands
	// adding references to images (removeLockName), with their PIDs.
	OnRemoveWait func(pids []int)

	summaries sync.Map // manifest digest -> imageSummary, for skeleton
}

// Open opens the OCI image layout at dir (<root>/store), creating an empty one
// (oci-layout, index.json, blobs/sha256/) and the store's private dir if absent.
// Opening an existing layout written by another tool (skopeo, umoci) works.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{dir: abs}
	for _, d := range []string{filepath.Join(abs, "blobs", "sha256"), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	for _, l := range []string{indexLockName, gcLockName} {
		f, err := os.OpenFile(filepath.Join(abs, privDir, l), os.O_CREATE|os.O_RDONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
		f.Close()
	}
	layout := filepath.Join(abs, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layout); errors.Is(err, os.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := s.writeFileAtomic(layout, b); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if _, err := os.Stat(s.indexPath()); errors.Is(err, os.ErrNotExist) {
		unlock, err := s.lock(indexLockName, unix.LOCK_EX)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if _, err := os.Stat(s.indexPath()); errors.Is(err, os.ErrNotExist) {
			if err := s.writeIndex(&ocispec.Index{}); err != nil {
				return nil, fmt.Errorf("open store %s: %w", dir, err)
			}
		}
	}
	return s, nil
}

// Dir is the layout's directory (absolute).
func (s *Store) Dir() string { return s.dir }

func (s *Store) indexPath() string { return filepath.Join(s.dir, ocispec.ImageIndexFile) }
func (s *Store) tmpDir() string    { return filepath.Join(s.dir, privDir, tmpName) }

// lock takes an flock (how = LOCK_EX or LOCK_SH) on one of the store's lock files,
// blocking until it is granted. The returned func releases it.
func (s *Store) lock(name string, how int) (func(), error) {
	return s.lockCtx(context.Background(), name, how, nil)
}

// ErrLockWaitEnded is a wait for a lock that its context ended: nothing was
// done under the lock.
var ErrLockWaitEnded = errors.New("stopped waiting for")

// lockCtx is lock for a wait that may be long (gc.lock): it gives up when ctx
// ends (a blocked flock(2) is restarted after a signal, so ^C could not stop
// it), and calls waiting, if not nil, once before it waits.
func (s *Store) lockCtx(ctx context.Context, name string, how int, waiting func(holders []int)) (func(), error) {
	p := filepath.Join(s.dir, privDir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	err = flock(f, how|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		if waiting != nil {
			waiting(lockHolders(f))
		}
		done := make(chan error, 1)
		go func() { done <- flock(f, how) }()
		select {
		case err = <-done:
		case <-ctx.Done():
			go func() { <-done; f.Close() }() // a lock taken after all goes with it
			return nil, fmt.Errorf("%w %s: %w", ErrLockWaitEnded, p, ctx.Err())
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// lockHolders lists the processes that hold a flock on f's file (/proc/locks),
// for a message; nil where that cannot be read.
func lockHolders(f *os.File) []int {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return nil
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil
	}
	// "1: FLOCK  ADVISORY  READ 1234 00:2a:5678 0 EOF"; waiters have "->" after the id.
	suffix := ":" + strconv.FormatUint(st.Ino, 10)
	dev := fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev))
	var pids []int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[1] != "FLOCK" || f[5] != dev+suffix {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil && pid > 0 && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Lease keeps GC from running until release is called: blobs written under a lease
// survive until the caller records them in index.json (or a working container's
// state names them). Hold one across "put blobs, then tag". Leases are shared: any
// number may be held at once, in any process. Never call GC while holding one.
func (s *Store) Lease(ctx context.Context) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.lockCtx(ctx, gcLockName, unix.LOCK_SH, nil)
}

// readIndex reads index.json. Readers need no lock: it is only ever replaced whole.
func (s *Store) readIndex() (*ocispec.Index, error) {
	for try := 1; ; try++ {
		b, err := os.ReadFile(s.indexPath())
		if err != nil {
			return nil, fmt.Errorf("read index.json: %w", err)
		}
		var idx ocispec.Index
		err = json.Unmarshal(b, &idx)
		if err == nil {
			return &idx, nil
		}
		// layerfs replaces index.json whole (writeFileAtomic), but skopeo
		// truncates and writes it in place: a read in between saw an empty
		// or half-written file, and the command failed ("unexpected end of
		// JSON input"). Read again a few times before calling it damaged.
		if try == indexReadTries {
			return nil, fmt.Errorf("read index.json: %w", err)
		}
		time.Sleep(indexReadWait)
	}
}

// How often, and how far apart, readIndex reads an index.json that does not
// parse before it gives up.
const (
	indexReadTries = 6
	indexReadWait  = 50 * time.Millisecond
)

func (s *Store) writeIndex(idx *ocispec.Index) error {
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("write index.json: %w", err)
	}
	if writeIndexFault != nil {
		if err := writeIndexFault(); err != nil {
			return fmt.Errorf("write index.json: %w", err)
		}
	}
	if err := s.writeFileAtomic(s.indexPath(), b); err != nil {
		return fmt.Errorf("write index.json: %w", err)
	}
	return nil
}

// updateIndex runs fn on index.json under the index lock and writes the result
// atomically if fn returns changed=true.
func (s *Store) updateIndex(ctx context.Context, fn func(idx *ocispec.Index) (changed bool, err error)) (err error) {
	defer func() { err = s.noSpace(err) }()
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := s.lock(indexLockName, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	changed, err := fn(idx)
	if err != nil || !changed {
		return err
	}
	return s.writeIndex(idx)
}

// writeFileAtomic replaces path with b: temp file in tmp/, fsync, rename, dir fsync.
// Its callers hold no Lease: GC leaves its temp files alone while they are young.
func (s *Store) writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(s.tmpDir(), metaTempPrefix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeIndexFault, when set (by tests), fails index.json writes with its error, as
// a full disk would.
var writeIndexFault func() error

// loadPlaceHook, when set (by tests), runs just before a load places blob d, after
// it saw that the store does not have d: another writer may place d there.
var loadPlaceHook func(d digest.Digest)

// sameIDCommitHook, when set (by tests), runs in load and WriteImage once the
// image's blobs are in the store, before index.json is updated: another writer may
// record the same image ID there.
var sameIDCommitHook func()

// tagHook, when set (by tests), runs in Tag before it takes its Lease: an rmi and
// a GC may run there, after the caller resolved the image.
var tagHook func()

// imagesHook, when set (by tests), runs in ImagesAndBroken between its read of
// index.json and its reads of the images' blobs.
var imagesHook func()

// now is the clock used for created times; tests may replace it.
var now = func() time.Time { return time.Now().UTC() }
