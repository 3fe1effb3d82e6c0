package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
	"github.com/opencontainers/go-digest"
)

type mountOptions struct {
	name        string
	readOnly    bool
	passthrough bool
	foreground  bool
	pull        string
	format      string // the listing's (no arguments): "" or json
	noTrunc     bool   // the listing's: whole IDs
}

func init() { addVerb(newMountCommand) }

func newMountCommand(g *globalOptions) *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount [--name NAME] [--read-only] [--passthrough] [-f] IMAGE DIR | --name NAME DIR | [--format json] [--no-trunc]",
		Short: "Mount an image at DIR with a copy-on-write upper dir",
		Long: `Mount IMAGE at DIR as a working container: reads come from the image's layers
(unpacked once into the store), every change lands in the container's upper dir.
DIR is created if missing and must not be a mount point already.

The container is NAME, created if it does not exist and reused if it does (its
changes come back: a remount after umount, or after its server died, shows every
change that reached the upper dir). Without --name a new container is named
<image>-working-container (then -1, -2, ...), as buildah does. With --name of an
existing container, IMAGE may be left out: the container's own image is used
(the one it was made from, or committed onto with commit --rebase).

mount returns once the mount is live, the server running detached (its log is
work/NAME/server.log under the root); -f serves in the foreground until
SIGINT/SIGTERM or umount. On success mount prints the container's name, so
scripts can do: name=$(layerfs mount busybox ./rootfs).

File data is served in one of two ways, chosen per mount. By default opens stay in
the kernel and file data goes through its page cache (fastest for many small
files: a warm tree is read without asking layerfs at all). With --passthrough
every open asks layerfs, and the kernel then reads and writes large files and
every file in the upper dir directly (disk speed for big files; needs root and
Linux 6.9 or later, else it falls back by itself). commit --pause then stops the
processes writing through such files until the commit is done, as docker pause
does.

With no arguments mount lists the mounted containers (by mount, or by run for
its command), as podman mount does: one line each, the container ID (12 hex
digits; all 64 with --no-trunc) and its mountpoint; --format json prints a JSON
array of {"id", "Names", "mountpoint"}. (ps shows docker's columns, which have
no mountpoint; ps --format '{{.Names}} {{.Mountpoint}}' shows it too.)`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && o.name != "" {
				return errors.New("mount --name NAME needs DIR")
			}
			if len(args) == 0 {
				return nil // the listing
			}
			if len(args) == 1 && o.name == "" {
				return errors.New("mount needs IMAGE and DIR (IMAGE may be left out only with --name of an existing container)")
			}
			return rangeArgs(1, 2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return listMounts(cmd.Context(), g, o, cmd.OutOrStdout())
			}
			ref, dir := "", args[0]
			if len(args) == 2 {
				ref, dir = args[0], args[1]
				// A missing image is pulled first, as buildah from does; not
				// for a --name container that exists (it names its image).
				if w, err := newWorkContainer(g.root, o.name); o.name == "" || err != nil || !w.exists() {
					if err := pullForRun(cmd, g, o.pull, ref); err != nil {
						return err
					}
				}
			}
			err := runMount(cmd.Context(), g, o, ref, dir, cmd.OutOrStdout())
			if errors.Is(err, errNoSuchContainer) {
				fmt.Fprintf(os.Stderr, "Error: %s\n", userError(err))
				return exitError{1}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "working container name (reused if it exists)")
	f.BoolVar(&o.readOnly, "read-only", false, "mount read-only (writes fail with EROFS)")
	f.BoolVar(&o.passthrough, "passthrough", false, "per-open FUSE passthrough: large files at disk speed, a round trip per open (see docs/NOTES.md)")
	f.BoolVarP(&o.foreground, "foreground", "f", false, "serve in the foreground")
	f.StringVar(&o.pull, "pull", "missing", `pull IMAGE first ("always", "missing", "never")`)
	f.StringVar(&o.format, "format", "", "with no arguments: print the mounted containers as json")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "with no arguments: don't truncate IDs")
	f.BoolVar(&o.noTrunc, "notruncate", false, "the same as --no-trunc (podman's older name)")
	f.MarkHidden("notruncate")
	return cmd
}

