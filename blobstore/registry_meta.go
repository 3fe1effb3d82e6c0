package blobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Registry metadata lives beside index.json in one small JSON file, replaced
// atomically under its own flock (it is independent of index.json's lock):
//
//   - repo digests: for a manifest in the store, the "registry/repository@digest"
//     references it was pulled by or pushed as (docker inspect's RepoDigests; the digest
//     is the registry's, which for a multi-platform pull is the index's);
//   - blob sources: for a blob, the repositories known to hold it, so a push to
//     another repository of the same registry mounts it instead of uploading;
//   - gzip twins: for an uncompressed layer (its digest is its diffID), the
//     gzip blob a push made of it, so the next push sends that blob again
//     without compressing the layer again (docker keeps the same, diffID to
//     blobsum, in its v2 metadata).
//
// Entries for manifests or blobs that gc later removes are harmless and never shown.
const (
	registryMetaFile = "registry.json" // in the store's private dir
	registryMetaLock = "registry.lock"
)

type registryMeta struct {
	RepoDigests map[digest.Digest][]string `json:"repoDigests,omitempty"`
	BlobSources map[digest.Digest][]string `json:"blobSources,omitempty"`
	GzipTwins   map[digest.Digest]GzipTwin `json:"gzipTwins,omitempty"`
}

// GzipTwin is the gzip blob made of an uncompressed layer.
type GzipTwin struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// RepoDigests returns the repo digests recorded for the image whose manifest is
// manifest, fully normalised ("docker.io/library/busybox@sha256:..."), sorted.
func (s *Store) RepoDigests(manifest digest.Digest) ([]string, error) {
	m, err := s.readRegistryMeta()
	if err != nil {
		return nil, err
	}
	return slices.Clone(m.RepoDigests[manifest]), nil
}

// AddRepoDigest records repoDigest ("name@sha256:...") for the image whose manifest
// is manifest, and takes it from any other image that had it: a repo digest names
// one image. Two platforms pulled from one index share the index's digest, and
// the last one pulled gets it, as docker's reference store moves a digest
// reference after a pull by digest (AddDigest with force). Idempotent; safe
// against concurrent writers in other processes. A repo digest is a reference
// (see Remove): recorded under removeLockName, and only for a manifest
// index.json still lists, else the error wraps ErrNotFound (an rmi took the
// image meanwhile).
func (s *Store) AddRepoDigest(ctx context.Context, manifest digest.Digest, repoDigest string) error {
	release, err := s.addingRef(ctx)
	if err != nil {
		return err
	}
	defer release()
	if ok, err := s.listed(manifest); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("image manifest %s: %w", manifest, ErrNotFound)
	}
	return s.updateRegistryMeta(ctx, func(m *registryMeta) {
		for other, rds := range m.RepoDigests {
			if other == manifest {
				continue
			}
			if i := slices.Index(rds, repoDigest); i >= 0 {
				if rds = slices.Delete(rds, i, i+1); len(rds) == 0 {
					delete(m.RepoDigests, other)
				} else {
					m.RepoDigests[other] = rds
				}
			}
		}
		m.RepoDigests = addSorted(m.RepoDigests, manifest, repoDigest)
	})
}

// dropAllRepoDigests forgets the repo digests of manifest (rmi deleted its image).
func (s *Store) dropAllRepoDigests(ctx context.Context, manifest digest.Digest) error {
	if rds, err := s.RepoDigests(manifest); err != nil || len(rds) == 0 {
		return err
	}
	return s.updateRegistryMeta(ctx, func(m *registryMeta) { delete(m.RepoDigests, manifest) })
}

// dropRepoDigest forgets one repo digest of manifest (rmi of repo@digest, or of
// the repository's last tag); true if it was recorded. Safe against concurrent
// writers in other processes.
func (s *Store) dropRepoDigest(ctx context.Context, manifest digest.Digest, repoDigest string) (bool, error) {
	found := false
	err := s.updateRegistryMeta(ctx, func(m *registryMeta) {
		rds := m.RepoDigests[manifest]
		i := slices.Index(rds, repoDigest)
		if i < 0 {
			return
		}
		found = true
		if rds = slices.Delete(rds, i, i+1); len(rds) == 0 {
			delete(m.RepoDigests, manifest)
		} else {
			m.RepoDigests[manifest] = rds
		}
	})
	return found, err
}

// BlobSources returns the repositories ("registry/repository") known to hold blob d.
func (s *Store) BlobSources(d digest.Digest) ([]string, error) {
	m, err := s.readRegistryMeta()
	if err != nil {
		return nil, err
	}
	return slices.Clone(m.BlobSources[d]), nil
}

