// Package blobstore keeps container images in one OCI image layout on disk
// (<root>/store: oci-layout, index.json, blobs/sha256/), readable as it is by skopeo
// (`oci:<root>/store:<ref>`) and umoci.
//
// # Blobs
//
// Put streams a blob into a temp file inside the store, hashing while copying, then
// fsyncs it, renames it to blobs/sha256/<hex> and fsyncs the directory. Put is
// idempotent and safe to call concurrently, from any number of processes, for the
// same or different blobs. Open returns a reader that checks digest and size at EOF
// and returns ErrDigestMismatch instead of io.EOF when they differ. Stage is Put
// split in two, for writers that must see several blobs through before any becomes
// visible (pull): the verified temp file stays until Commit renames it or Discard
// removes it.
//
// # Layers
//
// Layer blobs are stored as they came: uncompressed tar, tar+gzip or tar+zstd, with
// the matching OCI or Docker media type. AppendLayer makes a new layer from a tar
// stream in one pass (diffID and compressed blob together); OpenLayer gives the
// uncompressed tar stream of any stored layer. Load never re-compresses a layer, so a
// docker-archive layer keeps its digest.
// LayerCheck runs a layer check on a blob's uncompressed content while the blob
// streams by, decompressing as OpenLayer does, and hashes that content: the
// layer's diffID, which pull matches against the config's diff_ids.
//
// # Images and tags
//
// index.json is the list of images. Each tag is one descriptor whose
// org.opencontainers.image.ref.name annotation holds the full normalised reference
// (docker.io/library/busybox:latest); an image without tags stays in index.json as
// one descriptor without the annotation (docker's <none>). An image's ID is its
// config digest, as in docker, and there is one image per ID: load and WriteImage
// put the tags of an image the store has under another manifest (other layer
// compression) on that one, Images lists an ID's extra manifests (pull's, or an
// older store's) as one image, and rmi removes them together (image_id.go). A
// manifest's org.opencontainers.image.base.digest
// annotation names its parent image (set by commit), which gives docker's child
// image rules in rmi.
//
// # Load and save
//
// Load reads docker-archive (classic <id>/layer.tar and docker 25+'s embedded OCI
// layout) and OCI archives, each possibly gzip-, zstd-, bzip2- or xz-compressed
// (xz through xz(1), as docker does) as a whole, in one streamed pass: each file
// is spooled by content hash into tmp/ (compressed files are also decompressed on
// the fly to learn their diffID), then the manifests
// are checked, and only then are the named blobs renamed into blobs/ and index.json
// replaced once. Decisions:
//   - layers are never re-compressed: a docker-archive layer.tar stays an
//     uncompressed blob (media type application/vnd.oci.image.layer.v1.tar), so its
//     digest equals its diffID and skopeo copies keep it;
//   - a classic docker-archive has no manifest: one is made (OCI media types,
//     sniffed layer compression, no annotations), deterministically; a docker-archive
//     with an embedded OCI layout keeps its manifest as is;
//   - archives must be self-contained: a manifest naming a blob that is not in the
//     archive is refused even if the store has it (ErrMissingBlob);
//   - an image whose ID the store has (whole) under another manifest keeps that
//     manifest: the load only moves tags, and the blobs only the new manifest
//     named are taken out again;
//   - every blobs/sha256/<hex> entry is checked against its name whatever its
//     type (a symlink or hard link must lead to content of that digest), every
//     blob taken by digest is checked again, every layer's
//     uncompressed digest against the config's diff_ids, every entry name for
//     absolute paths and "..", symlinks for escapes; sparse entries are refused.
//
// Save writes the stored blobs unchanged into a docker-archive (manifest.json beside
// an OCI layout, as docker 25+ does; loadable by docker, podman and skopeo) or an OCI
// archive, with sorted entries and fixed headers, so the same images give the same
// bytes, and load(save(x)) keeps manifest and config digests.
//
// # Concurrency and crash safety
//
// The store keeps its private files under <store>/.layerfs/:
//
//	index.lock  flock held exclusively by every read-modify-write of index.json;
//	            index.json is replaced atomically (temp, fsync, rename, dir fsync),
//	            so readers never take a lock and never see a partial file.
//	gc.lock     flock held shared by every operation that writes blobs before it
//	            records them (Put, load, WriteImage, or a caller's Lease), and
//	            exclusively by GC, so GC never deletes a blob that is about to be
//	            named in index.json, and every blob or load temp file in tmp/ is
//	            garbage while GC runs.
//	tmp/        temp files of blobs being written and of loads being spooled, and
//	            of index.json and the other metadata files being replaced (file-*:
//	            their writers hold no Lease, so GC removes these only once they are
//	            10 minutes old). A process killed mid-write leaves files here and
//	            maybe unreferenced blobs; nothing in index.json changes, and GC
//	            removes them. A load holds an flock on its spool dir (load-*), and
//	            each load removes the spools older than 5 minutes nobody holds.
//	registry.json (+ registry.lock)  repo digests and blob sources of pulls and
//	            pushes (registry_meta.go).
//	layersizes.json (+ layersizes.lock)  docker's content size of each layer by
//	            diffID, recorded by AppendLayer, load and pull, counted once from
//	            the blob otherwise; GC forgets unreachable ones (layersize.go).
//	            Both files are metadata: replaced whole under their flock; losing
//	            one loses nothing an image needs.
//
// A Store remembers, per manifest digest, the ID, parent and creation time of each
// image it has read (they follow from the digest, whatever happens to the blobs
// later). Remove resolves its argument and looks for child images through these
// and a fresh read of index.json, and reads the blobs only of the images it acts
// on and of the children it finds, so an rmi or image prune of many images reads
// each manifest and config about once. Each write still decides from index.json
// as read under index.lock.
//
// No method holds index.lock while it waits for gc.lock, so the two never deadlock.
// A Lease (shared gc.lock) may be held across any store calls except GC, which
// would wait for it forever.
package blobstore