// listMounts is mount with no arguments: the mounted containers, as podman
// mount lists them ("ID  MOUNTPOINT" lines, or a JSON array with
// --format json), so that mountpoints, no column of docker's ps table, stay
// easy to find.
func listMounts(ctx context.Context, g *globalOptions, o *mountOptions, out io.Writer) error {
	if o.format != "" && o.format != "json" {
		return fmt.Errorf("unknown --format argument: %q (want json)", o.format)
	}
	rows, _, err := psRows(ctx, g, false)
	if err != nil {
		return err
	}
	return writeMounts(out, o, rows)
}

// writeMounts writes those of rows that are mounted (paused too), as
// podman mount.
func writeMounts(out io.Writer, o *mountOptions, rows []psRow) error {
	rows = slices.DeleteFunc(rows, func(r psRow) bool { return r.Mount != statusMounted && r.Mount != statusPaused })
	if o.format == "json" {
		type mountReport struct { // podman's
			ID         string   `json:"id"`
			Names      []string `json:"Names"`
			Mountpoint string   `json:"mountpoint"`
		}
		reports := []mountReport{}
		for _, r := range rows {
			reports = append(reports, mountReport{r.ID, []string{r.Name}, r.Mountpoint})
		}
		return writeJSON(out, reports, " ")
	}
	for _, r := range rows {
		id := r.ID
		if !o.noTrunc {
			id = shortID(id)
		}
		if _, err := fmt.Fprintf(out, "%s  %s\n", id, r.Mountpoint); err != nil {
			return err
		}
	}
	return nil
}

func runMount(ctx context.Context, g *globalOptions, o *mountOptions, ref, dir string, out io.Writer) (err error) {
	s, err := blobstore.Open(filepath.Join(g.root, "store"))
	if err != nil {
		return err
	}
	// The lease keeps gc away from the image's blobs until state.json names them.
	release, err := s.Lease(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if release != nil {
			release()
		}
	}()
	var img *blobstore.Image
	if ref == "" {
		img, err = containerImage(s, g, o.name)
		if err != nil {
			return err
		}
		ref = img.ID.String()
	} else {
		img, err = s.Resolve(ref)
	}
	if errors.Is(err, blobstore.ErrNotFound) && o.name != "" {
		// rmi -f may have dropped the image from the index while a container
		// still uses it (its blobs stay, gc keeps them): remount from those,
		// if ref names that image.
		if cimg, cerr := containerImage(s, g, o.name); cerr == nil && namesContainerImage(g, o.name, ref, cimg) {
			img, err = cimg, nil
		}
	}
	if err != nil {
		return err
	}
	w, st, created, unlock, err := claimContainer(ctx, g, s, o.name, "", img, ref)
	if err != nil {
		return err
	}
	var once sync.Once
	unlockOnce := func() { once.Do(unlock) }
	defer unlockOnce()
	// A container this mount created goes away again if the mount fails.
	defer func() {
		if err != nil && created && !w.serverAlive() {
			w.remove()
		}
	}()
	// After claimContainer, which cleared a dead mount this container left there.
	mp, err := prepareMountpoint(g.root, dir)
	if err != nil {
		return err
	}

	lowers, err := ensureLayers(ctx, g, s, img)
	if err != nil {
		return err
	}
	release()
	release = nil
	if err := w.resetScratch(); err != nil {
		return err
	}
	st.Mountpoint, st.PID, st.ReadOnly, st.Passthrough, st.Lowers = mp, 0, o.readOnly, o.passthrough, lowers
	st.Incomplete = false
	if err := w.save(st); err != nil {
		return err
	}
	// From here a failure must not leave the state saying "mounted".
	mounted := false
	defer func() {
		if !mounted && !w.serverAlive() {
			st.Mountpoint, st.PID = "", 0
			w.save(st)
		}
	}()

	if o.foreground {
		return serve(ctx, g, w, func(err error) {
			if err != nil {
				return
			}
			mounted = true
			st.PID = os.Getpid()
			if err := w.save(st); err != nil {
				fmt.Fprintf(os.Stderr, "Warning: %v\n", err)
			}
			unlockOnce()
			fmt.Fprintln(out, w.name)
		})
	}
	pid, err := startServer(ctx, g, w) // its errors are the server's, naming the mountpoint
	if err != nil {
		return err
	}
	mounted = true
	st.PID = pid
	if err := w.save(st); err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, w.name)
	return err
}

