package blobstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// RemoveOptions are rmi's knobs.
type RemoveOptions struct {
	Force   bool // -f: untag every tag, ignore soft conflicts (references, containers)
	NoPrune bool // --no-prune: keep untagged parents
	// InUse names the working containers that use img (nil: none do). An image in use
	// is a soft conflict, as a stopped container is in docker.
	InUse func(img *Image) ([]string, error)
	// Running names the working containers that use img and are mounted now: a hard
	// conflict, as a running container is in docker ("cannot be forced").
	Running func(img *Image) ([]string, error)
}

// RemoveLine is one line of rmi's output: exactly one field is set.
type RemoveLine struct {
	Untagged string        // familiar reference, "busybox:latest"
	Deleted  digest.Digest // image ID
}

func (l RemoveLine) String() string {
	if l.Untagged != "" {
		return "Untagged: " + l.Untagged
	}
	return "Deleted: " + l.Deleted.String()
}

// ConflictError is docker's "conflict: unable to ..." refusal.
type ConflictError struct {
	Msg  string
	Hard bool // cannot be forced
}

func (e *ConflictError) Error() string { return e.Msg }

// ShortID is the first 12 hex digits of an ID, as docker prints it.
func ShortID(d digest.Digest) string {
	h := d.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// Remove is docker's image removal for one argument of rmi: untag a named
// reference, delete an image given by ID, delete an image whose last reference
// goes, then prune its untagged parents (unless NoPrune). An image's references
// are its tags and the repo digests pulls and pushes recorded (AddRepoDigest):
// name@digest removes that repo digest only (ErrNotFound if none is recorded),
// and a repository's last tag takes the repository's repo digests along. Children make a hard conflict, more
// than one tag (by ID, without Force) and working containers a soft one. Returns the
// lines to print, also those done before an error. Blobs stay until GC. The image
// is every index.json entry of its ID (see One image per ID in image_id.go): the
// tags and repo digests of all count, and deleting it removes them all. An entry
// that cannot be read (see ImagesAndBroken) is removed by its tag or digest without
// the conflict rules.
//
// Remove holds removeLockName throughout, so a tag, a recorded manifest or a
// working container (HoldImage) made meanwhile comes wholly before or wholly
// after it. A tag only a writer that takes no such lock makes (an older
// layerfs) can still come while Remove runs. Removed by a reference, the image
// is then kept, as if the tag had come first: Remove only untags. Removed by
// ID, it is deleted all the same: with Force every tag it has when the index
// lock is taken goes (and is listed); without, Remove starts over against the
// new tags (docker's rules then untag a single tag, or refuse several), up to
// removeTries times, then fails. Remove never succeeds without having removed
// something.
func (s *Store) Remove(ctx context.Context, ref string, opts RemoveOptions) ([]RemoveLine, error) {
	release, err := s.lockCtx(ctx, removeLockName, unix.LOCK_EX, s.OnRemoveWait)
	if err != nil {
		return nil, err
	}
	defer release()
	var lines []RemoveLine
	for try := 1; ; try++ {
		more, err := s.remove(ctx, ref, opts)
		lines = append(lines, more...)
		if !errors.Is(err, errRetagged) || try == removeTries {
			return lines, err
		}
	}
}

// removeTries bounds Remove's restarts after a concurrent tag.
const removeTries = 3

// remove is one try of Remove; errRetagged when an image given by ID got a tag it
// did not see before it could delete it (and Force is not set).
func (s *Store) remove(ctx context.Context, ref string, opts RemoveOptions) ([]RemoveLine, error) {
	imgs, _, err := s.scanImages()
	if err != nil {
		return nil, err
	}
	img, err := resolveIn(imgs, ref)
	if err == nil {
		img, err = s.fill(img)
	}
	if err != nil {
		// Not found, ambiguous, or blobs that no longer read: the skeletons may
		// list an image Images would not (see skeleton), so decide again from
		// whole images, as Images lists them.
		var broken []BrokenImage
		if imgs, broken, err = s.ImagesAndBroken(); err != nil {
			return nil, err
		}
		if img, err = resolveIn(imgs, ref); err != nil {
			if m := matchBroken(broken, ref); len(m) > 0 && errors.Is(err, ErrNotFound) {
				return s.removeBroken(ctx, m)
			}
			return nil, err
		}
	}
	// the image is every entry of its ID (see One image per ID in image_id.go)
	img = withSameID(imgs, img)
	var lines []RemoveLine
	named, tagRef := s.namedRef(imgs, img, ref)
	removedRepoRef := false
	if named != nil {
		if !opts.Force && isSingleReference(img) {
			users, err := s.inUse(img, opts)
			if err != nil {
				return nil, err
			}
			if len(users) > 0 {
				return nil, &ConflictError{Msg: fmt.Sprintf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, users[0], ShortID(img.ID))}
			}
		}
		dropped := false // repo digests went
		if tagRef != "" {
			if err := s.Untag(ctx, tagRef); err != nil {
				return lines, err
			}
			lines = append(lines, RemoveLine{Untagged: reference.FamiliarString(named)})
			if img, err = s.reloadSameID(img); err != nil {
				return lines, err
			}
			// docker: the repository's last tag takes its repo digests along
			if !hasRepo(img.Tags, named.Name()) {
				more, err := s.dropRepoDigests(ctx, img, named.Name())
				if lines = append(lines, more...); err != nil {
					return lines, err
				}
				dropped = len(more) > 0
			}
		} else { // name@digest: that repo digest only, as docker
			found, err := s.dropRepoDigestOf(ctx, img, named.String())
			if err != nil {
				return lines, err
			}
			if !found { // resolved through a tag's repository: nothing records it
				return lines, fmt.Errorf("image %s: %w", reference.FamiliarString(named), ErrNotFound)
			}
			lines = append(lines, RemoveLine{Untagged: reference.FamiliarString(named)})
			dropped = true
		}
		// what is left: the look after the untag tells, unless repo digests went since
		if dropped {
			if img, err = s.reloadSameID(img); err != nil {
				return lines, err
			}
		}
		if len(img.Tags) > 0 || len(img.PulledDigests) > 0 {
			return lines, nil
		}
		removedRepoRef = true
	} else if isSingleReference(img) {
		// docker: an ID whose references are all in one repository (one tag at
		// most) drops them first, then deletes the image
		if c, err := s.conflict(img, opts, !opts.Force, false); err != nil || c != nil {
			if err != nil {
				return nil, err
			}
			return nil, c
		}
		for _, t := range img.Tags {
			if err := s.Untag(ctx, t); err != nil {
				return lines, err
			}
			lines = append(lines, RemoveLine{Untagged: FamiliarString(t)})
		}
		more, err := s.dropRepoDigests(ctx, img, "")
		if lines = append(lines, more...); err != nil {
			return lines, err
		}
		if img, err = s.reloadSameID(img); err != nil {
			return lines, err
		}
	}
	return s.deleteHelper(ctx, img, opts, opts.Force, !opts.NoPrune, removedRepoRef, lines)
}

