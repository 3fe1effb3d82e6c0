package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// layerFetch is one pull's transfer of an image's blobs into the store.
//
// The config comes first: an image whose config does not give one diff_id per
// manifest layer is refused before any layer is fetched. Layers are downloaded up
// to maxDownloads at a time, each staged (a verified temp file, not yet visible)
// while LayerCheck checks its uncompressed content and hashes it, in the same pass.
// A layer whose uncompressed digest is not the config's diff_id at each of its
// places in the image (one blob may be listed twice, and is fetched once) is
// refused as a failed check is. Layers the store has already are read back,
// checked and matched in the same way when the image is new to the store and
// there is a check to run; without a check they are not read just to be hashed.
// The same pass counts each layer's content size (docker's SIZE), kept in sizes
// for the pull to record with the image, so that no layer is read again to size
// it. Only when every layer is in and passed are the staged layers committed, then
// the config and the manifest put. The first layer to fail cancels the pull's
// context, which ends the other downloads. If a layer was refused (its check, or its
// diffID), every staged layer is discarded, so a hostile image leaves the store's
// blobs as they were; after any other failure the layers that arrived whole and
// passed are kept (unreferenced until a pull records them, gc's otherwise), as
// docker keeps them, so that a retry fetches only the rest.
type layerFetch struct {
	st          Store
	img         v1.Image
	check       func(io.Reader) error             // nil: no layer check (diff_ids are still matched)
	checkStored bool                              // also check the layers the store has already
	diffIDs     map[digest.Digest][]digest.Digest // by layer blob: the config's diff_id at each of its places
	cancel      context.CancelCauseFunc
	progress    Progress
	// registryBlob opens a blob of the image's repository by digest, from the
	// registry alone (a foreign layer's URLs are tried by fetchLayer itself).
	registryBlob func(ctx context.Context, h v1.Hash) (io.ReadCloser, error)
	urlClient    *http.Client // for a foreign layer's URLs

	mu     sync.Mutex
	staged []*blobstore.Staged
	sizes  map[digest.Digest]int64 // by diffID: content sizes learnt (LayerCheck.ContentSize)
}

// fetchImage puts every missing blob of img into st: layers (in parallel), then the
// config and the manifest. The caller holds a GC lease until the manifest is
// recorded. ctx is the one f.cancel cancels.
func (f *layerFetch) fetchImage(ctx context.Context) error {
	m, err := f.img.Manifest()
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	cd := digest.Digest(m.Config.Digest.String())
	rawCfg, err := f.img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("read config %s: %w", cd, err)
	}
	cfg, err := blobstore.ParseConfig(rawCfg, cd, len(m.Layers))
	if err != nil {
		return err
	}
	// An image for another OS (a single Windows manifest; an index is
	// resolved by platform already) is refused before any download, as
	// docker's pull refuses it.
	if err := blobstore.CheckOS(cfg.OS); err != nil {
		return err
	}
	f.diffIDs = map[digest.Digest][]digest.Digest{}
	for i, l := range m.Layers {
		d := digest.Digest(l.Digest.String())
		f.diffIDs[d] = append(f.diffIDs[d], cfg.RootFS.DiffIDs[i])
	}
	var todo, stored []v1.Descriptor
	seen := map[v1.Hash]bool{}
	for _, l := range m.Layers {
		if seen[l.Digest] {
			continue // the same blob twice in one image: fetched once
		}
		seen[l.Digest] = true
		id := shortID(digest.Digest(l.Digest.String()))
		if f.st.Has(digest.Digest(l.Digest.String())) {
			f.progress.Layer(id, StatusAlreadyExists, 0, 0)
			stored = append(stored, l)
			continue
		}
		f.progress.Layer(id, StatusPullingFSLayer, 0, l.Size)
		todo = append(todo, l)
	}
	for _, l := range todo[min(len(todo), maxDownloads):] {
		f.progress.Layer(shortID(digest.Digest(l.Digest.String())), StatusWaiting, 0, l.Size)
	}
	if err := f.fetchLayers(ctx, todo, stored); err != nil {
		return err
	}

	if _, _, err := f.st.Put(ctx, bytes.NewReader(rawCfg), cd); err != nil {
		return fmt.Errorf("store config %s: %w", m.Config.Digest, err)
	}
	rawManifest, err := f.img.RawManifest()
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	md, err := f.img.Digest()
	if err != nil {
		return err
	}
	if _, _, err := f.st.Put(ctx, bytes.NewReader(rawManifest), digest.Digest(md.String())); err != nil {
		return fmt.Errorf("store manifest %s: %w", md, err)
	}
	return nil
}