// prepareMountpoint returns DIR's absolute, symlink-free path, creating it if
// missing (mode 0755, parents too), and refusing a mount point, a non-directory,
// or a place in the store root's store/, layers/ or work/ (the union would
// contain itself).
func prepareMountpoint(root, dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if err := checkOutsideStore(root, dir, abs); err != nil { // before creating anything
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	mp, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if err := checkOutsideStore(root, dir, mp); err != nil {
		return "", err
	}
	if fi, err := os.Stat(mp); err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", dir, err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("mountpoint %s: not a directory", dir)
	}
	if isMountpoint(mp) {
		return "", fmt.Errorf("mountpoint %s: already a mount point (umount it first)", dir)
	}
	return mp, nil
}

// checkOutsideStore refuses the store root itself and its store/, layers/ and
// work/ dirs as a mountpoint (p, absolute, names dir).
func checkOutsideStore(root, dir, p string) error {
	roots := []string{filepath.Clean(root)}
	if r, err := filepath.EvalSymlinks(root); err == nil && r != roots[0] {
		roots = append(roots, r)
	}
	for _, r := range roots {
		if p == r {
			return fmt.Errorf("mountpoint %s: is the store root", dir)
		}
		for _, sub := range []string{"store", "layers", "work"} {
			if d := filepath.Join(r, sub); p == d || strings.HasPrefix(p, d+"/") {
				return fmt.Errorf("mountpoint %s: inside the store's %s", dir, d)
			}
		}
	}
	return nil
}

// claimContainer locks and returns the working container to mount: name's if
// given (created, or reused if it exists and is made from img), else a new one with
// a derived name. A container it creates gets id as its ID ("" for a new random
// one: run -d's parent picks it, to print it whatever becomes of the container).
// The container is not mounted: a dead mount a killed server left is cleared
// here. The caller holds the returned lock until the server is ready.
func claimContainer(ctx context.Context, g *globalOptions, s *blobstore.Store, name, id string, img *blobstore.Image, ref string) (w *workContainer, st *workState, created bool, unlock func(), err error) {
	fresh := &workState{ID: id, ImageID: img.ID, ManifestDigest: img.ManifestDigest, ImageRef: imageRefFor(img, ref), Incomplete: true}
	create := func(w *workContainer) error {
		// An rmi racing this either sees the new container, or removed the
		// image before: docker's daemon serialises them the same way.
		err := s.HoldImage(ctx, img.ID, func() error { return w.create(fresh) })
		return imageErr(ref, err)
	}
	if name == "" {
		w, unlock, err := createDerived(ctx, g, img, fresh, create)
		return w, fresh, err == nil, unlock, err
	}
	if w, err = newWorkContainer(g.root, name); err != nil {
		return nil, nil, false, nil, err
	}
	if unlock, err = lockContainer(ctx, w); err != nil {
		return nil, nil, false, nil, err
	}
	if !w.exists() {
		if err := create(w); err != nil {
			unlock()
			return nil, nil, false, nil, err
		}
		return w, fresh, true, unlock, nil
	}
	st, err = w.load()
	if err == nil && w.abandoned(st) {
		// Left by a create killed before its first mount: start it over.
		if err := create(w); err != nil {
			unlock()
			return nil, nil, false, nil, err
		}
		return w, fresh, true, unlock, nil
	}
	if err == nil {
		err = checkReusable(w, st, img, ref)
	}
	if err != nil {
		unlock()
		return nil, nil, false, nil, err
	}
	return w, st, false, unlock, nil
}

