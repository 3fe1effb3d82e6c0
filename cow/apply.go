package cow

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Apply unpacks the uncompressed layer tar r into dir, which must exist and be
// empty, and returns the layer's diffID: the sha256 of the whole stream, which it
// reads to EOF (trailing padding included) even after the end-of-archive marker.
//
// Whiteouts stay what they are in a layer tar: ".wh.<name>" files and ".wh..wh..opq"
// markers are created as plain (empty) files, the OCI encoding the union fs reads.
// A whiteout longer than NAME_MAX (of a 252-255-byte name) cannot be a file: it
// becomes a 0/0 device named <name> (whiteout.go, Long names), unless this tar has
// an entry of that name, which hides the lower one by itself.
//
// Every tar is hostile. Each entry is checked before anything is written for it:
// ".." escapes, entries below a symlink or a non-directory, and hard links to
// anything but a non-directory the same tar created are refused with an error
// wrapping ErrUnsafePath ("apply etc/passwd: ..."); an absolute name is taken
// relative to dir (cleanName). All writes go through directory fds resolved
// inside dir with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS) (an O_NOFOLLOW walk
// on old kernels); an entry replacing a symlink replaces the link and never
// writes through it. Private xattrs (trusted/user.overlay.*,
// trusted/user.layerfs.*: IsPrivateXattr) in the tar are dropped so a layer cannot
// forge overlay or layerfs metadata, with a warning naming them (a layer another
// tool made from an overlay upper dir may carry user.overlay.opaque; umoci keeps it
// as data, kernel overlayfs would escape it).
//
// Restored: data (zero runs of 4 KiB and more become holes, so sparse files stay
// sparse whatever the tar's encoding), mode including setuid/setgid/sticky, owner
// (as root; unprivileged, a chown that fails with EPERM is skipped), xattrs from PAX
// SCHILY.xattr.* records (security.capability included; an empty value is an empty
// xattr, as GNU tar and containerd restore it, but no capability), mtime and atime
// (directories last, deepest first), devices, fifos, symlinks, hard links. Like Docker, an xattr
// the filesystem does not support (ENOTSUP) is skipped. Unprivileged, device nodes
// and xattrs that need privilege are skipped, as umoci and rootless tools do.
//
// On error dir holds a partial unpack: the caller removes it (LayerCache does).
// Apply syncs nothing (LayerCache syncs the filesystem once before its rename).
// Apply is safe to run concurrently on different dirs.
func Apply(ctx context.Context, dir string, r io.Reader) (digest.Digest, error) {
	h := sha256.New()
	tee := io.TeeReader(bufio.NewReaderSize(r, 1<<20), h)
	a, err := newApplier(dir)
	if err != nil {
		return "", err
	}
	defer a.close()
	cr := &CountingReader{R: tee}
	tr := tar.NewReader(cr)
	data := &holeGuard{tr: tr, in: &cr.N}
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("apply: read layer tar: %w", err)
		}
		if err := a.entry(hdr, data); err != nil {
			return "", &EntryError{"apply", hdr.Name, err}
		}
	}
	if err := a.finish(); err != nil {
		return "", err
	}
	if _, err := io.CopyBuffer(io.Discard, tee, a.buf); err != nil {
		return "", fmt.Errorf("apply: read layer tar: %w", err)
	}
	d := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	if a.dropped.n > 0 {
		warnDropped(d, &a.dropped)
	}
	if a.private.n > 0 {
		Warn(fmt.Sprintf("layer %s: xattrs the union keeps for its own markers are left out (mounts, export and commit lack them): %s",
			d.Encoded()[:12], &a.private))
	}
	return d, nil
}

// someNames keeps the first few names a warning lists, and counts the rest: a
// hostile layer of a million such entries costs no more memory than one.
type someNames struct {
	first []string
	n     int
}

const someNamesMax = 8