// fetchLayers downloads and checks todo and checks stored (when f.checkStored),
// then commits the downloads; on any failure it discards them all and returns the
// first failure.
func (f *layerFetch) fetchLayers(ctx context.Context, todo, stored []v1.Descriptor) error {
	var g errgroup.Group
	g.SetLimit(maxDownloads)
	run := func(fn func() error) {
		g.Go(func() error {
			err := fn()
			if err != nil {
				f.cancel(err) // the first cause wins; the others end with context.Canceled
			}
			return err
		})
	}
	for _, l := range todo {
		if ctx.Err() != nil {
			break
		}
		run(func() error { return f.fetchLayer(ctx, l) })
	}
	if f.check != nil && f.checkStored {
		// after the downloads, so that they never wait for a local read
		for _, l := range stored {
			if ctx.Err() != nil {
				break
			}
			run(func() error { return f.checkStoredLayer(ctx, l) })
		}
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause // the first layer's error, not a cancelled neighbour's
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			f.discard() // a hostile image leaves nothing behind
		} else {
			// A network error, a bad blob: the layers that arrived whole and
			// passed are the image's own and stay, so that a retry skips them.
			f.commitStaged()
		}
		return err
	}
	for i, b := range f.staged {
		if err := b.Commit(); err != nil {
			for _, rest := range f.staged[i+1:] {
				rest.Discard()
			}
			return fmt.Errorf("store layer %s: %w", b.Digest(), err)
		}
	}
	return nil
}

// refusedError is a layer the check refused, or whose content is not what the
// config's diff_ids say.
type refusedError struct {
	layer digest.Digest
	err   error
}

func (e *refusedError) Error() string { return fmt.Sprintf("layer %s: %v", e.layer, e.err) }
func (e *refusedError) Unwrap() error { return e.err }

// commitStaged makes the staged layers visible, best effort.
func (f *layerFetch) commitStaged() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.staged {
		if b.Commit() != nil {
			b.Discard()
		}
	}
	f.staged = nil
}

func (f *layerFetch) discard() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.staged {
		b.Discard()
	}
	f.staged = nil
}

// learnSize keeps the content size lc counted, if it knows one, under its diffID.
func (f *layerFetch) learnSize(lc *blobstore.LayerCheck) {
	n, ok := lc.ContentSize()
	if !ok {
		return // LayerSizes counts it from the blob
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sizes == nil {
		f.sizes = map[digest.Digest]int64{}
	}
	f.sizes[lc.DiffID()] = n
}

// matchDiffID refuses layer d unless got, its uncompressed digest, is the config's
// diff_id at each of its places in the image.
func (f *layerFetch) matchDiffID(d, got digest.Digest) error {
	for _, want := range f.diffIDs[d] {
		if got != want {
			return &refusedError{d, fmt.Errorf("%w: uncompressed content is %s, config diff_id is %s", blobstore.ErrDigestMismatch, got, want)}
		}
	}
	return nil
}

// maxDownloadAttempts is docker's default max-download-attempts: a layer whose
// body breaks off (a dropped connection, a reset) is resumed where it broke off
// (resume.go), or downloaded again from its start where it cannot be, up to
// that many times in all, a second more apart each time.
const maxDownloadAttempts = 5

// retryDelay is the wait before a layer's second download, then twice it, and
// so on (a variable for tests).
var retryDelay = time.Second

// fetchLayer downloads layer l into a staged blob, checking it and learning its
// diffID on the way. A download whose body breaks off, and cannot be resumed,
// is tried again: one dropped connection failed the whole pull (review
// rev21-reg, finding 2), where docker retries.
func (f *layerFetch) fetchLayer(ctx context.Context, l v1.Descriptor) error {
	for attempt := 1; ; attempt++ {
		again, err := f.fetchLayerOnce(ctx, l)
		if !again || attempt == maxDownloadAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(time.Duration(attempt) * retryDelay):
		}
	}
}

