package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PullOptions are the knobs of one pull.
type PullOptions struct {
	Platform string   // "os/arch[/variant]" picked from an index; "" is linux/<host arch>
	Progress Progress // nil: silent
	// CheckLayer, if set, reads a layer's uncompressed tar to its end and says
	// whether it can be unpacked (mountcmd passes cow.CheckLayer, as to load): a
	// pull with a layer it refuses fails and stores nothing, as docker pull fails
	// on a layer it cannot extract. Downloaded layers are checked as they stream
	// into the store; layers the store has already are read back from it and
	// checked (their diffIDs matched in the same read) when the image is new to
	// the store. It is called from several goroutines at once.
	CheckLayer func(io.Reader) error
}

// PullResult says what a pull stored.
type PullResult struct {
	Ref        string           // normalised reference pulled ("docker.io/library/busybox:latest")
	Image      *blobstore.Image // the image as stored
	Digest     digest.Digest    // the registry's digest for Ref (the index's for a multi-platform image)
	RepoDigest string           // "docker.io/library/busybox@sha256:..."
	Updated    bool             // new content or a moved tag; false: already up to date
	Registry   string           // the host that served it (a mirror or the origin)
}

// maxDownloads is docker's default max-concurrent-downloads.
const maxDownloads = 3

// DefaultPlatform is linux on the host's architecture.
func DefaultPlatform() string { return "linux/" + runtime.GOARCH }

// Pull fetches ref (docker normalisation: "busybox" is docker.io/library/busybox:latest)
// into st. Blobs already in st are not fetched; every blob is verified against its
// digest, every downloaded layer's uncompressed content against the config's
// diff_ids (as docker does; an image whose config lists another number of diff_ids
// than it has layers is refused before any download, and one whose manifest the
// store would refuse, or whose config is over the store's cap, before its config
// is read: see checkManifest), and every layer by
// opts.CheckLayer, before any layer becomes visible; the manifest is recorded and
// the tag moved last, with the layers' content sizes (docker's SIZE) counted in the
// same pass as the check, so that no layer is read again to size it. A refused
// layer (blobstore.ErrDigestMismatch for a diffID, or the check's error) fails the
// pull and leaves no new blob and no temp file behind; after another failure the
// layers that arrived whole and passed are kept for a retry.
func (c *Client) Pull(ctx context.Context, st Store, ref string, opts PullOptions) (*PullResult, error) {
	// Every remote read of this pull is tied to ctx: a layer that fails cancels it
	// with its error, which ends the downloads still running at once.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	named, err := blobstore.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if d, ok := named.(reference.Digested); ok {
		// name:tag@digest is pulled by the digest alone and sets no tag, as docker
		// does (its client sends the daemon only the digest).
		if named, err = reference.WithDigest(reference.TrimNamed(named), d.Digest()); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", blobstore.ErrInvalidReference, ref, err)
		}
	}
	named = reference.TagNameOnly(named)
	res := &PullResult{Ref: named.String()}
	progress := opts.Progress
	if progress == nil {
		progress = noProgress{}
	}
	plat, err := parsePlatform(opts.Platform)
	if err != nil {
		return nil, err
	}

	desc, ep, err := c.fetchDescriptor(ctx, named)
	if err != nil {
		return nil, err
	}
	res.Registry = ep.Context().RegistryStr()
	res.Digest = digest.Digest(desc.Digest.String())
	res.RepoDigest = named.Name() + "@" + res.Digest.String()

	img, err := c.resolvePlatform(ctx, desc, ep, plat)
	if err != nil {
		return nil, pullFailed(named, err)
	}
	if err := checkManifest(img); err != nil {
		return nil, pullFailed(named, err)
	}
	if opts.Platform != "" && !desc.MediaType.IsIndex() {
		// A single-platform image must be the one asked for, as docker checks.
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, pullFailed(named, fmt.Errorf("read config: %w", classify(err)))
		}
		have := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		if !platformMatches(have, plat) {
			return nil, fmt.Errorf("pull %s: %w: image with reference %s was found but its platform (%s) does not match the specified platform (%s)",
				reference.FamiliarString(named), ErrNoPlatform, reference.FamiliarString(named), platformString(have), platformString(plat))
		}
	}
	tagOrDigest := res.Digest.String()
	if t, ok := named.(reference.Tagged); ok {
		tagOrDigest = t.Tag()
	}
	progress.Header(tagOrDigest + ": Pulling from " + reference.Path(named))

	md, err := img.Digest()
	if err != nil {
		return nil, pullFailed(named, err)
	}
	// Up to date only if the image is recorded: a manifest blob alone (an image
	// removed before gc, or a pull that failed to record it) is not an image.
	had := st.Has(digest.Digest(md.String()))
	if had {
		if _, err := st.Resolve(md.String()); err != nil {
			had = false
		}
	}
	release, err := st.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	fetchProgress := progress
	if had {
		fetchProgress = noProgress{} // docker shows no layers for an image it has
	}
	f := &layerFetch{st: st, img: img, check: opts.CheckLayer, checkStored: !had, cancel: cancel, progress: fetchProgress,
		registryBlob: func(ctx context.Context, h v1.Hash) (io.ReadCloser, error) {
			l, err := remote.Layer(ep.Context().Digest(h.String()), c.remoteOptions(ctx, ep)...)
			if err != nil {
				return nil, err
			}
			return l.Compressed()
		},
		urlClient: foreignClient}
	if err := f.fetchImage(ctx); err != nil {
		return nil, pullFailed(named, err)
	}
	if err := record(ctx, st, img, named, had, f.sizes, res); err != nil {
		return nil, pullFailed(named, err)
	}
	return res, nil
}