func (s *someNames) add(name string) {
	if s.n < someNamesMax {
		s.first = append(s.first, name)
	}
	s.n++
}

func (s *someNames) String() string {
	list := strings.Join(s.first, ", ")
	if s.n > len(s.first) {
		list += fmt.Sprintf(" and %d more", s.n-len(s.first))
	}
	return list
}

// Warn prints a warning line of the package (stderr by default).
var Warn = func(msg string) { fmt.Fprintln(os.Stderr, "WARNING: "+msg) }

// warnDropped says, in one line, which entries and xattrs of the layer diffID an
// unprivileged unpack could not make. They are left out of the layer dir, so
// mounts, export and commit (a rename of their dir too) lack them, as umoci's
// rootless mode warns at unpack; root keeps them. The rest of the layer is
// unpacked.
func warnDropped(diffID digest.Digest, dropped *someNames) {
	Warn(fmt.Sprintf("unprivileged unpack of layer %s leaves out what only root can make (mounts, export and commit lack it): %s",
		diffID.Encoded()[:12], dropped))
}

type entryKind uint8

const (
	kindDir entryKind = iota + 1
	kindSymlink
	kindOther
	// kindWhiteout is a long whiteout's device (HasLongWhiteout): not an entry of
	// the tar, so a later entry of its name or below it replaces it, and no hard
	// link may point at it.
	kindWhiteout
)

// tarModel is what a layer tar has created so far, by clean name: enough to refuse
// an entry before it touches disk (check).
type tarModel struct {
	seen map[string]entryKind // every path this tar created, by clean name
	// links counts the names of each file that hard links name (the file's
	// own included), by each of those names.
	links map[string]*int
}

func newTarModel() tarModel { return tarModel{seen: map[string]entryKind{".": kindDir}} }

// maxLinks is the most names one file may have: ext4's EXT4_LINK_MAX, the
// lowest of the usual store filesystems'. A layer with more hard links to one
// file was taken by import, load and pull, and then failed every mount with
// EMLINK (review rev22-scale: 200,000 links to one file); docker fails its load.
const maxLinks = 65000

// countLink records the entry p, which replaces whatever name p was, as a hard
// link to link (or, with link "", as no link), and refuses the link past
// maxLinks names of one file.
func (a *tarModel) countLink(p, link string) error {
	if n, ok := a.links[p]; ok {
		*n-- // p's old file loses a name
		delete(a.links, p)
	}
	if link == "" {
		return nil
	}
	if a.links == nil {
		a.links = map[string]*int{}
	}
	n, ok := a.links[link]
	if !ok {
		n = new(int)
		*n = 1
		a.links[link] = n
	}
	if *n >= maxLinks {
		return fmt.Errorf("%w: more than %d hard links to %s (ext4's limit)", ErrUnsupported, maxLinks, link)
	}
	*n++
	a.links[p] = n
	return nil
}

type applier struct {
	tarModel
	root int                    // O_PATH fd of the target dir
	dirs map[string]*tar.Header // directories whose metadata is set at the end
	// whited are the paths this tar whites out; one that is a directory of the
	// tar too is opaque (finish).
	whited   map[string]bool
	cacheDir string // the last parent dir resolved, and its fd
	cacheFd  int
	euid     int
	egid     int
	buf      []byte
	// dropped are the entries and xattrs an unprivileged unpack cannot make
	// (device nodes, security.capability, trusted.*), for Warn.
	dropped someNames
	// private are the overlay and layerfs xattrs of the layer, dropped (see
	// Apply), for Warn.
	private someNames
}

func newApplier(dir string) (*applier, error) {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("apply: open %s: %w", dir, err)
	}
	return &applier{
		tarModel: newTarModel(), root: root, dirs: map[string]*tar.Header{}, whited: map[string]bool{},
		cacheFd: -1, euid: os.Geteuid(), egid: os.Getegid(), buf: make([]byte, 1<<20),
	}, nil
}

