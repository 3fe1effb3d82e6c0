package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// maxUploads is docker's default max-concurrent-uploads.
const maxUploads = 5

// PushOptions are the knobs of one push.
type PushOptions struct {
	Progress Progress // nil: silent
}

// PushResult says what a push wrote.
type PushResult struct {
	Repository string        // normalised repository ("docker.io/team/app")
	Tag        string        // the tag pushed
	Digest     digest.Digest // the manifest's digest
	Size       int64         // the manifest's size in bytes
}

// Push uploads the stored image src to dest (src itself when dest is ""); both use
// docker normalisation and dest gets the tag "latest" when it names none. Blobs the
// repository already has are not sent again; blobs the store has seen in another
// repository of the same registry are mounted from there.
func (c *Client) Push(ctx context.Context, st Store, src, dest string, opts PushOptions) (*PushResult, error) {
	progress := opts.Progress
	if progress == nil {
		progress = noProgress{}
	}
	if dest == "" {
		dest = src
	}
	named, err := blobstore.ParseReference(dest)
	if err != nil {
		return nil, err
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("push %s: %w: cannot push to a digest reference", dest, blobstore.ErrInvalidReference)
	}
	named = reference.TagNameOnly(named)
	tag := named.(reference.Tagged).Tag()
	img, err := st.Resolve(src)
	if err != nil {
		if errors.Is(err, blobstore.ErrNotFound) {
			return nil, fmt.Errorf("an image does not exist locally with the tag: %s", blobstore.FamiliarString(src))
		}
		return nil, err
	}
	fam := reference.FamiliarString(named)
	// Uncompressed layers go out gzipped, as docker's and skopeo's pushes send
	// them, with commit's deterministic gzip: the same image pushes as the same
	// manifest digest every time. The gzipped blobs are written to the store,
	// unreferenced: the lease keeps gc off them until they are uploaded.
	release, err := st.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	out, err := gzipLayers(ctx, st, img)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", fam, err)
	}
	host := reference.Domain(named)
	if host == "docker.io" {
		host = c.hubOrigin()
	}
	nopts := c.nameOptions(host)
	repo, err := name.NewRepository(host+"/"+reference.Path(named), nopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", blobstore.ErrInvalidReference, named, err)
	}
	progress.Header("The push refers to repository [" + named.Name() + "]")

	// Blobs, top layer first as docker lists them, then the config.
	type blob struct {
		desc   ocispec.Descriptor
		id     string // shown id: the layer's short diffID, as docker shows it
		source string // a repository on the same registry that holds it, or ""
	}
	var blobs []blob
	sources := map[string]bool{}
	for i := len(out.layers) - 1; i >= 0; i-- {
		l := out.layers[i]
		id := shortID(l.Digest)
		if i < len(img.Config.RootFS.DiffIDs) {
			id = shortID(img.Config.RootFS.DiffIDs[i])
		}
		b := blob{desc: l, id: id}
		if srcs, err := st.BlobSources(l.Digest); err == nil {
			for _, s := range srcs {
				r, err := name.NewRepository(s, nopts...)
				if err == nil && r.RegistryStr() == repo.RegistryStr() && r.RepositoryStr() != repo.RepositoryStr() {
					b.source = s
					sources[s] = true
					break
				}
			}
		}
		blobs = append(blobs, b)
	}
	scopes := []string{repo.Scope(transport.PushScope)}
	for _, s := range slices.Sorted(maps.Keys(sources)) {
		if r, err := name.NewRepository(s, nopts...); err == nil {
			scopes = append(scopes, r.Scope(transport.PullScope))
		}
	}
	auth, err := authn.Resolve(ctx, c.keychain(), repo)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", fam, err)
	}
	base := digestCheck{RoundTripper: c.httpTransport(host, false), manifest: out.digest}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, transport.NewRetry(base), scopes)
	if err != nil {
		return nil, pushError(named, err)
	}
	// A non-distributable layer is uploaded like any other, as docker's push
	// does (go-containerregistry skips it silently otherwise, and the manifest
	// then names a blob the registry lacks); one with URLs is skipped (pushBlob).
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt), remote.WithNondistributable}
	client := &http.Client{Transport: rt}

	for _, b := range blobs {
		progress.Layer(b.id, StatusPreparing, 0, b.desc.Size)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxUploads)
	for _, b := range blobs {
		g.Go(func() error {
			status, err := c.pushBlob(gctx, st, client, repo, b.desc, b.source, nopts, ropts, func(n int64) {
				progress.Layer(b.id, StatusPushing, n, b.desc.Size)
			})
			if err != nil {
				return err
			}
			progress.Layer(b.id, status, 0, 0)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, pushError(named, err)
	}
	if _, err := c.pushBlob(ctx, st, client, repo, img.Manifest.Config, "", nopts, ropts, func(int64) {}); err != nil {
		return nil, pushError(named, err)
	}

	mt := manifestMediaType(out.raw)
	if err := remote.Put(repo.Tag(tag), rawManifest{raw: out.raw, mediaType: mt}, ropts...); err != nil {
		return nil, pushError(named, fmt.Errorf("manifest %s: %w", out.digest, plainURL(err)))
	}
	res := &PushResult{Repository: named.Name(), Tag: tag, Digest: out.digest, Size: int64(len(out.raw))}
	// The pushed digest names the local image (its manifest may be the gzipped
	// one's uncompressed twin), as docker records it after a push.
	// (Not if an rmi took the image meanwhile: the push stands, with nothing to
	// record it on.)
	if err := st.AddRepoDigest(ctx, img.ManifestDigest, named.Name()+"@"+out.digest.String()); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return res, err
	}
	all := []digest.Digest{img.Manifest.Config.Digest}
	for _, l := range out.layers {
		all = append(all, l.Digest)
	}
	if err := st.AddBlobSources(ctx, repo.Name(), all...); err != nil {
		return res, err
	}
	return res, nil
}

