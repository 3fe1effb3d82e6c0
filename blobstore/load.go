package blobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// annotationContainerdName is the full image name docker and containerd put on OCI
// index entries.
const annotationContainerdName = "io.containerd.image.name"

// LoadOptions are load's knobs.
type LoadOptions struct {
	Tag      string   // names images that the archive leaves untagged (--tag)
	Progress Progress // nil: none
	// CheckLayer, if set, reads a layer's uncompressed tar to its end and says
	// whether it can be unpacked (mountcmd passes cow.CheckLayer): a load with a
	// layer it refuses fails, as docker load fails on a layer it cannot extract.
	// It runs on every file as it is spooled; only layers' verdicts count.
	CheckLayer func(io.Reader) error
	// Name is what the input is called (a file name), for the error of an input
	// that is not an archive at all; "" names none.
	Name string
	// Roots, if set, lists the manifests working containers use (GCWith's roots):
	// a failed load does not take out again a blob it placed that one of them
	// names. Called under the GC lock.
	Roots func() ([]digest.Digest, error)
}

// Loaded is one image a load recorded.
type Loaded struct {
	Image *Image
	Tags  []string                 // normalised tags it got from this load
	Moved map[string]digest.Digest // tag -> ID of the image that had it before
}

// loadItem is one image found in an archive, before anything is committed.
type loadItem struct {
	manifest []byte // manifest bytes (from the archive, or made here)
	mdesc    ocispec.Descriptor
	m        ocispec.Manifest
	tags     []string
}