func (a *applier) close() {
	a.dropCache()
	unix.Close(a.root)
}

func (a *applier) dropCache() {
	if a.cacheFd >= 0 {
		unix.Close(a.cacheFd)
	}
	a.cacheFd, a.cacheDir = -1, ""
}

// cleanName turns a tar name into a clean relative path ("." for the root), or
// refuses it. An absolute name ("/etc/x", as tar -P writes) is taken relative to
// the root, as docker, podman and umoci unpack it and GNU tar extracts it: only its
// leading slashes go, so a name that climbs above the root ("/../etc/x") is refused
// like "../etc/x". Hard-link targets go through here too: an absolute one names a
// path of the layer, as in docker's unpack.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnsafePath)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafePath)
	}
	rel := strings.TrimLeft(name, "/")
	if rel == "" {
		rel = "." // "/" is the root
	}
	p := path.Clean(rel)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%w: name escapes the root", ErrUnsafePath)
	}
	return p, nil
}

// checkParents refuses p when one of its ancestors is something other than a dir.
func (a *tarModel) checkParents(p string) error {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		switch a.seen[p[:i]] { // kindWhiteout: replaced by a dir
		case kindSymlink:
			return fmt.Errorf("%w: %s is a symlink", ErrUnsafePath, p[:i])
		case kindOther:
			return fmt.Errorf("%w: %s is not a directory", ErrUnsafePath, p[:i])
		}
	}
	return nil
}

// parent returns an fd of p's parent dir, creating missing ancestors (mode 0755).
// The fd belongs to the cache: callers do not close it.
func (a *applier) parent(p string) (int, error) {
	dir, _ := splitPath(p)
	if a.cacheFd >= 0 && a.cacheDir == dir {
		return a.cacheFd, nil
	}
	a.dropCache()
	if k, ok := a.seen[dir]; !ok || k == kindWhiteout {
		if err := a.mkdirAll(dir); err != nil {
			return -1, err
		}
	}
	fd, err := openDirIn(a.root, dir, unix.O_PATH)
	if err != nil {
		return -1, fmt.Errorf("open parent %s: %w", dir, err)
	}
	a.cacheDir, a.cacheFd = dir, fd
	return fd, nil
}

// mkdirAll makes the missing dirs of dir. Below the first one it makes, it goes
// on from an fd of the dir just made, not from the root: a chain of d new dirs
// cost d^2 component lookups before (an entry 2,500 dirs deep took 8 s).
func (a *applier) mkdirAll(dir string) error {
	comps := strings.Split(dir, "/")
	cur := "."
	fd := -1 // an O_PATH fd of cur, once it is a dir made here
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	for _, c := range comps {
		next := joinPath(cur, c)
		if k, ok := a.seen[next]; !ok || k == kindWhiteout {
			var err error
			if fd < 0 {
				if fd, err = openDirIn(a.root, cur, unix.O_PATH); err != nil {
					return fmt.Errorf("open parent %s: %w", cur, err)
				}
			}
			if ok {
				err = unix.Unlinkat(fd, c, 0)
			}
			if err == nil {
				err = unix.Mkdirat(fd, c, 0o755)
			}
			if err != nil {
				return fmt.Errorf("mkdir %s: %w", next, err)
			}
			a.seen[next] = kindDir
			// The dir just made, by its name in the dir fd is open on: no
			// symlink can be there (O_NOFOLLOW all the same).
			nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			unix.Close(fd)
			fd = nfd
			if err != nil {
				return fmt.Errorf("open %s: %w", next, err)
			}
		} else if fd >= 0 {
			unix.Close(fd) // (not after a dir made here; resolved from the root)
			fd = -1
		}
		cur = next
	}
	return nil
}

// forget drops p, of kind k, and everything below it from the model.
func (a *applier) forget(p string, k entryKind) {
	forgetIn(a.seen, p, k == kindDir)
	forgetIn(a.dirs, p, k == kindDir)
}