// isSingleReference is docker's: img has references (tags and repo digests), all
// of one repository, and one tag at most.
func isSingleReference(img *Image) bool {
	if len(img.Tags) > 1 {
		return false
	}
	refs := append(slices.Clone(img.Tags), img.PulledDigests...)
	if len(refs) == 0 {
		return false
	}
	repo := ""
	for _, r := range refs {
		n, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			return false
		}
		if repo != "" && n.Name() != repo {
			return false
		}
		repo = n.Name()
	}
	return true
}

// hasRepo reports whether one of refs (normalised tags) is in repository repo.
func hasRepo(refs []string, repo string) bool {
	return slices.ContainsFunc(refs, func(r string) bool {
		n, err := reference.ParseNormalizedNamed(r)
		return err == nil && n.Name() == repo
	})
}

// dropRepoDigests forgets img's recorded repo digests of repository repo (all of
// them for ""), returning an Untagged line for each.
func (s *Store) dropRepoDigests(ctx context.Context, img *Image, repo string) ([]RemoveLine, error) {
	var lines []RemoveLine
	for _, rd := range img.PulledDigests {
		if repo != "" && !hasRepo([]string{rd}, repo) {
			continue
		}
		found, err := s.dropRepoDigestOf(ctx, img, rd)
		if err != nil {
			return lines, err
		}
		if found {
			lines = append(lines, RemoveLine{Untagged: FamiliarString(rd)})
		}
	}
	return lines, nil
}

// dropRepoDigestOf is dropRepoDigest for whichever manifests of img's ID record
// repoDigest.
func (s *Store) dropRepoDigestOf(ctx context.Context, img *Image, repoDigest string) (bool, error) {
	found := false
	for _, md := range img.sameIDManifests() {
		ok, err := s.dropRepoDigest(ctx, md, repoDigest)
		if err != nil {
			return found, err
		}
		found = found || ok
	}
	return found, nil
}

// namedRef tells whether ref named img by a reference (not by ID): the parsed name
// and, for a tag, the normalised tag.
func (s *Store) namedRef(imgs []*Image, img *Image, ref string) (reference.Named, string) {
	if strings.HasPrefix(ref, "sha256:") || (len(ref) == 64 && hexPrefix.MatchString(ref)) {
		return nil, ""
	}
	n, err := ParseReference(ref)
	if err != nil {
		return nil, ""
	}
	if _, ok := n.(reference.Digested); ok {
		return n, ""
	}
	if contains(img.Tags, n.String()) {
		return n, n.String()
	}
	return nil, "" // an ID prefix
}