// checkReusable refuses to mount a container that is mounted, or that was made
// from another image; it clears the dead mount of a killed server.
func checkReusable(w *workContainer, st *workState, img *blobstore.Image, ref string) error {
	switch w.status(st) {
	case statusMounted:
		return fmt.Errorf("container %s is already mounted at %s", w.name, st.Mountpoint)
	case statusDead:
		if err := clearDeadMount(st.Mountpoint, w.fsName()); err != nil {
			return err
		}
	}
	if st.ImageID != img.ID {
		return fmt.Errorf("container %s was made from image %s, not %s (%s): choose another --name, or rm %s",
			w.name, shortID(st.ImageID.Encoded()), ref, shortID(img.ID.Encoded()), w.name)
	}
	return nil
}

// createDerived creates a container named <image>-working-container[-N] (the first
// free one) with create and returns it locked.
func createDerived(ctx context.Context, g *globalOptions, img *blobstore.Image, st *workState, create func(*workContainer) error) (*workContainer, func(), error) {
	base := derivedName(st.ImageRef, img)
	for i := 0; i < 10000; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		w, err := newWorkContainer(g.root, name)
		if err != nil {
			return nil, nil, err
		}
		var unlock func()
		if w.exists() {
			// Taken, unless a create killed before its first mount left it. One
			// whose lock is held is in use (maybe still being created): skip it.
			if !w.mayBeAbandoned() {
				continue
			}
			u, ok, err := tryLockContainer(w)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				continue
			}
			if cur, err := w.load(); err != nil || !w.abandoned(cur) {
				u()
				continue
			}
			unlock = u
		} else {
			if unlock, err = lockContainer(ctx, w); err != nil {
				return nil, nil, err
			}
			if w.exists() { // lost a race for this name
				unlock()
				continue
			}
		}
		if err := create(w); err != nil {
			unlock()
			return nil, nil, err
		}
		return w, unlock, nil
	}
	return nil, nil, errors.New("no free working container name")
}

// derivedName is buildah's: the image's repository base name + "-working-container".
func derivedName(ref string, img *blobstore.Image) string {
	if ref == "" && len(img.Tags) > 0 {
		ref = img.Tags[0]
	}
	base := "working-container"
	if ref != "" {
		r := ref
		if i := strings.IndexByte(r, '@'); i >= 0 {
			r = r[:i]
		}
		r = r[strings.LastIndexByte(r, '/')+1:]
		if i := strings.IndexByte(r, ':'); i >= 0 {
			r = r[:i]
		}
		if validName.MatchString(r) {
			base = r + "-working-container"
		}
	}
	return base
}

// imageRefFor is the familiar ref ps shows for a container made from ref: the
// ref itself when it names the image by tag or digest, else "" (an ID: ps shows the
// short ID).
func imageRefFor(img *blobstore.Image, ref string) string {
	r := strings.TrimPrefix(ref, "sha256:")
	if r != ref || isHexString(r) && strings.HasPrefix(img.ID.Encoded(), r) {
		return ""
	}
	return blobstore.DisplayRef(ref)
}

func isHexString(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return s != ""
}