// forgetIn deletes p from m, and the paths below it if dir.
func forgetIn[V any](m map[string]V, p string, dir bool) {
	delete(m, p)
	if !dir {
		return
	}
	pre := p + "/"
	for k := range m {
		if strings.HasPrefix(k, pre) {
			delete(m, k)
		}
	}
}

// maxPath is the longest entry path a layer may hold: four times PATH_MAX. Past
// PATH_MAX docker's and containerd's unpacks fail (ENAMETOOLONG); a mount here
// makes such paths relative to open dirs, so a commit can write some.
const maxPath = 4 * unix.PathMax

// pathLen is the length of the path entry p stands for, as maxPath counts it: a
// whiteout's is its target's, an opaque marker's its dir's, so that whatever a
// layer may hold, a later layer may delete.
func pathLen(p string) int {
	p = strings.TrimSuffix(p, "/")
	dir, base := path.Split(p)
	switch {
	case base == OpaqueMarker:
		return len(strings.TrimSuffix(dir, "/"))
	case strings.HasPrefix(base, WhiteoutPrefix):
		return len(p) - len(WhiteoutPrefix)
	}
	return len(p)
}

// check refuses an entry that is unsafe or that this package cannot represent,
// given what the tar created before it. It returns the entry's clean name ("." for
// the root, which only a directory entry may name; "" for an entry that creates
// nothing) and, for a hard link, its target's.
func (a *tarModel) check(hdr *tar.Header) (p, link string, err error) {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return "", "", nil // PAX global header (git archive writes one): no file
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink,
		tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return "", "", fmt.Errorf("%w: tar entry type %q", ErrUnsupported, hdr.Typeflag)
	}
	p, err = cleanName(hdr.Name)
	if err != nil {
		return "", "", err
	}
	if pathLen(p) > maxPath {
		// Refused here, where CheckLayer sees it too: the unpack's model of the
		// tree keeps every ancestor's path, so a path of L bytes costs up to L^2
		// of memory and time (a 100 KB one, 50,000 dirs deep, took hours).
		return "", "", fmt.Errorf("%w: a path of %d bytes (at most %d)", ErrUnsupported, pathLen(p), maxPath)
	}
	if err := CheckOwner(hdr); err != nil {
		return "", "", err
	}
	comps := strings.Split(p, "/")
	for i, c := range comps {
		if len(c) > nameMax && !(i == len(comps)-1 && isLongWhiteout(c)) {
			return "", "", fmt.Errorf("%w: a name longer than 255 bytes", ErrUnsupported)
		}
	}
	if p == "." {
		if hdr.Typeflag != tar.TypeDir {
			return "", "", fmt.Errorf("%w: entry replaces the root dir", ErrUnsafePath)
		}
		return p, "", checkXattrs(hdr)
	}
	if err := a.checkParents(p); err != nil {
		return "", "", err
	}
	if hdr.Typeflag != tar.TypeLink { // a hard link's records are not applied
		if err := checkXattrs(hdr); err != nil {
			return "", "", err
		}
	}
	if hdr.Typeflag == tar.TypeSymlink && (hdr.Linkname == "" || len(hdr.Linkname) >= unix.PathMax) {
		// symlink(2) refuses both (ENOENT, ENAMETOOLONG): refuse them here, where
		// CheckLayer sees them too, not halfway through an unpack.
		return "", "", fmt.Errorf("%w: symlink target of %d bytes", ErrUnsupported, len(hdr.Linkname))
	}
	if err := CheckDevice(hdr); err != nil {
		return "", "", err
	}
	if hdr.Typeflag == tar.TypeLink {
		if link, err = cleanName(hdr.Linkname); err != nil {
			return "", "", fmt.Errorf("hard link target: %w", err)
		}
		switch k, ok := a.seen[link]; {
		case !ok || k == kindWhiteout:
			return "", "", fmt.Errorf("%w: hard link target %s is not in this layer", ErrUnsafePath, link)
		case k == kindDir:
			return "", "", fmt.Errorf("%w: hard link to directory %s", ErrUnsafePath, link)
		case link == p:
			// GNU tar's record of a file named twice: it is there already.
			return "", "", nil
		case strings.HasPrefix(link, p+"/"):
			// Replacing the dir p removes the target first (docker's unpack fails
			// the same way): refuse it here, where CheckLayer sees it too.
			return "", "", fmt.Errorf("%w: hard link to %s, inside the dir it replaces", ErrUnsupported, link)
		}
		if err := a.checkParents(link); err != nil {
			return "", "", fmt.Errorf("hard link target: %w", err)
		}
	}
	if err := a.countLink(p, link); err != nil {
		return "", "", err
	}
	return p, link, nil
}

