package blobstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
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

// addingRef takes removeLockName shared; the func releases it.
func (s *Store) addingRef(ctx context.Context) (func(), error) {
	return s.lockCtx(ctx, removeLockName, unix.LOCK_SH, nil)
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
