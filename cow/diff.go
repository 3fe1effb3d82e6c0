package cow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// DiffOptions says how to read an upper dir.
type DiffOptions struct {
	// Format is the whiteout encoding used in the upper dir. OCI ".wh." files and
	// opaque markers are read in either format; 0/0 character devices are whiteouts
	// with FormatOverlay, and with FormatOCI for names whose ".wh." name would be
	// too long (IsWhiteoutDevice). Overlay opaque xattrs are read in either format.
	Format Format
	// Lowers are the lower dirs, top first. Diff does not need them; Changes does, to
	// tell an added path from a changed one and to list what an opaque dir hides.
	Lowers []string
	// SourceDateEpoch, when set, clamps every mtime in the tar to at most this time.
	SourceDateEpoch *time.Time
	// Exclude, when set, names entries of the upper dir (relative, slash-separated:
	// "etc/hosts") that Diff and Changes leave out, with everything below them, as
	// if the upper dir did not have them; their parent dirs are still written.
	// Whiteouts and opaque markers are never asked about. For a running
	// container's mountpoint stubs (build.RuntimePaths.Stubs), which are not its
	// changes. Called from one goroutine at a time.
	Exclude func(rel string) bool
}

// excluded reports whether opts leave the upper dir's entry rel out.
func (opts *DiffOptions) excluded(rel string) bool {
	return opts.Exclude != nil && opts.Exclude(rel)
}

// Diff streams the upper dir as a reproducible OCI layer tar (see tarwriter.go for
// the exact encoding): a depth-first walk of the upper dir only, each dir's entries
// sorted bytewise by their names in the tar; whiteouts as ".wh.<name>" (translated
// from 0/0 devices: IsWhiteoutDevice); an opaque dir (OCI marker or overlay
// xattr) as its dir entry directly followed by "<dir>/.wh..wh..opq". The root dir
// itself is not an entry. The same upper dir gives the same bytes every time, and
// the same changes give the same bytes in either whiteout encoding.
//
// The caller reads the returned stream to EOF and closes it; closing early stops
// the walk. Any error (a file that shrank while read, an unreadable file or xattr,
// ctx cancelled) ends the stream with that error instead of EOF, never with a
// silently incomplete layer. The upper dir should not change while it is read (the
// fs's Pause gives that); if it does, each file holds the size it had when stat'ed
// and an entry deleted before its header was written is left out, as if the walk
// had come later.
func Diff(ctx context.Context, upper string, opts DiffOptions) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeDiff(ctx, upper, opts, pw))
	}()
	return pr
}

func writeDiff(ctx context.Context, upper string, opts DiffOptions, w io.Writer) error {
	root, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("diff %s: %w", upper, err)
	}
	defer unix.Close(root)
	e := newTarEmitter(w, opts.SourceDateEpoch)
	e.layer = true
	d := &differ{ctx: ctx, e: e, format: opts.Format, opts: &opts}
	if opq, err := IsOpaqueDir(root); err != nil {
		return fmt.Errorf("diff .: %w", err)
	} else if opq {
		if err := e.marker(OpaqueMarker); err != nil {
			return err
		}
	}
	if err := d.walk(root, "."); err != nil {
		return err
	}
	return e.close()
}

type differ struct {
	ctx    context.Context
	e      *tarEmitter
	format Format
	opts   *DiffOptions
}

// item is one entry of a dir to write: tarName is its base name in the tar (a
// whiteout's ".wh." name in either encoding), the order of the walk.
type item struct {
	name, tarName string
	whiteout      bool
	st            unix.Stat_t
}

// walk writes the entries of the dir open as dirfd (path rel), sorted by their names
// in the tar so both whiteout encodings give the same bytes.
//
// A whiteout beside an entry of the name it deletes is left out: the entry replaces
// the lower one by itself, and a dir in that place is made opaque instead. Other
// extractors apply a whiteout to what they already unpacked, so a whiteout sorted
// after its own entry ("-x" sorts before ".wh.-x") would delete it.
func (d *differ) walk(dirfd int, rel string) error {
	names, err := readDirNames(dirfd)
	if err != nil {
		return &EntryError{"diff", rel, fmt.Errorf("readdir: %w", err)}
	}
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	items := make([]item, 0, len(names))
	for _, name := range names {
		if IsReservedName(name) {
			// The opaque marker goes out with its dir; other ".wh..wh." names are private.
			if t, ok := WhiteoutTarget(name); ok && !present[t] {
				items = append(items, item{name: name, tarName: name, whiteout: true})
			}
			continue
		}
		if d.opts.excluded(joinPath(rel, name)) {
			continue
		}
		it := item{name: name, tarName: name}
		if err := lstatAt(dirfd, name, &it.st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // deleted since the readdir: see tarEmitter.entry
			}
			return &EntryError{"diff", joinPath(rel, name), fmt.Errorf("lstat: %w", err)}
		}
		if IsWhiteoutDevice(d.format, name, &it.st) {
			it.tarName, it.whiteout = WhiteoutName(name), true
		}
		items = append(items, it)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].tarName < items[j].tarName })
	for i := range items {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		it := &items[i]
		if it.whiteout {
			if err := d.e.marker(joinPath(rel, it.tarName)); err != nil {
				return err
			}
			continue
		}
		p := joinPath(rel, it.name)
		if err := d.one(dirfd, it, p, present[WhiteoutName(it.name)]); err != nil {
			var ee *EntryError
			if errors.As(err, &ee) {
				return err
			}
			return &EntryError{"diff", p, err}
		}
	}
	return nil
}

// one writes the entry it (path p) of the dir open as dirfd and, for a dir,
// everything below it; whiteout says a whiteout of the same name sits beside it.
func (d *differ) one(dirfd int, it *item, p string, whiteout bool) error {
	if err := d.e.entry(dirfd, it.name, p, &it.st); err != nil {
		return err
	}
	if it.st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	fd, err := openAsOwner(dirfd, it.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if errors.Is(err, unix.ENOENT) {
		return nil // removed since its header was written: an empty dir is a valid cut
	}
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	opq, err := IsOpaqueDir(fd)
	if err != nil {
		return err
	}
	if opq || whiteout {
		if err := d.e.marker(p + "/" + OpaqueMarker); err != nil {
			return err
		}
	}
	return d.walk(fd, p)
}