// The largest device numbers Linux represents (12 bits of major, 20 of minor:
// include/linux/kdev_t.h, new_decode_dev).
const (
	maxDevMajor = 1<<12 - 1
	maxDevMinor = 1<<20 - 1
)

// maxID is the largest uid or gid an entry may carry: Linux ids are 32 bits and
// (uid_t)-1 means "leave unchanged" to chown(2).
const maxID = 1<<32 - 2

// CheckOwner refuses, as ErrUnsupported, an entry whose owner chown(2) cannot
// set. A PAX record or a GNU base-256 field holds any int64, and the conversion
// to the kernel's 32-bit uid_t wrapped: uid 4294967296 became root, and -1 left
// the unpacker's own owner. Apply and CheckLayer check every entry with it; build's
// ADD of a tar, which also chowns from headers, uses it too.
func CheckOwner(hdr *tar.Header) error {
	if hdr.Uid < 0 || int64(hdr.Uid) > maxID || hdr.Gid < 0 || int64(hdr.Gid) > maxID {
		return fmt.Errorf("%w: owner %d:%d", ErrUnsupported, hdr.Uid, hdr.Gid)
	}
	return nil
}

// CheckDevice refuses, as ErrUnsupported, a device entry whose numbers Linux
// cannot represent: mknod(2) takes a 32-bit dev_t, and larger numbers made another
// device (1048576:1073741824 became 0:0, an overlay whiteout that hid the entry).
// Apply and CheckLayer check every entry with it, and build's ADD of a tar.
func CheckDevice(hdr *tar.Header) error {
	if (hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock) &&
		(hdr.Devmajor < 0 || hdr.Devmajor > maxDevMajor || hdr.Devminor < 0 || hdr.Devminor > maxDevMinor) {
		return fmt.Errorf("%w: device number %d:%d", ErrUnsupported, hdr.Devmajor, hdr.Devminor)
	}
	return nil
}

// kindOf is what an entry that check accepted creates at p.
func (a *tarModel) kindOf(hdr *tar.Header, link string) entryKind {
	switch hdr.Typeflag {
	case tar.TypeDir:
		return kindDir
	case tar.TypeSymlink:
		return kindSymlink
	case tar.TypeLink:
		return a.seen[link]
	}
	return kindOther
}

// add records the entry at p, as Apply lays it out: missing ancestors become
// directories; an earlier entry at p is replaced, unless both are directories.
func (a *tarModel) add(p string, k entryKind) {
	if p == "." {
		return
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			if k, ok := a.seen[p[:i]]; !ok || k == kindWhiteout {
				a.seen[p[:i]] = kindDir
			}
		}
	}
	if old, ok := a.seen[p]; ok && !(old == kindDir && k == kindDir) {
		forgetIn(a.seen, p, old == kindDir)
	}
	a.seen[p] = k
}

// isLongWhiteout reports whether name (one component) is an OCI whiteout longer than
// NAME_MAX of a name that is not.
func isLongWhiteout(name string) bool {
	t, ok := WhiteoutTarget(name)
	return ok && len(t) <= nameMax && HasLongWhiteout(t)
}

