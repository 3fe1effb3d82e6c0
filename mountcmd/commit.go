package mountcmd

// layerfs commit: a working container's changes become a layer and a new image.
//
//	pause (mounted, --pause) -> cow.Changes (empty? no layer) -> cow.Diff or, with
//	--squash, cow.Export -> AppendLayer (diffID + compression in one pass)
//	-> config = container's (parent's + run's) + -c changes + history -> manifest -> tag -> [--rebase:
//	unpack the new layer, swap the mount onto it with an empty upper] -> resume
//
// The container lock is held throughout, so no mount, umount, rm or other commit of
// the same container runs meanwhile; the pause (when mounted) holds writers so the
// layer is a consistent cut, and stays up through --rebase so that no write lands in
// the old upper after it was read.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

type commitOptions struct {
	author          string
	message         string
	changes         []string
	pause           bool
	compression     string
	squash          bool
	rebase          bool
	sourceDateEpoch string
}

func init() { addVerb(newCommitCommand) }

func newCommitCommand(g *globalOptions) *cobra.Command {
	o := &commitOptions{}
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] NAME|DIR [REPOSITORY[:TAG]]",
		Short: "Create a new image from a working container's changes",
		Long: `Create a new image from a working container's changes: its upper dir becomes one
new layer on top of the container's image (nothing changed: no layer, only a history
entry), with the container's config (its image's, plus the command, -e, -w and -u of
run) and the --change instructions. Prints the new image ID. The container goes on as it was; with --rebase it moves onto the new image with
an empty upper dir, without unmounting.`,
		Example: `  layerfs commit -a "Chenwj<cwj@cwj.com>" -c 'CMD ["/bin/httpd","-f","-h","/data/html"]' -p busy1 chenwenj/httpd:v2`,
		Args:    rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCommit(cmd.Context(), g, o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.author, "author", "a", "", `author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	f.StringVarP(&o.message, "message", "m", "", "commit message")
	f.StringArrayVarP(&o.changes, "change", "c", nil, "apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)")
	f.BoolVarP(&o.pause, "pause", "p", true, "stop the processes writing into a mounted container, and hold its writes, while its changes are read (docker: pause the container)")
	f.StringVar(&o.compression, "compression", "gzip", "layer compression: gzip, zstd or none")
	f.BoolVar(&o.squash, "squash", false, "make a one-layer image of the whole merged tree")
	f.BoolVar(&o.rebase, "rebase", false, "afterwards, move the container onto the new image with an empty upper dir")
	f.StringVar(&o.sourceDateEpoch, "source-date-epoch", "", "clamp file mtimes and set the created time to this Unix time (default $SOURCE_DATE_EPOCH)")
	return cmd
}

// commitPlan is the checked input of a commit.
type commitPlan struct {
	comp    blobstore.Compression
	ref     string     // normalised REF to tag, "" for none
	epoch   *time.Time // --source-date-epoch
	created time.Time  // zero: now
}

func (o *commitOptions) plan(args []string) (*commitPlan, error) {
	p := &commitPlan{}
	if _, err := build.ParseChanges(o.changes); err != nil {
		return nil, err
	}
	switch c := blobstore.Compression(o.compression); c {
	case blobstore.Gzip, blobstore.Zstd, blobstore.None:
		p.comp = c
	default:
		return nil, fmt.Errorf("unknown compression %q: use gzip, zstd or none", o.compression)
	}
	if len(args) == 2 {
		r, err := blobstore.ParseNewTag(args[1])
		if err != nil {
			return nil, err
		}
		p.ref = r.String()
	}
	sde := o.sourceDateEpoch
	if sde == "" {
		sde = os.Getenv("SOURCE_DATE_EPOCH")
	}
	if sde != "" {
		n, err := strconv.ParseInt(sde, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid source date epoch %q: want seconds since 1970", sde)
		}
		t := time.Unix(n, 0).UTC()
		p.epoch, p.created = &t, t
	}
	return p, nil
}

func runCommit(ctx context.Context, g *globalOptions, o *commitOptions, args []string, stdout, stderr io.Writer) (err error) {
	plan, err := o.plan(args)
	if err != nil {
		return err
	}
	store, err := openStore(g)
	if err != nil {
		return err
	}
	w, err := findContainer(g.root, args[0])
	if err != nil {
		return errors.New(userError(err))
	}
	st, unlock, err := lockAndLoad(ctx, w)
	if err != nil {
		return errors.New(userError(err))
	}
	defer unlock()
	parent, err := imageOfContainer(store, w, st)
	if err != nil {
		return err
	}
	// Blobs written from here until the image is recorded must survive a gc.
	release, err := store.Lease(ctx)
	if err != nil {
		return err
	}
	defer release()

	if o.rebase && st.ReadOnly && w.serverAlive() {
		return fmt.Errorf("container %s is mounted read-only: --rebase needs a writable mount", w.name)
	}
	var srv *controlClient
	if w.serverAlive() {
		if srv, err = dialControl(ctx, w); err != nil {
			return err
		}
		defer srv.Close() // also lifts a pause this client still holds
		// --rebase always pauses: a write between the read of the upper and the swap
		// would land in the old upper, which the rebase discards.
		if !o.pause && !o.rebase {
			// No pause, no stopped writers; but what was stored into shared
			// mappings still reaches the upper dir first, as a pause's does.
			if err := srv.Sync(ctx); err != nil {
				return fmt.Errorf("sync %s: %w", w.name, err)
			}
		}
		if o.pause || o.rebase {
			if err := srv.Pause(ctx); err != nil {
				return fmt.Errorf("pause %s: %w", w.name, err)
			}
			defer func() {
				// Always resume, also after an error or a cancelled ctx.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				rerr := srv.Resume(rctx)
				var remote *remoteError
				if rerr != nil && !errors.As(rerr, &remote) {
					// A server that died (killed) took its pause along:
					// nothing is left to resume.
					wctx, wcancel := context.WithTimeout(rctx, time.Second)
					if waitServerExit(wctx, w) == nil {
						fmt.Fprintf(stderr, "WARNING: the mount server of %s died during the commit; umount %s clears its mount\n", w.name, w.name)
						rerr = nil
					}
					wcancel()
				}
				if rerr != nil && err == nil {
					err = fmt.Errorf("resume %s: %w", w.name, rerr)
				}
			}()
		}
	} else if st.Mountpoint != "" && o.rebase && isOurMount(st.Mountpoint, w.fsName()) {
		return fmt.Errorf("container %s: its mount server died; umount it first", w.name)
	}

	c := &committer{g: g, o: o, plan: plan, store: store, w: w, st: st, parent: parent, stderr: stderr}
	img, err := c.commit(ctx)
	if err != nil {
		return err
	}
	if o.rebase {
		if err := c.rebase(ctx, srv, img); err != nil {
			return fmt.Errorf("committed %s, but rebase: %w", img.ID, err)
		}
	}
	_, err = fmt.Fprintln(stdout, img.ID.String())
	return err
}

// committer carries one commit's state between its steps.
type committer struct {
	g      *globalOptions
	o      *commitOptions
	plan   *commitPlan
	store  *blobstore.Store
	w      *workContainer
	st     *workState
	parent *blobstore.Image
	stderr io.Writer

	lowers []string           // the container's lower dirs, top first
	stubs  []string           // the upper dir's runtime mountpoints, left out (children first)
	desc   ocispec.Descriptor // the new layer ("" digest: none)
	diffID digest.Digest
}

func (c *committer) commit(ctx context.Context) (*blobstore.Image, error) {
	var pcfg dockerspec.DockerOCIImage
	if err := decodeImageConfig(c.parent, &pcfg); err != nil {
		return nil, err
	}
	ccfg, err := containerConfig(c.w, pcfg.Config)
	if err != nil {
		return nil, err
	}
	pcfg.Config = ccfg
	// As docker, the changes are applied before anything is written: one that parses
	// but does not apply (a bad signal, a port out of range) leaves the store alone.
	probe := pcfg.Config
	if err := build.ApplyChanges(&probe, c.o.changes); err != nil {
		return nil, err
	}
	lowers, err := containerLowers(ctx, c.g, c.store, c.st, c.parent)
	if err != nil {
		return nil, err
	}
	c.lowers = lowers
	upper := c.w.upperPath(c.st)
	// A running container's mountpoint stubs are not its changes (run_stubs.go);
	// read while paused, as the layer.
	c.stubs = runtimeStubs(c.w, upper)
	exclude := excludeStubs(c.stubs)
	dopts := cow.DiffOptions{Format: cow.FormatOCI, Lowers: lowers, SourceDateEpoch: c.plan.epoch, Exclude: exclude}

	empty := false
	if !c.o.squash {
		changes, err := cow.Changes(upper, dopts)
		if err != nil {
			return nil, fmt.Errorf("read changes of %s: %w", c.w.name, err)
		}
		empty = len(changes) == 0
	}
	depth := len(pcfg.RootFS.DiffIDs)
	switch {
	case c.o.squash:
		depth = 1
	case !empty:
		depth++
	}
	if depth > build.MaxLayers {
		return nil, fmt.Errorf("%w: the image would have %d layers, the limit is %d (commit --squash makes one)", build.ErrTooManyLayers, depth, build.MaxLayers)
	}
	if msg := build.DepthWarning(depth); msg != "" && !empty {
		fmt.Fprintf(c.stderr, "WARNING: %s\n", msg)
	}

	if !empty {
		var rc io.ReadCloser
		if c.o.squash {
			rc = cow.Export(ctx, lowers, upper, cow.FormatOCI, cow.ExportExcludeUpper(exclude), cow.ExportAsLayer())
		} else {
			rc = cow.Diff(ctx, upper, dopts)
		}
		prog := startCommitProgress(c.stderr)
		c.desc, c.diffID, err = c.store.AppendLayer(ctx, prog.reader(rc), c.plan.comp, blobstore.WithWrittenCounter(&prog.written))
		prog.stop(err == nil)
		if cerr := rc.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", c.w.name, err)
		}
	}

	copts := build.CommitOptions{Author: c.o.author, Comment: c.o.message, Created: c.plan.created, Changes: c.o.changes}
	var cfg dockerspec.DockerOCIImage
	var layers []ocispec.Descriptor
	if c.o.squash {
		cfg, err = build.SquashImage(pcfg, c.diffID, copts)
		layers = []ocispec.Descriptor{c.desc}
	} else {
		cfg, err = build.ChildImage(pcfg, c.diffID, copts)
		layers = append(append([]ocispec.Descriptor(nil), c.parent.Manifest.Layers...), nonEmpty(c.desc)...)
	}
	if err != nil {
		return nil, err
	}
	var tags []string
	if c.plan.ref != "" {
		tags = append(tags, c.plan.ref)
	}
	img, err := c.store.WriteImageConfig(ctx, cfg, len(cfg.RootFS.DiffIDs), layers, blobstore.WithParent(c.parent), blobstore.WithTags(tags...))
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.w.name, err)
	}
	return img, nil
}

func nonEmpty(d ocispec.Descriptor) []ocispec.Descriptor {
	if d.Digest == "" {
		return nil
	}
	return []ocispec.Descriptor{d}
}

// rebaseHook, when set (tests), runs in rebase before the container is moved.
var rebaseHook func()

// rebase moves the container onto img with a fresh, empty upper dir: through the
// live server (still paused) when mounted, else by rewriting state.json. The old
// upper dir is removed once nothing uses it.
func (c *committer) rebase(ctx context.Context, srv *controlClient, img *blobstore.Image) error {
	if c.st.ReadOnly && srv != nil {
		return errors.New("a read-only mount cannot be rebased")
	}
	lowers := c.lowers
	top := "" // the layer dir made from the upper dir
	if c.diffID != "" {
		var err error
		top, err = layerCache(c.g).Ensure(ctx, c.diffID, func() (io.ReadCloser, error) { return c.store.OpenLayer(c.desc) })
		if err != nil {
			return err
		}
		if c.o.squash {
			lowers = []string{top}
		} else {
			lowers = append([]string{top}, lowers...)
		}
	}
	oldUpper := c.w.upperPath(c.st)
	newUpper, err := freshUpper(c.w.Dir(), oldUpper)
	if err != nil {
		return err
	}
	mnt := ""
	if srv != nil {
		mnt = c.st.Mountpoint
	}
	carried, err := carryStubs(oldUpper, newUpper, mnt, c.stubs)
	if err != nil {
		cow.RemoveAll(newUpper)
		return err
	}
	if r := loadRuntimePaths(c.w); r != nil && len(carried) > 0 {
		r.Rebased(carried)
		if err := saveRuntimePaths(c.w, r); err != nil {
			cow.RemoveAll(newUpper)
			return err
		}
	}
	name := filepath.Base(newUpper)
	ref := ""
	if c.plan.ref != "" {
		ref = blobstore.FamiliarString(c.plan.ref)
	}
	// The committed layer's files keep the inode numbers they had in the union.
	mapFile := ""
	if top != "" {
		mapFile = filepath.Join("inodes", c.diffID.Encoded())
	}
	// The container names the new image from here on: under HoldImage, so that an
	// rmi of the image either waits and sees the container, or came first and
	// the container stays where it was (as for a new container, claimContainer).
	gone := func(err error) error {
		if errors.Is(err, blobstore.ErrNotFound) {
			return fmt.Errorf("%w: removed meanwhile; the container stays on its image", err)
		}
		return err
	}
	if rebaseHook != nil {
		rebaseHook()
	}
	if srv != nil {
		// Not cancelled by a ^C: the server goes on with a rebase it has begun, and
		// the answer must be read to know which upper it runs on.
		nctx := context.WithoutCancel(ctx)
		asked := false
		err = c.store.HoldImage(ctx, img.ID, func() error {
			asked = true
			return srv.Rebase(nctx, RebaseRequest{Lowers: lowers, Upper: name, ImageID: img.ID, ManifestDigest: img.ManifestDigest, ImageRef: ref, Committed: top, InodeMap: mapFile})
		})
		if err != nil && !asked {
			err = gone(err)
		} else if err != nil {
			if st, serr := srv.Status(nctx); serr != nil || filepath.Clean(st.Upper) == filepath.Clean(newUpper) {
				// The mount runs on the new upper (or may: the server did not
				// say), though its state.json may not say so: keep both
				// uppers, gc judges them once the server is gone.
				return fmt.Errorf("commit --rebase: %w (the mount runs on %s; the old upper %s is kept)", err, newUpper, oldUpper)
			}
		}
	} else {
		if mapFile != "" {
			if kerr := fs.KeepInodes(filepath.Join(c.w.Dir(), mapFile), top, c.lowers, oldUpper, c.w.inodeMaps(c.st), cow.FormatOCI); kerr != nil {
				fmt.Fprintf(c.stderr, "WARNING: %v: the committed files get new inode numbers\n", kerr)
				mapFile = ""
			}
		}
		st := *c.st
		st.Lowers, st.Upper = lowers, name
		st.ImageID, st.ManifestDigest, st.ImageRef = img.ID, img.ManifestDigest, ref
		st.InodeMaps = withInodeMap(c.st, lowers, top, mapFile)
		saved := false
		err = c.store.HoldImage(ctx, img.ID, func() error { saved = true; return c.w.save(&st) })
		if err != nil && !saved {
			err = gone(err)
		}
	}
	if err != nil {
		cow.RemoveAll(newUpper)
		return err
	}
	if err := cow.RemoveAll(oldUpper); err != nil {
		fmt.Fprintf(c.stderr, "WARNING: remove old upper dir %s: %v\n", oldUpper, err)
	}
	return nil
}