// pushed is the manifest a push sends: the stored one, or its copy with the
// uncompressed layers gzipped.
type pushed struct {
	raw    []byte
	digest digest.Digest
	layers []ocispec.Descriptor
}

// gzipMediaTypes are the gzip media types of uncompressed layer media types.
var gzipMediaTypes = map[string]string{
	ocispec.MediaTypeImageLayer:                            ocispec.MediaTypeImageLayerGzip,
	ocispec.MediaTypeImageLayerNonDistributable:            ocispec.MediaTypeImageLayerNonDistributableGzip,
	"application/vnd.docker.image.rootfs.diff.tar":         blobstore.MediaTypeDockerLayerGzip,
	"application/vnd.docker.image.rootfs.foreign.diff.tar": blobstore.MediaTypeDockerForeignGzip,
}

// gzipLayers is img's manifest as push sends it: each uncompressed layer (its
// digest is its diffID; a foreign layer with URLs stays as its URLs serve it)
// is replaced by the gzip of it that commit would store (AppendLayer, gzip:
// deterministic), every other field kept. An image without such layers pushes
// its stored manifest bytes unchanged.
func gzipLayers(ctx context.Context, st Store, img *blobstore.Image) (*pushed, error) {
	raw, err := readBlob(st, img.ManifestDigest)
	if err != nil {
		return nil, err
	}
	out := &pushed{raw: raw, digest: img.ManifestDigest, layers: slices.Clone(img.Manifest.Layers)}
	changed := false
	for i, l := range out.layers {
		gz, ok := gzipMediaTypes[l.MediaType]
		if !ok || len(l.URLs) > 0 || i >= len(img.Config.RootFS.DiffIDs) || img.Config.RootFS.DiffIDs[i] != l.Digest {
			continue
		}
		changed = true
		// An earlier push's gzip of it, still in the store (the lease keeps
		// gc off it from here), goes out again without compressing again.
		if tw, ok := st.GzipTwinOf(l.Digest); ok {
			out.layers[i].MediaType, out.layers[i].Digest, out.layers[i].Size = gz, tw.Digest, tw.Size
			continue
		}
		rc, err := st.Open(l.Digest)
		if err != nil {
			return nil, &localError{err}
		}
		d, diffID, err := st.AppendLayer(ctx, rc, blobstore.Gzip)
		rc.Close()
		if err != nil {
			return nil, &localError{fmt.Errorf("gzip layer %s: %w", l.Digest, err)}
		}
		if diffID != l.Digest {
			return nil, &localError{fmt.Errorf("gzip layer %s: read %s", l.Digest, diffID)}
		}
		out.layers[i].MediaType, out.layers[i].Digest, out.layers[i].Size = gz, d.Digest, d.Size
		if err := st.AddGzipTwin(ctx, l.Digest, blobstore.GzipTwin{Digest: d.Digest, Size: d.Size}); err != nil {
			return nil, &localError{err}
		}
	}
	if !changed {
		return out, nil
	}
	// Rewrite only the layers' mediaType, digest and size; other fields (and
	// unknown ones) stay as they were.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", img.ManifestDigest, err)
	}
	var layers []map[string]json.RawMessage
	if err := json.Unmarshal(m["layers"], &layers); err != nil || len(layers) != len(out.layers) {
		return nil, fmt.Errorf("manifest %s: layers do not match the stored image", img.ManifestDigest)
	}
	for i, l := range out.layers {
		for k, v := range map[string]any{"mediaType": l.MediaType, "digest": l.Digest, "size": l.Size} {
			if layers[i][k], err = json.Marshal(v); err != nil {
				return nil, err
			}
		}
	}
	if m["layers"], err = json.Marshal(layers); err != nil {
		return nil, err
	}
	if out.raw, err = json.MarshalIndent(m, "", "   "); err != nil {
		return nil, err
	}
	out.digest = digest.FromBytes(out.raw)
	return out, nil
}