// longWhiteout returns the path that the entry p, which check accepted, deletes
// when p is a long whiteout, and whether it is one and makes a device: not when
// this tar has an entry at that path (or made the device already).
func (a *tarModel) longWhiteout(p string) (string, bool) {
	dir, base := splitPath(p)
	if !isLongWhiteout(base) {
		return "", false
	}
	q := joinPath(dir, base[len(WhiteoutPrefix):])
	if _, ok := a.seen[q]; ok {
		return "", false
	}
	return q, true
}

// CheckLayer reads the uncompressed layer tar r to its end and reports the first
// entry Apply would refuse (an *EntryError wrapping ErrUnsafePath or
// ErrUnsupported), or a read error, without writing anything: for load and import,
// which store a layer long before anything unpacks it. It returns the number of
// entries.
//
// Like Apply, it reads each regular file's data through the tar reader: only then
// does archive/tar check a sparse file's map against the data stored (Next skips
// it unchecked), and it reads the holes as zeros, so a sparse file costs its
// logical size, in CheckLayer as in Apply; both refuse a layer with more than
// maxHoleBytes of holes.
func CheckLayer(r io.Reader, opts ...CheckOption) (int, error) {
	var cfg checkConfig
	for _, o := range opts {
		o(&cfg)
	}
	m := newTarModel()
	mr := &markerReader{r: r}
	tr := tar.NewReader(mr)
	data := &holeGuard{tr: tr, in: &mr.n}
	buf := make([]byte, 256<<10)
	var end int64 // bytes read up to the end of the last entry
	n := 0
	for ; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if cfg.endMarker && !mr.endsWithMarker(end) {
				return n, fmt.Errorf("read layer tar: %w", ErrTruncated)
			}
			break
		}
		if err != nil {
			return n, fmt.Errorf("read layer tar: %w", err)
		}
		p, link, err := m.check(hdr)
		if err != nil {
			return n, &EntryError{"check", hdr.Name, err}
		}
		if q, ok := m.longWhiteout(p); ok {
			m.add(q, kindWhiteout)
		} else if p != "" && !isLongWhiteout(path.Base(p)) {
			m.add(p, m.kindOf(hdr, link))
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			// struct{io.Writer} hides io.Discard's ReadFrom, which would use 8 KiB reads.
			if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, data, buf); err != nil {
				return n, &EntryError{"check", hdr.Name, fmt.Errorf("read data: %w", err)}
			}
		}
		end = mr.n
	}
	_, err := io.Copy(io.Discard, r) // trailing padding after the end-of-archive marker
	return n, err
}

// maxHoleBytes bounds the holes of a layer's sparse files (their logical size
// beyond the data the tar holds). archive/tar does not say where the holes are,
// so CheckLayer and Apply read them as zeros: without a bound, a 3.5 KiB tar
// declaring a file of 2^62 bytes kept an import, load or pull reading zeros for
// years. Reading 256 GiB of holes takes about 2 s here; files that sparse in a
// layer (a huge /var/log/lastlog from `tar -S`) are refused as unsupported. A
// var for tests.
var maxHoleBytes int64 = 256 << 30

// holeGuard reads entry data from the tar reader, counting as holes the bytes it
// returns that its input did not supply (in: the count of bytes the tar reader
// took), and fails once they pass maxHoleBytes. archive/tar reads a file's data
// straight from its input, so those bytes are exactly a sparse file's holes.
type holeGuard struct {
	tr    io.Reader
	in    *int64
	holes int64
	err   error // once past the bound, for every later read
}

func (g *holeGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	before := *g.in
	n, err := g.tr.Read(p)
	if d := int64(n) - (*g.in - before); d > 0 {
		g.holes += d
		if g.holes > maxHoleBytes {
			// No bytes with the error: io.ReadFull drops an error that comes
			// with a full buffer.
			g.err = fmt.Errorf("%w: sparse files with more than %s of holes", ErrUnsupported, sizeText(maxHoleBytes))
			return 0, g.err
		}
	}
	return n, err
}