// checkManifest judges img's manifest as the store will when the pull records it
// (blobstore.ParseManifest: size, media types, schemaVersion), and the config's
// declared size by the store's cap, as soon as the manifest is fetched: an image
// the store would refuse is refused before its config or any layer is read, so
// that it leaves no blob behind, and the config (read whole, in memory) is never
// larger than the store would take.
func checkManifest(img v1.Image) error {
	raw, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("read manifest: %w", classify(err))
	}
	h, err := img.Digest()
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	md := digest.Digest(h.String())
	if err := blobstore.CheckMetaSize(md, int64(len(raw))); err != nil {
		return fmt.Errorf("read manifest %s: %w", md, err)
	}
	m, err := blobstore.ParseManifest(raw, md)
	if err != nil {
		return err
	}
	if err := blobstore.CheckMetaSize(m.Config.Digest, m.Config.Size); err != nil {
		return fmt.Errorf("read config %s: %w", m.Config.Digest, err)
	}
	return nil
}

// pullFailed words a failure after the manifest was found, on one line: a
// registry's error body (an HTML page from a proxy, say) is kept, its lines joined.
func pullFailed(named reference.Named, err error) error {
	return fmt.Errorf("pull %s: %w", reference.FamiliarString(named), explainRefusal(oneLine(err)))
}

// fetchDescriptor gets what named points at from the first endpoint that has it
// (mirrors, then the origin). If every endpoint fails, the origin's error is
// returned with the mirrors' appended, on one line.
func (c *Client) fetchDescriptor(ctx context.Context, named reference.Named) (*remote.Descriptor, endpoint, error) {
	endpoints, err := c.endpoints(named)
	if err != nil {
		return nil, endpoint{}, err
	}
	var errs []string
	for i, e := range endpoints {
		// The bare reference: go-containerregistry checks a manifest fetched by
		// digest against the digest only when it is given a name.Digest.
		d, err := remote.Get(e.Reference, c.remoteOptions(ctx, e)...)
		if err == nil {
			if dg, ok := named.(reference.Digested); ok && d.Digest.String() != dg.Digest().String() {
				err = fmt.Errorf("manifest digest %s does not match the requested %s", d.Digest, dg.Digest())
			}
		}
		if err == nil {
			return d, e, nil
		}
		if ctx.Err() != nil {
			// ("context canceled" alone named neither the image nor why.)
			return nil, endpoint{}, pullFailed(named, context.Cause(ctx))
		}
		last := pullError(named, e, err)
		if i == len(endpoints)-1 {
			if len(errs) == 0 {
				return nil, endpoint{}, last
			}
			return nil, endpoint{}, fmt.Errorf("%w (mirrors failed too: %s)", last, strings.Join(errs, "; "))
		}
		errs = append(errs, last.Error())
	}
	return nil, endpoint{}, fmt.Errorf("pull %s: no registry to pull from", reference.FamiliarString(named))
}

// record adds the fetched manifest to the store's index, tagged when the reference
// has a tag, and remembers the repo digest, the layers' content sizes (sizes, by
// diffID, as the fetch learnt them) and where the blobs came from.
func record(ctx context.Context, st Store, img v1.Image, named reference.Named, had bool, sizes map[digest.Digest]int64, res *PullResult) error {
	md, err := img.Digest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	size, err := img.Size()
	if err != nil {
		return err
	}
	mdig := digest.Digest(md.String())
	var tags []string
	res.Updated = !had
	if _, ok := named.(reference.Tagged); ok {
		tags = append(tags, named.String())
		if before, err := st.Resolve(named.String()); err != nil || before.ManifestDigest != mdig {
			res.Updated = true
		}
	}
	// One step: an image pulled by digest has no tag, and would look dangling
	// to an image prune until its repo digest is recorded.
	stored, err := st.AddManifestRef(ctx, ocispec.Descriptor{MediaType: string(mt), Digest: mdig, Size: size}, res.RepoDigest, tags...)
	if err != nil {
		return err
	}
	res.Image = stored
	// docker's image size is the uncompressed content: record the sizes the fetch
	// counted as the layers streamed in, and have the store count now (rather than
	// on the first `images`) only what it learnt nothing about: a stored layer not
	// read back, a tar the counter leaves to archive/tar. A record that cannot be
	// written is only a cost: LayerSizes counts those layers again, as it would have.
	_ = st.RecordLayerSizes(ctx, sizes)
	if _, err := st.LayerSizes(ctx, stored); err != nil {
		return err
	}
	blobs := []digest.Digest{stored.ID}
	for _, l := range stored.Manifest.Layers {
		blobs = append(blobs, l.Digest)
	}
	return st.AddBlobSources(ctx, sourceRepo(res.Registry, named), blobs...)
}