// Load reads a docker-archive (classic <id>/layer.tar layout or the newer one with
// an embedded OCI layout) or an OCI archive from r, either possibly gzip- or
// zstd-compressed as a whole, and records its images. The archive is streamed once:
// every file is spooled by content hash into the store's temp area as it passes
// (layers are never held in memory); when the archive ends, its manifests are
// checked (digests, diffIDs, media types, config JSON, missing blobs, entry names)
// and only then are the blobs they name moved into the store and index.json updated
// in one atomic replace. Any error leaves index.json as it was, and the blobs the
// load moved in are taken out again (while another writer holds a Lease they stay
// for GC instead; see load_cleanup.go). Layer blobs are kept exactly as in the
// archive (never re-compressed), so their digests survive.
func (s *Store) Load(ctx context.Context, r io.Reader, opts LoadOptions) (_ []Loaded, err error) {
	defer func() { err = s.noSpace(err) }()
	var extraTag string
	if opts.Tag != "" {
		n, err := ParseTag(opts.Tag)
		if err != nil {
			return nil, err
		}
		extraTag = n.String()
	}
	lease, err := s.Lease(ctx)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	release := func() { once.Do(lease) }
	defer release()
	s.removeStaleSpools()
	dir, removeSpool, err := s.newSpoolDir()
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer removeSpool()

	// an input that is no archive at all is named, as import names its file
	input := "load"
	if opts.Name != "" {
		input += " " + opts.Name
	}
	dr, _, closeDec, err := autoDecompress(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", input, ErrInvalidArchive, err)
	}
	defer closeDec()
	sp, err := readSpool(ctx, dr, dir, opts.Progress, opts.CheckLayer)
	var notTar *notTarError
	if errors.As(err, &notTar) {
		return nil, fmt.Errorf("%s: %w", input, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", input, err)
	}
	if err := sp.checkBlobNames(); err != nil {
		return nil, fmt.Errorf("%s: %w", input, err)
	}
	var items []*loadItem
	if _, err := sp.lookup("manifest.json"); err == nil {
		items, err = s.dockerItems(sp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", input, err)
		}
	} else if _, err := sp.lookup("index.json"); err == nil {
		items, err = s.ociItems(sp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", input, err)
		}
	} else {
		return nil, fmt.Errorf("%s: %w: no manifest.json or index.json", input, ErrInvalidArchive)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: %w: no images", input, ErrInvalidArchive)
	}
	if extraTag != "" {
		var untagged []*loadItem
		for _, it := range items {
			if len(it.tags) == 0 {
				untagged = append(untagged, it)
			}
		}
		if len(untagged) != 1 {
			return nil, fmt.Errorf("load: --tag needs exactly one untagged image in the archive, found %d", len(untagged))
		}
		untagged[0].tags = []string{extraTag}
	}
	loaded, placed, unused, err := s.commitLoad(ctx, sp, items)
	if err != nil {
		unused = placed
	}
	if len(unused) > 0 {
		release() // dropPlaced needs gc.lock to itself
		s.dropPlaced(unused, opts.Roots)
	}
	return loaded, err
}

// checkBlobNames verifies every blobs/sha256/<hex> entry against its content,
// whatever its type: a regular file must hash to its name, and a symlink or hard
// link must lead to a file that does (a link to another blob would store that
// blob's content under this digest).
func (sp *spool) checkBlobNames() error {
	var names []string
	for name := range sp.files {
		names = append(names, name)
	}
	for name := range sp.links {
		names = append(names, name)
	}
	sort.Strings(names) // the same archive always gives the same error
	for _, name := range names {
		hex, ok := strings.CutPrefix(name, "blobs/sha256/")
		if !ok || strings.Contains(hex, "/") {
			continue
		}
		want := digest.NewDigestFromEncoded(digest.SHA256, hex)
		if checkDigest(want) != nil {
			return fmt.Errorf("archive entry %q: %w", name, ErrInvalidDigest)
		}
		f, err := sp.lookup(name)
		if err != nil {
			return fmt.Errorf("blob %s: %w", want, err)
		}
		if f.digest == want {
			continue
		}
		if _, link := sp.links[name]; link {
			return fmt.Errorf("blob %s: %w (a link to %s)", want, ErrDigestMismatch, f.digest)
		}
		return fmt.Errorf("blob %s: %w (got %s)", want, ErrDigestMismatch, f.digest)
	}
	return nil
}

// blobIn finds a blob by digest in the archive (blobs/sha256/<hex>). Every blob a
// manifest names must be in the archive, even one the store already has: an
// archive that is not self-contained is refused (ErrMissingBlob). inStore is
// always false; it stays for callers that may one day accept store blobs.
func (s *Store) blobIn(sp *spool, d digest.Digest) (f *spooled, inStore bool, err error) { //nolint:unparam
	if err := checkDigest(d); err != nil {
		return nil, false, err
	}
	if f, err := sp.lookup("blobs/sha256/" + d.Encoded()); err == nil {
		// checkBlobNames has refused a mismatch already; a blob handed out
		// under the wrong digest would be stored under it, so check again here.
		if f.digest != d {
			return nil, false, fmt.Errorf("blob %s: %w (got %s)", d, ErrDigestMismatch, f.digest)
		}
		return f, false, nil
	}
	return nil, false, fmt.Errorf("%w %s: not in the archive", ErrMissingBlob, d)
}

// checkConfigLayers reads and checks a config, its os, and its layers' diffIDs.
// name is what the archive calls the image (a tag, else the config digest), for
// the error of an image made for another OS, which is checked first as docker
// does (a Windows layer may well pass the layer check).
func checkConfigLayers(cb []byte, cd digest.Digest, layers []*spooled, name string) (ocispec.Image, error) {
	c, err := ParseConfig(cb, cd, len(layers))
	if err != nil {
		return c, err
	}
	if err := CheckOS(c.OS); err != nil {
		return c, fmt.Errorf("image %s: %w", name, err)
	}
	for i, l := range layers {
		if l.diffID == "" {
			return c, fmt.Errorf("layer %s: %w: its %s stream does not decompress", l.digest, ErrDigestMismatch, l.comp)
		}
		if l.diffID != c.RootFS.DiffIDs[i] {
			return c, fmt.Errorf("layer %s: %w: uncompressed content is %s, config diff_id is %s", l.digest, ErrDigestMismatch, l.diffID, c.RootFS.DiffIDs[i])
		}
		if l.checkErr != nil {
			return c, fmt.Errorf("layer %s: %w", l.digest, l.checkErr)
		}
	}
	return c, nil
}

// dockerManifestEntry is one element of a docker-archive's manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *Store) dockerItems(sp *spool) ([]*loadItem, error) {
	mf, _ := sp.lookup("manifest.json")
	b, err := sp.read(mf, "manifest.json")
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("manifest.json: %w: %v", ErrInvalidArchive, err)
	}
	embedded := sp.embeddedManifests()
	var items []*loadItem
	for _, e := range entries {
		cf, err := sp.lookup(e.Config)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		// classic archives name the config <hex>.json, new ones blobs/sha256/<hex>.
		base := strings.TrimSuffix(e.Config[strings.LastIndex(e.Config, "/")+1:], ".json")
		if want := digest.NewDigestFromEncoded(digest.SHA256, base); checkDigest(want) == nil && want != cf.digest {
			return nil, fmt.Errorf("config %s: %w (got %s)", want, ErrDigestMismatch, cf.digest)
		}
		cb, err := sp.read(cf, e.Config)
		if err != nil {
			return nil, err
		}
		var layers []*spooled
		for _, lp := range e.Layers {
			lf, err := sp.lookup(lp)
			if err != nil {
				return nil, fmt.Errorf("layer: %w", err)
			}
			layers = append(layers, lf)
		}
		name := cf.digest.String()
		if len(e.RepoTags) > 0 {
			name = e.RepoTags[0]
		}
		if _, err := checkConfigLayers(cb, cf.digest, layers, name); err != nil {
			return nil, err
		}
		it := &loadItem{}
		for _, t := range e.RepoTags {
			// docker load takes only name:tag here ("invalid tag" otherwise),
			// where a tag given by a user defaults to latest
			if n, err := reference.ParseNormalizedNamed(t); err == nil {
				if _, ok := n.(reference.NamedTagged); !ok {
					return nil, fmt.Errorf("%w %q: invalid tag in manifest.json", ErrInvalidReference, t)
				}
			}
			n, err := ParseTag(t)
			if err != nil {
				return nil, err
			}
			it.tags = append(it.tags, n.String())
		}
		// The newer layout also carries the original manifest: keep its digest.
		for _, em := range embedded {
			if sameImage(em.m, cf, layers) {
				it.manifest, it.mdesc, it.m = em.b, em.desc, em.m
				break
			}
		}
		if it.manifest == nil {
			m := ocispec.Manifest{
				MediaType: ocispec.MediaTypeImageManifest,
				Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cf.digest, Size: cf.size},
				Layers:    []ocispec.Descriptor{},
			}
			m.SchemaVersion = 2
			for _, l := range layers {
				m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: LayerMediaType(l.comp), Digest: l.digest, Size: l.size})
			}
			mb, err := json.Marshal(m)
			if err != nil {
				return nil, err
			}
			it.manifest, it.m = mb, m
			it.mdesc = ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
		}
		items = append(items, it)
	}
	return items, nil
}

