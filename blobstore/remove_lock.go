package blobstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// removeLockName orders Remove against whoever adds a reference to an image:
// a tag, a manifest recorded with tags, a working container made from it.
// Remove holds it exclusively from its first look at an image's references and
// users to its last change; the others hold it shared while they check that the
// image is there and record the reference. Each so sees the other whole, as
// docker's daemon serialises rmi against tag and create: a reference added
// first makes Remove untag only or refuse, one added after finds the image gone
// (ErrNotFound). Both sides hold it for an index.json update or two, never
// across a download or a mount.
const removeLockName = "remove.lock"

// addingRef takes removeLockName shared; the func releases it. Shared holders
// may nest (AddManifestRef): Linux grants a shared flock beside held shared ones
// even while an exclusive one waits. A store on a read-only filesystem has no
// lock file to take and needs none: no Remove can change it either.
func (s *Store) addingRef(ctx context.Context) (func(), error) {
	release, err := s.lockCtx(ctx, removeLockName, unix.LOCK_SH, nil)
	if errors.Is(err, unix.EROFS) {
		return func() {}, nil
	}
	return release, err
}

// listed reports whether index.json lists an image of manifest md (as an entry,
// or through an image index an entry names).
func (s *Store) listed(md digest.Digest) (bool, error) {
	imgs, _, err := s.scanImages()
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(imgs, func(img *Image) bool { return img.ManifestDigest == md }), nil
}

// addManifestRefHook, when set (tests), runs between AddManifestRef's records.
var addManifestRefHook func()

// AddManifestRef is AddManifest followed by AddRepoDigest(desc.Digest,
// repoDigest), with no Remove in between: a pull by digest records its image
// untagged, and an image prune in that gap took it for dangling.
func (s *Store) AddManifestRef(ctx context.Context, desc ocispec.Descriptor, repoDigest string, tags ...string) (*Image, error) {
	release, err := s.addingRef(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	img, err := s.AddManifest(ctx, desc, tags...)
	if err != nil {
		return nil, err
	}
	if addManifestRefHook != nil {
		addManifestRefHook()
	}
	if err := s.AddRepoDigest(ctx, desc.Digest, repoDigest); err != nil {
		return img, err
	}
	return img, nil
}

// HoldImage runs fn, which records a new user of the image id (a working
// container's state naming it), with no Remove deciding about that image
// meanwhile. If index.json no longer lists the image, fn is not run and the
// error wraps ErrNotFound; otherwise a Remove that comes after sees the user fn
// recorded (RemoveOptions.InUse).
func (s *Store) HoldImage(ctx context.Context, id digest.Digest, fn func() error) error {
	release, err := s.addingRef(ctx)
	if err != nil {
		return err
	}
	defer release()
	imgs, _, err := s.scanImages()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(imgs, func(img *Image) bool { return img.ID == id }) {
		return fmt.Errorf("image %s: %w", ShortID(id), ErrNotFound)
	}
	return fn()
}
