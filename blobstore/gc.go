package blobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// GCResult says what GC removed (or, with dryRun, would remove).
type GCResult struct {
	Removed   []digest.Digest // unreachable blobs, sorted
	Freed     int64           // bytes of Removed plus temp files
	TempFiles int             // leftover temp files (killed writers)
	Kept      int             // reachable blobs
}

// GC removes every blob that nothing reachable references: reachable are the
// manifests in index.json and extraRoots (manifest or index digests that working
// containers use), and what they name (config, layers, nested manifests). First
// it drops from index.json the entries of an image ID that Images hides for good
// (no tag, no repo digest, no working container, another entry of the ID stays:
// see sameIDLeftovers), so that their blobs go too. It also
// removes leftover temp files of killed writers. GC waits for every Lease (and so
// every load, Put and WriteImage in progress) to end, or ctx (it then fails
// having collected nothing), and blocks new ones while it runs; metadata writers (index.json and the like) hold no Lease, so their temp
// files are left alone until they are metaTempGrace old. Blobs a reachable manifest names but that are missing are ignored.
func (s *Store) GC(ctx context.Context, dryRun bool, extraRoots []digest.Digest) (GCResult, error) {
	return s.GCWith(ctx, dryRun, func() ([]digest.Digest, error) { return extraRoots, nil }, nil)
}

// GCWith is GC for extra roots kept outside the store (working containers'
// state.json, written under a Lease): roots is called once the GC lock is held,
// when no Lease is, so it sees every root recorded by then and none can be added
// until GC returns. Roots read before the lock could miss a writer that recorded
// its root while GC waited, and GC would then collect what that root names. after,
// if not nil, runs under the lock too, once the blobs are collected, with the
// diffIDs those roots and index.json keep (see DiffIDs): the caller's own pruning
// of what is derived from layers (unpacked layer dirs) belongs there, for the same
// reason; with dryRun it is called too and must only measure.
func (s *Store) GCWith(ctx context.Context, dryRun bool, roots func() ([]digest.Digest, error), after func(keepDiffIDs map[digest.Digest]bool) error) (GCResult, error) {
	var res GCResult
	if err := ctx.Err(); err != nil {
		return res, err
	}
	unlock, err := s.lockCtx(ctx, gcLockName, unix.LOCK_EX, s.OnGCWait)
	if err != nil {
		return res, err
	}
	defer unlock()
	extraRoots, err := roots()
	if err != nil {
		return res, err
	}
	res, err = s.gc(ctx, dryRun, extraRoots)
	if err != nil || after == nil {
		return res, err
	}
	keepIDs, err := s.DiffIDs(extraRoots)
	if err != nil {
		return res, err
	}
	return res, after(keepIDs)
}

// gc is GC's work; the caller holds the GC lock exclusively.
func (s *Store) gc(ctx context.Context, dryRun bool, extraRoots []digest.Digest) (GCResult, error) {
	var res GCResult
	idx, err := s.readIndex()
	if err != nil {
		return res, err
	}
	if _, err := s.dropSameIDLeftovers(ctx, dryRun, idx, extraRoots); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if !dryRun {
		if idx, err = s.readIndex(); err != nil {
			return res, err
		}
	}
	keep, err := s.reachableIn(idx, extraRoots)
	if err != nil {
		return res, err
	}
	dir := filepath.Join(s.dir, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil || e.IsDir() {
			continue // not ours to judge
		}
		if keep[d] {
			res.Kept++
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		res.Removed = append(res.Removed, d)
		res.Freed += fi.Size()
		if !dryRun {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return res, fmt.Errorf("gc: remove blob %s: %w", d, err)
			}
		}
	}
	tmps, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	for _, e := range tmps {
		p := filepath.Join(s.tmpDir(), e.Name())
		if inFlightMeta(e) {
			continue
		}
		res.TempFiles++
		res.Freed += du(p)
		if !dryRun {
			if err := os.RemoveAll(p); err != nil {
				return res, fmt.Errorf("gc: remove %s: %w", p, err)
			}
		}
	}
	if !dryRun && (len(res.Removed) > 0 || res.TempFiles > 0) {
		if err := syncDir(dir); err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
	}
	if !dryRun && len(res.Removed) > 0 {
		if err := s.pruneLayerSizes(ctx, extraRoots); err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
	}
	sort.Slice(res.Removed, func(i, j int) bool { return res.Removed[i] < res.Removed[j] })
	return res, nil
}