type embeddedManifest struct {
	b    []byte
	desc ocispec.Descriptor
	m    ocispec.Manifest
}

// embeddedManifests are the manifests of an OCI layout inside a docker-archive;
// anything unreadable there is ignored (manifest.json is what docker loads).
func (sp *spool) embeddedManifests() []embeddedManifest {
	f, err := sp.lookup("index.json")
	if err != nil {
		return nil
	}
	b, err := sp.read(f, "index.json")
	if err != nil {
		return nil
	}
	var idx ocispec.Index
	if json.Unmarshal(b, &idx) != nil {
		return nil
	}
	var out []embeddedManifest
	for _, d := range idx.Manifests {
		mf, err := sp.lookup("blobs/sha256/" + d.Digest.Encoded())
		if err != nil || checkDigest(d.Digest) != nil || mf.digest != d.Digest {
			continue
		}
		mb, err := sp.read(mf, "blobs/sha256/"+d.Digest.Encoded())
		if err != nil {
			continue
		}
		m, err := parseManifest(mb, d.Digest)
		if err != nil {
			continue
		}
		out = append(out, embeddedManifest{b: mb, desc: ocispec.Descriptor{MediaType: mediaTypeOr(d.MediaType, m.MediaType), Digest: d.Digest, Size: int64(len(mb))}, m: m})
	}
	return out
}

func mediaTypeOr(a, b string) string {
	if a != "" {
		return a
	}
	if b != "" {
		return b
	}
	return ocispec.MediaTypeImageManifest
}