// pushBlob makes blob d present in repo and says how: already there, mounted from
// source, or uploaded.
func (c *Client) pushBlob(ctx context.Context, st Store, client *http.Client, repo name.Repository, desc ocispec.Descriptor, source string, nopts []name.Option, ropts []remote.Option, onBytes func(int64)) (Status, error) {
	if len(desc.URLs) > 0 {
		// A foreign layer: its URLs serve it, docker's push skips it too.
		return StatusSkippedForeign, nil
	}
	exists, err := blobExists(ctx, client, repo, desc.Digest)
	if err != nil {
		return "", err
	}
	if exists {
		return StatusLayerExists, nil
	}
	sl := &storeLayer{st: st, desc: desc, onBytes: onBytes}
	var l v1.Layer = sl
	var from string
	if source != "" {
		if sr, err := name.NewRepository(source, nopts...); err == nil {
			l = &remote.MountableLayer{Layer: sl, Reference: sr.Digest(desc.Digest.String())}
			from = sr.RepositoryStr()
		}
	}
	if err := remote.WriteLayer(repo, l, ropts...); err != nil {
		if le := (*localError)(nil); errors.As(err, &le) {
			return "", le // names the blob already
		}
		return "", fmt.Errorf("blob %s: %w", desc.Digest, plainURL(err))
	}
	if !sl.opened.Load() && from != "" {
		return StatusMountedPrefix + Status(from), nil
	}
	return StatusPushed, nil
}

// blobExists asks the registry with a HEAD request.
func blobExists(ctx context.Context, client *http.Client, repo name.Repository, d digest.Digest) (bool, error) {
	u := repo.Scheme() + "://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr() + "/blobs/" + d.String()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Errorf("check blob %s: %w", d, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		// A HEAD answer has no body: ask again with GET for the registry's
		// reason, which docker shows (it learns it from the upload that follows).
		req.Method = http.MethodGet
		if resp, err = client.Do(req); err != nil {
			return false, fmt.Errorf("check blob %s: %w", d, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true, nil
		}
	}
	return false, transport.CheckError(resp, http.StatusOK, http.StatusNotFound)
}

// storeLayer is a stored blob seen as a v1.Layer for remote.WriteLayer; it notes
// whether its content was read (an upload) or not (a mount).
type storeLayer struct {
	st      Store
	desc    ocispec.Descriptor
	opened  atomic.Bool
	onBytes func(int64)
}