// sizeText words a byte count in GiB or MiB when it is a whole number of them.
func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// CountingReader counts in N the bytes read through it from R.
type CountingReader struct {
	R io.Reader
	N int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}

// CheckOption sets an optional knob of CheckLayer.
type CheckOption func(*checkConfig)

type checkConfig struct {
	endMarker bool
}

// RequireEndMarker makes CheckLayer refuse, with ErrTruncated, a tar that ends
// without its end-of-archive marker (two zero blocks). archive/tar takes a stream
// that stops right after an entry, within the padding after its data, or after one
// zero block, for a whole archive, so a tar cut short there passes for a smaller
// one. For import, whose input may be a pipe or a file cut short; layers whose
// digest proves them whole do without it (a few writers omit the marker).
func RequireEndMarker() CheckOption {
	return func(c *checkConfig) { c.endMarker = true }
}

// markerReader counts the bytes the tar reader takes and how many of the last of
// them are zeros.
type markerReader struct {
	r     io.Reader
	n     int64
	zeros int64
}

func (m *markerReader) Read(p []byte) (int, error) {
	k, err := m.r.Read(p)
	i := k - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 {
		m.zeros += int64(k)
	} else {
		m.zeros = int64(k - 1 - i)
	}
	m.n += int64(k)
	return k, err
}

// endsWithMarker reports whether, when archive/tar reported the end of the
// archive, the bytes read since the last entry (read to its end at offset end)
// end in two whole zero blocks: its padding is less than a block, and a PAX or
// GNU record read since is never zeros.
func (m *markerReader) endsWithMarker(end int64) bool {
	const marker = 2 * 512
	return m.n%512 == 0 && m.n-end >= marker && m.zeros >= marker
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	p, link, err := a.check(hdr)
	if err != nil || p == "" {
		return err
	}
	if p == "." {
		a.dirs["."] = hdr
		return nil
	}
	if dir, base := splitPath(p); base != "" {
		if t, ok := WhiteoutTarget(base); ok {
			a.whited[joinPath(dir, t)] = true
		}
	}
	if isLongWhiteout(path.Base(p)) {
		return a.longWhiteoutEntry(p)
	}

	// Checked: from here on the entry touches disk.
	pfd, err := a.parent(p)
	if err != nil {
		return err
	}
	_, base := splitPath(p)
	if k, ok := a.seen[p]; ok {
		if k == kindDir && hdr.Typeflag == tar.TypeDir {
			a.dirs[p] = hdr // a duplicate dir entry: the later metadata wins
			return nil
		}
		if err := removeAllAt(pfd, base); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
		a.forget(p, k)
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		a.seen[p] = kindDir
		a.dirs[p] = hdr
		return nil
	case tar.TypeLink:
		lfd, err := a.openParentOf(link)
		if err != nil {
			return err
		}
		_, lbase := splitPath(link)
		err = unix.Linkat(lfd, lbase, pfd, base, 0)
		unix.Close(lfd)
		if err != nil {
			return fmt.Errorf("link: %w", err)
		}
		a.seen[p] = a.seen[link]
		return nil
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		a.seen[p] = kindSymlink
		return a.setMeta(pfd, base, -1, hdr, true)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		if hdr.Typeflag == tar.TypeChar {
			mode = unix.S_IFCHR
		} else if hdr.Typeflag == tar.TypeBlock {
			mode = unix.S_IFBLK
		}
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := unix.Mknodat(pfd, base, mode|0o600, dev); err != nil {
			if a.euid != 0 && errors.Is(err, unix.EPERM) && mode != unix.S_IFIFO {
				// Unprivileged: no device nodes (Warn names them).
				kind := "char"
				if mode == unix.S_IFBLK {
					kind = "block"
				}
				a.dropped.add(fmt.Sprintf("%s (%s device %d:%d)", p, kind, hdr.Devmajor, hdr.Devminor))
				return nil
			}
			return fmt.Errorf("mknod: %w", err)
		}
		a.seen[p] = kindOther
		return a.setMeta(pfd, base, -1, hdr, false)
	}

	// Regular file.
	fd, err := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	a.seen[p] = kindOther
	if err := writeData(fd, r, hdr.Size, a.buf); err != nil {
		unix.Close(fd)
		return fmt.Errorf("write: %w", err)
	}
	err = a.setMeta(pfd, base, fd, hdr, false)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

// longWhiteoutEntry applies the long whiteout p (isLongWhiteout) as a 0/0 device.
func (a *applier) longWhiteoutEntry(p string) error {
	q, ok := a.longWhiteout(p)
	if !ok {
		return nil
	}
	pfd, err := a.parent(q)
	if err != nil {
		return err
	}
	_, base := splitPath(q)
	if err := MakeWhiteout(pfd, base, FormatOCI); err != nil {
		if errors.Is(err, unix.EPERM) {
			// Linux before 5.8 lets only CAP_MKNOD make whiteout devices.
			return fmt.Errorf("whiteout of a %d-byte name: a 0/0 device is needed, and mknod was refused: %w", len(base), unix.EPERM)
		}
		return err
	}
	a.seen[q] = kindWhiteout
	return nil
}

// openParentOf opens the parent dir of a path the tar created (a new fd).
func (a *applier) openParentOf(p string) (int, error) {
	dir, _ := splitPath(p)
	fd, err := openDirIn(a.root, dir, unix.O_PATH)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", dir, err)
	}
	return fd, nil
}