// sameImage reports whether the embedded manifest m describes the image
// manifest.json names (config cf, layers): same blobs, and descriptors true to
// them (sizes, layer compression), or the store would keep a manifest that
// misdescribes its blobs.
func sameImage(m ocispec.Manifest, cf *spooled, layers []*spooled) bool {
	if m.Config.Digest != cf.digest || m.Config.Size != cf.size || len(m.Layers) != len(layers) {
		return false
	}
	for i, l := range layers {
		if m.Layers[i].Digest != l.digest || checkLayerDesc(m.Layers[i], l) != nil {
			return false
		}
	}
	return true
}

// checkLayerDesc refuses a manifest's layer descriptor that misdescribes the
// blob: its size, or a compression other than the content's (a mount
// decompresses a layer by its media type; load hashed it by its content).
func checkLayerDesc(l ocispec.Descriptor, f *spooled) error {
	if f.size != l.Size {
		return fmt.Errorf("layer %s: %w: size %d, manifest says %d", l.Digest, ErrDigestMismatch, f.size, l.Size)
	}
	if c, _ := LayerCompression(l.MediaType); c != f.comp {
		return fmt.Errorf("layer %s: %w: media type %s, content compressed with %s", l.Digest, ErrInvalidManifest, l.MediaType, f.comp)
	}
	return nil
}