// AddBlobSources records that repository ("registry/repository") holds each of blobs.
// Idempotent; safe against concurrent writers in other processes.
func (s *Store) AddBlobSources(ctx context.Context, repository string, blobs ...digest.Digest) error {
	return s.updateRegistryMeta(ctx, func(m *registryMeta) {
		for _, d := range blobs {
			m.BlobSources = addSorted(m.BlobSources, d, repository)
		}
	})
}

// GzipTwinOf returns the gzip twin recorded for the uncompressed layer diffID,
// if the store still holds its blob, intact.
func (s *Store) GzipTwinOf(diffID digest.Digest) (GzipTwin, bool) {
	m, err := s.readRegistryMeta()
	if err != nil {
		return GzipTwin{}, false
	}
	tw, ok := m.GzipTwins[diffID]
	if !ok || checkDigest(tw.Digest) != nil || tw.Digest == diffID {
		return GzipTwin{}, false
	}
	if size, err := s.Size(tw.Digest); err != nil || size != tw.Size {
		return GzipTwin{}, false
	}
	// Its bytes are read once more (hashing costs a fraction of compressing):
	// a twin damaged in place would make every push of the image fail. A
	// damaged one goes, so that the push's new gzip of the layer takes its
	// place (a blob write never replaces a blob that is there).
	if ok, err := s.blobIntact(tw.Digest); err != nil || !ok {
		if err == nil {
			os.Remove(s.BlobPath(tw.Digest))
		}
		return GzipTwin{}, false
	}
	return tw, true
}

// blobIntact reports whether blob d's bytes hash to d.
func (s *Store) blobIntact(d digest.Digest) (bool, error) {
	f, err := os.Open(s.BlobPath(d))
	if err != nil {
		return false, err
	}
	defer f.Close()
	v := d.Verifier()
	if _, err := io.Copy(v, f); err != nil {
		return false, err
	}
	return v.Verified(), nil
}

// AddGzipTwin records tw as the gzip blob made of the uncompressed layer diffID
// (AppendLayer checked that it decompresses to diffID). Safe against concurrent
// writers in other processes.
func (s *Store) AddGzipTwin(ctx context.Context, diffID digest.Digest, tw GzipTwin) error {
	return s.updateRegistryMeta(ctx, func(m *registryMeta) {
		if m.GzipTwins == nil {
			m.GzipTwins = map[digest.Digest]GzipTwin{}
		}
		m.GzipTwins[diffID] = tw
	})
}

func addSorted(m map[digest.Digest][]string, k digest.Digest, v string) map[digest.Digest][]string {
	if m == nil {
		m = map[digest.Digest][]string{}
	}
	if !slices.Contains(m[k], v) {
		m[k] = append(m[k], v)
		slices.Sort(m[k])
	}
	return m
}

func (s *Store) readRegistryMeta() (*registryMeta, error) {
	m := &registryMeta{}
	return m, s.readMeta(registryMetaFile, m)
}

// updateRegistryMeta applies fn under the metadata lock and replaces the file
// atomically.
func (s *Store) updateRegistryMeta(ctx context.Context, fn func(*registryMeta)) error {
	m := &registryMeta{}
	return s.updateMeta(ctx, registryMetaLock, registryMetaFile, m, func() { fn(m) })
}

// readMeta decodes the JSON file name in the store's private dir into v; a file
// that does not exist leaves v as it is.
func (s *Store) readMeta(name string, v any) error {
	b, err := os.ReadFile(filepath.Join(s.dir, privDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return nil
}

// updateMeta reads the JSON file name into v under the flock lockName, runs fn
// (which changes v) and replaces the file atomically.
func (s *Store) updateMeta(ctx context.Context, lockName, name string, v any, fn func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := s.lock(lockName, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.readMeta(name, v); err != nil {
		return err
	}
	fn()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := s.writeFileAtomic(filepath.Join(s.dir, privDir, name), append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// ImageRepoDigests are the digests recorded by pulls and pushes (see AddRepoDigest)
// together with img.RepoDigests() (one per tagged repository), full normalised
// references, sorted, without duplicates: what docker's containerd image store
// would show. inspect shows only the recorded ones (Image.PulledDigests), as the
// classic store and `images --digests` do.
func (s *Store) ImageRepoDigests(img *Image) ([]string, error) {
	recorded, err := s.RepoDigests(img.ManifestDigest)
	if err != nil {
		return nil, err
	}
	out := append(recorded, img.RepoDigests()...)
	slices.Sort(out)
	return slices.Compact(out), nil
}