// ensureLayers unpacks img's layers into <root>/layers as needed and returns their
// dirs top first, as the union wants them.
func ensureLayers(ctx context.Context, g *globalOptions, s *blobstore.Store, img *blobstore.Image) ([]string, error) {
	layers := img.Manifest.Layers
	diffIDs := img.Config.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff IDs", shortID(img.ID.Encoded()), len(layers), len(diffIDs))
	}
	if n, most := len(layers), fs.MaxLayers()-1; n > most {
		// Before unpacking them all for a mount that cannot be made; one is
		// kept for the container's own layer, which a read-only mount stacks.
		return nil, fmt.Errorf("image %s: %w", shortID(img.ID.Encoded()), fs.TooManyLayers(n, most))
	}
	srcs := make([]cow.LayerSource, len(layers))
	for i, desc := range layers {
		srcs[i] = cow.LayerSource{DiffID: diffIDs[i], Open: func() (io.ReadCloser, error) { return s.OpenLayer(desc) }}
	}
	paths, err := layerCache(g).EnsureAll(ctx, srcs)
	if err != nil {
		return nil, err
	}
	slices.Reverse(paths)
	return paths, nil
}

// layerCache is the store root's cache of unpacked layers.
func layerCache(g *globalOptions) *cow.LayerCache {
	return &cow.LayerCache{Dir: filepath.Join(g.root, "layers"), Pinned: pinnedLayers(g)}
}

// pinnedLayers reports the layers some working container was mounted on (its
// state.json's lowers): their dirs stay as they are even if an older format
// unpacked them, as the container's upper holds inode numbers of their files
// (cow.LayerCache.Pinned). Read once, and only when a cache asks. A container
// whose state cannot be read pins every layer.
func pinnedLayers(g *globalOptions) func(digest.Digest) bool {
	var once sync.Once
	var all bool
	pinned := map[string]bool{}
	return func(d digest.Digest) bool {
		once.Do(func() {
			ws, err := listContainers(g.root)
			if err != nil {
				all = true
				return
			}
			for _, w := range ws {
				st, err := w.load()
				if errors.Is(err, errNoSuchContainer) {
					continue
				}
				if err != nil {
					all = true
					return
				}
				for _, l := range st.Lowers {
					pinned[filepath.Base(l)] = true
				}
			}
		})
		return all || pinned[d.Encoded()]
	}
}

// containerImage reads the image container name was made from out of the store's
// blobs, whether or not index.json still lists it.
func containerImage(s *blobstore.Store, g *globalOptions, name string) (*blobstore.Image, error) {
	w, err := newWorkContainer(g.root, name)
	if err != nil {
		return nil, err
	}
	st, err := w.load()
	if err != nil {
		return nil, err
	}
	return imageOfContainer(s, w, st)
}

// imageOfContainer is the image working container w (state st) was made from: as
// index.json lists it (with its tags) if it still does, else read from the blobs,
// which gc keeps for the container after an rmi -f.
func imageOfContainer(s *blobstore.Store, w *workContainer, st *workState) (*blobstore.Image, error) {
	if img, err := s.Resolve(st.ImageID.String()); err == nil && img.ManifestDigest == st.ManifestDigest {
		return img, nil
	}
	img, err := s.LoadManifest(st.ManifestDigest)
	if err != nil {
		if _, ok := recordedLowers(st); ok && errors.Is(err, blobstore.ErrNotFound) {
			// Another tool's gc (umoci) took it: say what still works.
			return nil, fmt.Errorf("image of container %s: %w (gone from the store; diff, export and cp still read the container)", w.name, err)
		}
		return nil, fmt.Errorf("image of container %s: %w", w.name, err)
	}
	if img.ID != st.ImageID {
		return nil, fmt.Errorf("image of container %s: manifest %s has config %s, not %s", w.name, st.ManifestDigest, img.ID, st.ImageID)
	}
	return img, nil
}

// namesContainerImage reports whether ref is how container name was mounted, or
// (a prefix of) the ID of its image img.
func namesContainerImage(g *globalOptions, name, ref string, img *blobstore.Image) bool {
	if r := strings.TrimPrefix(ref, "sha256:"); isHexString(r) && strings.HasPrefix(img.ID.Encoded(), r) {
		return true
	}
	w, err := newWorkContainer(g.root, name)
	if err != nil {
		return false
	}
	st, err := w.load()
	return err == nil && st.ImageRef != "" && st.ImageRef == blobstore.DisplayRef(ref)
}