// finish sets the metadata of every directory, deepest first, so that neither a
// read-only mode nor a child's creation undoes it.
func (a *applier) finish() error {
	a.dropCache()
	if err := a.markWhitedDirsOpaque(); err != nil {
		return err
	}
	paths := make([]string, 0, len(a.dirs))
	for p := range a.dirs {
		paths = append(paths, p)
	}
	depth := func(p string) int {
		if p == "." {
			return -1
		}
		return strings.Count(p, "/")
	}
	sort.Slice(paths, func(i, j int) bool {
		if di, dj := depth(paths[i]), depth(paths[j]); di != dj {
			return di > dj
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		fd, err := openDirIn(a.root, p, unix.O_RDONLY)
		if err != nil {
			return &EntryError{"apply", a.dirs[p].Name, fmt.Errorf("open: %w", err)}
		}
		err = a.setMeta(fd, "", fd, a.dirs[p], false)
		unix.Close(fd)
		if err != nil {
			return &EntryError{"apply", a.dirs[p].Name, err}
		}
	}
	return nil
}

// markWhitedDirsOpaque makes each directory of the tar that the tar also whites
// out opaque. A whiteout applies to the layers below only (OCI): ".wh.d" with
// "d/x" in one layer is the lower d replaced by this layer's, which holds just
// x; the union would otherwise merge the lower d's entries back in (as
// containerd's unpack into overlayfs does, which makes a dir created over a
// whiteout opaque).
func (a *applier) markWhitedDirsOpaque() error {
	for p := range a.whited {
		if a.seen[p] != kindDir {
			continue
		}
		fd, err := openDirIn(a.root, p, unix.O_RDONLY)
		if err != nil {
			return &EntryError{"apply", p, fmt.Errorf("open: %w", err)}
		}
		mfd, err := unix.Openat(fd, OpaqueMarker, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		unix.Close(fd)
		if err == nil {
			unix.Close(mfd)
		} else if !errors.Is(err, unix.EEXIST) {
			return &EntryError{"apply", p, fmt.Errorf("make it opaque: %w", err)}
		}
	}
	return nil
}