// bodyReader records the error a read of a download's body ended with.
type bodyReader struct {
	io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// fetchLayerOnce is one attempt of fetchLayer; again reports that its error
// was the body breaking off, for which another attempt may do.
func (f *layerFetch) fetchLayerOnce(ctx context.Context, l v1.Descriptor) (again bool, _ error) {
	d := digest.Digest(l.Digest.String())
	id := shortID(d)
	var rc io.ReadCloser
	from := "" // where a foreign layer came from: "" for the registry
	if foreign(l) {
		var err error
		if rc, from, err = f.openForeign(ctx, l); err != nil {
			return false, err
		}
	} else {
		rl, err := f.img.LayerByDigest(l.Digest)
		if err != nil {
			return false, fmt.Errorf("layer %s: %w", d, err)
		}
		if rc, err = rl.Compressed(); err != nil {
			return false, fmt.Errorf("download layer %s: %w", d, classify(err))
		}
	}
	defer rc.Close()
	body := &bodyReader{Reader: rc}
	var r io.Reader = &countingReader{r: body, fn: func(n int64) { f.progress.Layer(id, StatusDownloading, n, l.Size) }}
	lc := blobstore.NewLayerCheck(string(l.MediaType), f.check)
	b, err := f.st.Stage(ctx, io.TeeReader(r, lc), d)
	verdict := lc.Close()
	if err != nil {
		// the digest first: a blob damaged on the way is not the image's fault
		if errors.Is(err, blobstore.ErrDigestMismatch) || strings.Contains(err.Error(), "verifying sha256 checksum") {
			if from != "" {
				return false, fmt.Errorf("layer %s from %s: %w", d, from, blobstore.ErrDigestMismatch)
			}
			return false, fmt.Errorf("layer %s: %w", d, blobstore.ErrDigestMismatch)
		}
		if ctx.Err() != nil {
			return false, context.Cause(ctx)
		}
		// a body that broke off is downloaded again, unless it was resumed
		// as often as a layer is tried already (resume.go)
		again := body.err != nil && !errors.Is(body.err, errResumesSpent)
		if from != "" {
			return again, fmt.Errorf("download layer %s from %s: %w", d, from, oneLine(err))
		}
		return again, fmt.Errorf("download layer %s: %w", d, oneLine(err))
	}
	if verdict != nil {
		b.Discard()
		return false, &refusedError{d, verdict}
	}
	if err := f.matchDiffID(d, lc.DiffID()); err != nil {
		b.Discard()
		return false, err
	}
	f.mu.Lock()
	f.staged = append(f.staged, b)
	f.mu.Unlock()
	f.learnSize(lc)
	f.progress.Layer(id, StatusVerifying, 0, 0)
	f.progress.Layer(id, StatusDownloaded, 0, 0)
	f.progress.Layer(id, StatusPullComplete, 0, 0)
	return false, nil
}

// checkStoredLayer reads layer l back from the store, checks it, matches its
// diffID and learns its size.
func (f *layerFetch) checkStoredLayer(ctx context.Context, l v1.Descriptor) error {
	d := digest.Digest(l.Digest.String())
	rc, err := f.st.Open(d)
	if err != nil {
		return fmt.Errorf("open layer %s: %w", d, err)
	}
	defer rc.Close()
	lc := blobstore.NewLayerCheck(string(l.MediaType), f.check)
	_, err = io.Copy(lc, ctxReader{ctx, rc})
	verdict := lc.Close()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err != nil {
		// a stored blob that does not read back whole is no layer to vouch for
		return &refusedError{d, err}
	}
	if verdict != nil {
		return &refusedError{d, verdict}
	}
	if err := f.matchDiffID(d, lc.DiffID()); err != nil {
		return err
	}
	f.learnSize(lc)
	return nil
}