var _ v1.Layer = (*storeLayer)(nil)

func (l *storeLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.desc.Digest.String()) }
func (l *storeLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{}, errors.New("diffID not needed to push")
}
func (l *storeLayer) Size() (int64, error) { return l.desc.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}
func (l *storeLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("uncompressed stream not needed to push")
}

// Compressed is the stored blob, verified at EOF by the store.
func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	l.opened.Store(true)
	rc, err := l.st.Open(l.desc.Digest)
	if err != nil {
		return nil, &localError{err}
	}
	return struct {
		io.Reader
		io.Closer
	}{&countingReader{r: localReader{rc}, fn: l.onBytes}, rc}, nil
}

// localError is a failure to read a blob from the local store while uploading it
// (missing, damaged): the store's fault, not the registry's, though the HTTP client
// reports it as a failed request (a "readfrom" network error).
type localError struct{ err error }

func (e *localError) Error() string { return "local store: " + e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// localReader marks its reader's errors but EOF as localErrors.
type localReader struct{ r io.Reader }

func (l localReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		err = &localError{err}
	}
	return n, err
}

// plainURL words an HTTP client error as "METHOD URL: cause" without the URL's
// query: an upload URL's query is a long opaque state token, which
// go-containerregistry redacts in its own errors but not in the client's.
func plainURL(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u := ue.URL
	if pu, perr := url.Parse(u); perr == nil {
		pu.RawQuery, pu.Fragment = "", ""
		u = pu.String()
	}
	return fmt.Errorf("%s %s: %w", strings.ToUpper(ue.Op), u, ue.Err)
}

// digestCheck fails a PUT the registry accepted but answered with another
// Docker-Content-Digest than the one sent (a blob upload's ?digest=, or the
// manifest's): it holds other content than what was pushed, and the push must not
// record a repository digest the registry does not serve. An answer without the
// header, or in another algorithm, is taken as it is.
type digestCheck struct {
	http.RoundTripper
	manifest digest.Digest
}

func (t digestCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(req)
	if err != nil || req.Method != http.MethodPut || resp.StatusCode/100 != 2 {
		return resp, err
	}
	want := digest.Digest(req.URL.Query().Get("digest"))
	if want == "" && strings.Contains(req.URL.Path, "/manifests/") {
		want = t.manifest
	}
	got, perr := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if want == "" || perr != nil || got.Algorithm() != want.Algorithm() || got == want {
		return resp, nil
	}
	resp.Body.Close()
	return nil, fmt.Errorf("registry answered with digest %s for %s", got, want)
}

// rawManifest pushes the stored manifest bytes unchanged.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

func manifestMediaType(raw []byte) types.MediaType {
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(raw, &probe) == nil && probe.MediaType != "" {
		return types.MediaType(probe.MediaType)
	}
	return types.OCIManifestSchema1
}

func readBlob(st Store, d digest.Digest) ([]byte, error) {
	rc, err := st.Open(d)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d, err)
	}
	if len(b) > maxManifest {
		// Cut short it would have been pushed under the wrong content.
		return nil, fmt.Errorf("read %s: larger than %d MiB, more than registries take for a manifest", d, maxManifest>>20)
	}
	return b, nil
}

// maxManifest is the largest manifest push reads (registries refuse larger ones).
const maxManifest = 4 << 20

func pushError(named reference.Named, err error) error {
	if le := (*localError)(nil); errors.As(err, &le) {
		return fmt.Errorf("push %s: %w", reference.FamiliarString(named), le)
	}
	c := classify(err)
	if errors.Is(c, ErrDenied) {
		return fmt.Errorf("push access denied for %s: %w (try 'layerfs login %s')", reference.FamiliarName(named), c, reference.Domain(named))
	}
	if u := unreachable(reference.Domain(named), err); u != nil {
		return fmt.Errorf("push %s: %w", reference.FamiliarString(named), u)
	}
	return fmt.Errorf("push %s: %w", reference.FamiliarString(named), explainRefusal(oneLine(err)))
}