// commitLoad moves the blobs the items need into the store and records the items
// in index.json in one replace. placed are the blobs it renamed into blobs/ itself
// (also on error): not those the store had, nor those another writer placed first.
// An item whose image ID index.json lists already under another manifest gets its
// tags there (see One image per ID in image_id.go); unused are the placed blobs
// that only such items named, for the caller to take out again.
func (s *Store) commitLoad(ctx context.Context, sp *spool, items []*loadItem) (_ []Loaded, placed, unused []digest.Digest, _ error) {
	// Check everything before the first write: each manifest's bytes hash to the
	// digest it is recorded under, and each blob it names is in the spool (whose
	// files are named by their content hash) or in the store already.
	need := map[digest.Digest]bool{}
	for _, it := range items {
		if got := digest.FromBytes(it.manifest); got != it.mdesc.Digest {
			return nil, placed, nil, fmt.Errorf("load: manifest %s: %w (got %s)", it.mdesc.Digest, ErrDigestMismatch, got)
		}
		need[it.mdesc.Digest] = true
		need[it.m.Config.Digest] = true
		for _, l := range it.m.Layers {
			need[l.Digest] = true
		}
	}
	for _, it := range items {
		if err := os.WriteFile(sp.path(it.mdesc.Digest), it.manifest, 0o644); err != nil {
			return nil, placed, nil, fmt.Errorf("load: %w", err)
		}
	}
	for d := range need {
		if _, err := os.Stat(sp.path(d)); err != nil && !s.Has(d) {
			return nil, placed, nil, fmt.Errorf("load: %w %s: not in the archive", ErrMissingBlob, d)
		}
	}
	// read before any blob is placed: an entry it does not list was recorded
	// while this load placed its blobs (see newEntryIDs)
	before := s.indexDigests()
	for d := range need {
		p := sp.path(d)
		repair := false
		if s.Has(d) {
			// A stored blob whose size is not the archive's verified copy's was
			// damaged from outside (truncated, say): the copy takes its place.
			if repair = sizeDiffers(s.BlobPath(d), p); !repair {
				continue
			}
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, placed, nil, fmt.Errorf("load: blob %s: %w", d, err)
		}
		// spool files are 0600 (CreateTemp) and manifests follow the umask;
		// blobs are 0644 like those Put writes
		err = f.Chmod(0o644)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err != nil {
			return nil, placed, nil, fmt.Errorf("load: blob %s: %w", d, err)
		}
		if loadPlaceHook != nil {
			loadPlaceHook(d)
		}
		if repair {
			if err := s.replaceBlob(p, d); err != nil {
				return nil, placed, nil, fmt.Errorf("load: %w", err)
			}
			continue // the store had d: not this load's to take out again
		}
		// only a blob this load renamed in is its to take out again: one another
		// writer placed meanwhile may be named by that writer's work
		moved, err := s.placeBlob(p, d)
		if moved {
			placed = append(placed, d)
		}
		if err != nil {
			return nil, placed, nil, fmt.Errorf("load: %w", err)
		}
	}
	out := make([]Loaded, len(items))
	target := make([]digest.Digest, len(items)) // the manifest each item is recorded as
	if sameIDCommitHook != nil {
		sameIDCommitHook()
	}
	adding, err := s.addingRef(ctx)
	if err != nil {
		return nil, placed, nil, fmt.Errorf("load: %w", err)
	}
	defer adding()
	err = s.updateIndex(ctx, func(idx *ocispec.Index) (bool, error) {
		// Only an image whose manifest index.json does not list, and whose config
		// the store had or another writer recorded meanwhile (newEntryIDs), may be
		// listed under another manifest: look for those only (each look reads
		// every manifest of the store). Judged on the index.json read under the
		// lock, so two loads of one ID record one manifest.
		listed := map[digest.Digest]bool{}
		for _, e := range idx.Manifests {
			listed[e.Digest] = true
		}
		ids := map[digest.Digest]bool{}
		var recent map[digest.Digest]bool
		for _, it := range items {
			c := it.m.Config.Digest
			if listed[it.mdesc.Digest] {
				continue
			}
			if slices.Contains(placed, c) {
				if recent == nil {
					recent = s.newEntryIDs(idx, before)
				}
				if !recent[c] {
					continue
				}
			}
			ids[c] = true
		}
		have := map[digest.Digest]sameIDEntry{}
		if len(ids) > 0 {
			have = s.sameIDEntries(idx, ids)
		}
		for i, it := range items {
			desc := ocispec.Descriptor{MediaType: it.mdesc.MediaType, Digest: it.mdesc.Digest, Size: it.mdesc.Size}
			target[i] = it.mdesc.Digest
			if e, ok := have[it.m.Config.Digest]; ok {
				desc, target[i] = e.desc, e.manifest
			} else { // a later item of this ID joins this one
				have[it.m.Config.Digest] = sameIDEntry{desc: desc, manifest: it.mdesc.Digest}
			}
			moved := setTags(idx, desc, it.tags)
			out[i] = Loaded{Tags: it.tags, Moved: map[string]digest.Digest{}}
			for t, prev := range moved {
				if prevImg, err := s.loadImage(ocispec.Descriptor{Digest: prev}); err == nil && prevImg.ID != it.m.Config.Digest {
					out[i].Moved[t] = prevImg.ID
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, placed, nil, fmt.Errorf("load: %w", err)
	}
	unused = unusedBlobs(items, target, placed)
	sizes := map[digest.Digest]int64{}
	for _, f := range sp.files {
		if f.content >= 0 {
			sizes[f.diffID] = f.content
		}
	}
	// best effort: LayerSizes counts a layer without a record from its blob
	_ = s.recordLayerSizes(ctx, sizes)
	// one read of index.json for all the items, and of only their blobs: a reload
	// per item would read every image of the store per item
	want := make(map[digest.Digest]bool, len(items))
	for _, d := range target {
		want[d] = true
	}
	imgs, broken, err := s.imagesAndBroken(func(d digest.Digest) bool { return want[d] }, s.loadImage)
	if err != nil {
		return nil, placed, nil, fmt.Errorf("load: %w", err)
	}
	byDigest := make(map[digest.Digest]*Image, len(imgs))
	for _, img := range imgs {
		byDigest[img.ManifestDigest] = img
	}
	for i := range items {
		img := byDigest[target[i]]
		if img == nil {
			_, err := pick(nil, broken, target[i]) // why it is not there
			return nil, placed, nil, fmt.Errorf("load: %w", err)
		}
		out[i].Image = img
	}
	return out, placed, unused, nil
}

// unusedBlobs are the blobs of placed that only items recorded under another
// manifest (target[i] is not their own) name.
func unusedBlobs(items []*loadItem, target, placed []digest.Digest) []digest.Digest {
	used := map[digest.Digest]bool{}
	folded := false
	for i, it := range items {
		if target[i] != it.mdesc.Digest {
			folded = true
			continue
		}
		used[it.mdesc.Digest], used[it.m.Config.Digest] = true, true
		for _, l := range it.m.Layers {
			used[l.Digest] = true
		}
	}
	if !folded {
		return nil
	}
	var out []digest.Digest
	for _, d := range placed {
		if !used[d] {
			out = append(out, d)
		}
	}
	return out
}