// metaTempGrace is how old a metadata temp file (writeFileAtomic's) must be before
// GC takes it for a killed writer's: its writers (index.json, layersizes.json,
// registry.json) hold no Lease, only their own lock, for the milliseconds from
// create to rename.
const metaTempGrace = 10 * time.Minute

// inFlightMeta reports a metadata temp file young enough to be in use.
func inFlightMeta(e os.DirEntry) bool {
	if !strings.HasPrefix(e.Name(), metaTempPrefix) {
		return false
	}
	fi, err := e.Info()
	if err != nil {
		return true // gone already (renamed into place) or unreadable: not ours now
	}
	return time.Since(fi.ModTime()) < metaTempGrace
}

func du(p string) int64 {
	var n int64
	filepath.Walk(p, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// Reachable is the set of blobs reachable from index.json and roots.
func (s *Store) Reachable(roots []digest.Digest) (map[digest.Digest]bool, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	return s.reachableIn(idx, roots)
}

// reachableIn is Reachable from the entries of idx and roots.
func (s *Store) reachableIn(idx *ocispec.Index, roots []digest.Digest) (map[digest.Digest]bool, error) {
	keep := map[digest.Digest]bool{}
	var walk func(d digest.Digest, depth int) error
	walk = func(d digest.Digest, depth int) error {
		if keep[d] || checkDigest(d) != nil {
			return nil
		}
		keep[d] = true
		if depth > 8 || !s.Has(d) {
			return nil
		}
		b, err := s.readBlob(d, maxMetaSize)
		if err != nil {
			return nil // a blob that is not metadata (or is damaged) names nothing
		}
		var node struct {
			MediaType string               `json:"mediaType"`
			Config    *ocispec.Descriptor  `json:"config"`
			Layers    []ocispec.Descriptor `json:"layers"`
			Manifests []ocispec.Descriptor `json:"manifests"`
			Subject   *ocispec.Descriptor  `json:"subject"`
		}
		if json.Unmarshal(b, &node) != nil {
			return nil
		}
		if node.Config != nil {
			keep[node.Config.Digest] = true
		}
		for _, l := range node.Layers {
			keep[l.Digest] = true
		}
		for _, m := range node.Manifests {
			if err := walk(m.Digest, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for _, m := range idx.Manifests {
		if err := walk(m.Digest, 0); err != nil {
			return nil, err
		}
	}
	for _, r := range roots {
		if err := walk(r, 0); err != nil {
			return nil, err
		}
	}
	return keep, nil
}

// DiffIDs are the diffIDs of every image in index.json and of the manifests in
// roots: the unpacked layer directories to keep when pruning.
func (s *Store) DiffIDs(roots []digest.Digest) (map[digest.Digest]bool, error) {
	keep, err := s.Reachable(roots)
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest]bool{}
	for d := range keep {
		if n, err := s.Size(d); err != nil || n > 1<<20 {
			continue // not a config
		}
		b, err := s.readBlob(d, maxMetaSize)
		if err != nil {
			continue
		}
		var c struct {
			RootFS *ocispec.RootFS `json:"rootfs"`
		}
		if json.Unmarshal(b, &c) != nil || c.RootFS == nil {
			continue
		}
		for _, id := range c.RootFS.DiffIDs {
			out[id] = true
		}
	}
	return out, nil
}