// sourceRepo is the repository ("host/path") a blob was seen in, for later mounts.
func sourceRepo(host string, named reference.Named) string {
	return host + "/" + reference.Path(named)
}

// resolvePlatform turns desc into one image: itself, or the index entry for plat.
func (c *Client) resolvePlatform(ctx context.Context, desc *remote.Descriptor, ep endpoint, plat v1.Platform) (v1.Image, error) {
	if !desc.MediaType.IsIndex() {
		if desc.MediaType.IsSchema1() {
			return nil, fmt.Errorf("%s: schema 1 manifests are not supported", desc.MediaType)
		}
		return desc.Image()
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	// docker's choice (containerd's platforms.Only): the platform itself, else
	// what it runs (arm/v7 takes v6, amd64 takes 386), the best match first.
	match := platforms.Only(ociPlatform(plat))
	var best *v1.Descriptor
	var bestP ocispec.Platform
	for i, m := range im.Manifests {
		if !m.MediaType.IsImage() {
			continue
		}
		p := v1.Platform{OS: "linux", Architecture: "amd64"} // an entry without one, as docker assumes
		if m.Platform != nil {
			p = *m.Platform
		}
		op := ociPlatform(p)
		if match.Match(op) && (best == nil || match.Less(op, bestP)) {
			best, bestP = &im.Manifests[i], op
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w for %s in the manifest list entries", ErrNoPlatform, platformString(plat))
	}
	img, err := remote.Image(ep.Context().Digest(best.Digest.String()), c.remoteOptions(ctx, ep)...)
	if err != nil {
		return nil, classify(err)
	}
	return img, nil
}

func ociPlatform(p v1.Platform) ocispec.Platform {
	return ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

// parsePlatform reads --platform as docker does (containerd's platforms.Parse,
// normalised): "linux/x86_64", "Linux/AMD64", "linux/aarch64", "linux/armhf" and
// a bare "amd64" are all taken.
func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		s = DefaultPlatform()
	}
	p, err := platforms.Parse(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant]", s)
	}
	p = platforms.Normalize(p)
	return v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}, nil
}

// platformMatches: have runs where want is asked for, as docker's pull checks a
// single-platform image (platforms.Only: arm/v7 takes v6, amd64 takes 386).
func platformMatches(have, want v1.Platform) bool {
	return platforms.Only(ociPlatform(want)).Match(ociPlatform(have))
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// endpoint is a place to fetch an image from: a reference in a registry, which
// is a Docker Hub mirror (Config.Mirrors) or the reference's own registry.
type endpoint struct {
	name.Reference
	mirror bool
}

// endpoints lists where to fetch named from: for Docker Hub, the mirrors in order
// and then the origin; otherwise the registry itself.
func (c *Client) endpoints(named reference.Named) ([]endpoint, error) {
	host := reference.Domain(named)
	var hosts []string
	mirrors := 0
	if host == "docker.io" {
		for _, m := range c.Config.Mirrors {
			mm, err := parseMirror(m)
			if err != nil {
				return nil, err
			}
			hosts = append(hosts, mm.host)
		}
		mirrors = len(hosts)
		host = c.hubOrigin()
	}
	hosts = append(hosts, host)
	var refs []endpoint
	for i, h := range hosts {
		mirror := i < mirrors
		repo, err := name.NewRepository(h+"/"+reference.Path(named), c.endpointNameOptions(h, mirror)...)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", blobstore.ErrInvalidReference, named, err)
		}
		if d, ok := named.(reference.Digested); ok {
			refs = append(refs, endpoint{repo.Digest(d.Digest().String()), mirror})
		} else {
			refs = append(refs, endpoint{repo.Tag(named.(reference.Tagged).Tag()), mirror})
		}
	}
	return refs, nil
}

// remoteOptions are the go-containerregistry options for talking to ep's registry.
func (c *Client) remoteOptions(ctx context.Context, ep endpoint) []remote.Option {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain()),
		remote.WithTransport(c.httpTransport(ep.Context().RegistryStr(), ep.mirror)),
		remote.WithJobs(maxDownloads),
	}
	if c.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(c.UserAgent))
	}
	return opts
}

// pullError is docker's wording for a failed manifest fetch, in one line.
func pullError(named reference.Named, ep name.Reference, err error) error {
	fam := reference.FamiliarString(named)
	err = classify(err)
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("manifest for %s %w", fam, err)
	case errors.Is(err, ErrDenied):
		return fmt.Errorf("pull access denied for %s, repository does not exist or may require 'layerfs login': %w", reference.FamiliarName(named), err)
	}
	if u := unreachable(ep.Context().RegistryStr(), err); u != nil {
		return fmt.Errorf("pull %s: %w", fam, u)
	}
	return fmt.Errorf("pull %s from %s: %w", fam, ep.Context().RegistryStr(), explainRefusal(oneLine(err)))
}