func (s *Store) inUse(img *Image, opts RemoveOptions) ([]string, error) {
	users, err := usersOf(img, opts.InUse)
	if err != nil {
		return nil, fmt.Errorf("image %s: working containers: %w", ShortID(img.ID), err)
	}
	return users, nil
}

// usersOf asks fn (nil: none) for the containers of img as each entry of its ID
// lists it (sameIDViews).
func usersOf(img *Image, fn func(*Image) ([]string, error)) ([]string, error) {
	if fn == nil {
		return nil, nil
	}
	var out []string
	for _, v := range img.sameIDViews() {
		users, err := fn(v)
		if err != nil {
			return nil, err
		}
		out = appendNew(out, users...)
	}
	return out, nil
}

// conflict is docker's checkImageDeleteConflict: children (hard), then with soft
// set: tags left ("referenced in multiple repositories", unless skipRefs), then
// working containers. used reports a container conflict.
func (s *Store) conflict(img *Image, opts RemoveOptions, soft, checkRefs bool) (*ConflictError, error) {
	imgs, _, err := s.scanImages()
	if err != nil {
		return nil, err
	}
	mk := func(hard bool, msg string) *ConflictError {
		force := "must be forced"
		if hard {
			force = "cannot be forced"
		}
		return &ConflictError{Hard: hard, Msg: fmt.Sprintf("conflict: unable to delete %s (%s) - %s", ShortID(img.ID), force, msg)}
	}
	if s.hasChildren(imgs, img) {
		return mk(true, "image has dependent child images"), nil
	}
	running, err := usersOf(img, opts.Running)
	if err != nil {
		return nil, fmt.Errorf("image %s: mounted containers: %w", ShortID(img.ID), err)
	}
	if len(running) > 0 {
		return mk(true, "image is being used by running container "+running[0]), nil
	}
	if !soft {
		return nil, nil
	}
	if checkRefs && (len(img.Tags) > 0 || len(img.PulledDigests) > 0) {
		return mk(false, "image is referenced in multiple repositories"), nil
	}
	users, err := s.inUse(img, opts)
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		return mk(false, "image is being used by stopped container "+users[0]), nil
	}
	return nil, nil
}

// deleteHelper is docker's imageDeleteHelper: delete img (untagging what is left
// when forced), then its untagged parent chain when prune is set, quietly.
//
// A tag added since img was read: quiet (after an untag, or for a parent) keeps
// the image and returns the lines so far; otherwise img was given by ID, and a
// forced delete takes the new tags too, an unforced one fails with errRetagged.
func (s *Store) deleteHelper(ctx context.Context, img *Image, opts RemoveOptions, force, prune, quiet bool, lines []RemoveLine) ([]RemoveLine, error) {
	c, err := s.conflict(img, opts, !force, true)
	if err != nil {
		return lines, err
	}
	if c != nil {
		if quiet {
			imgs, _, err := s.scanImages()
			if err != nil {
				return lines, err
			}
			dangling := len(img.Tags) == 0 && len(img.PulledDigests) == 0 && !s.hasChildren(imgs, img)
			if !dangling || strings.Contains(c.Msg, "container") {
				return lines, nil
			}
		}
		return lines, c
	}
	tags, err := s.deleteImageEntries(ctx, img, force && !quiet)
	if errors.Is(err, errRetagged) && quiet {
		// a concurrent tag keeps the image: as if it had come first, rmi only
		// untags (lines so far)
		return lines, nil
	}
	if err != nil {
		return lines, err
	}
	for _, t := range tags {
		lines = append(lines, RemoveLine{Untagged: FamiliarString(t)})
	}
	// docker untags the repo digests a pull or push gave the image too
	for _, rd := range img.PulledDigests {
		if l := (RemoveLine{Untagged: FamiliarString(rd)}); !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	for _, md := range img.sameIDManifests() {
		if err := s.dropAllRepoDigests(ctx, md); err != nil {
			return lines, err
		}
	}
	lines = append(lines, RemoveLine{Deleted: img.ID})
	if !prune || img.Parent == "" {
		return lines, nil
	}
	imgs, broken, err := s.imagesAndBroken(func(d digest.Digest) bool { return d == img.Parent }, s.loadImage)
	if err != nil {
		return lines, err
	}
	p, err := pick(imgs, broken, img.Parent)
	if err != nil { // not listed, or cannot be read
		return lines, nil
	}
	skeletons, _, err := s.scanImages()
	if err != nil {
		return lines, err
	}
	if p = withSameID(skeletons, p); len(p.Tags) > 0 || len(p.PulledDigests) > 0 {
		return lines, nil
	}
	return s.deleteHelper(ctx, p, RemoveOptions{InUse: opts.InUse}, false, true, true, lines)
}
