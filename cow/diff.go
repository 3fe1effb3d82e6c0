package cow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"
)

// DiffOptions says how to read an upper dir.
type DiffOptions struct {
	// Format is the whiteout encoding used in the upper dir. OCI ".wh." files and
	// opaque markers are read in either format; 0/0 character devices are whiteouts
	// only with FormatOverlay. Overlay opaque xattrs are read in either format.
	Format Format
	// Lowers are the lower dirs, top first. Diff does not need them; Changes does, to
	// tell an added path from a changed one and to list what an opaque dir hides.
	Lowers []string
	// SourceDateEpoch, when set, clamps every mtime in the tar to at most this time.
	SourceDateEpoch *time.Time
}

// Diff streams the upper dir as a reproducible OCI layer tar (see tarwriter.go for
// the exact encoding): a sorted depth-first walk of the upper dir only, whiteouts
// as ".wh.<name>" (translated from overlay 0/0 devices with FormatOverlay), an
// opaque dir (OCI marker or overlay xattr) as its dir entry directly followed by
// "<dir>/.wh..wh..opq". The root dir itself is not an entry. The same upper dir
// gives the same bytes every time.
//
// The caller reads the returned stream to EOF and closes it; closing early stops
// the walk. Any error (a file that vanished or shrank while read, an unreadable
// xattr, ctx cancelled) ends the stream with that error instead of EOF, never with
// a silently incomplete layer. The upper dir must not change while it is read
// (the fs's Pause gives that).
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
	d := &differ{ctx: ctx, e: e, format: opts.Format}
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
}

func (d *differ) walk(dirfd int, rel string) error {
	names, err := readDirNames(dirfd)
	if err != nil {
		return &EntryError{"diff", rel, fmt.Errorf("readdir: %w", err)}
	}
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	for _, name := range names {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		p := joinPath(rel, name)
		if err := d.one(dirfd, name, p, present); err != nil {
			var ee *EntryError
			if errors.As(err, &ee) {
				return err
			}
			return &EntryError{"diff", p, err}
		}
	}
	return nil
}

// one writes the entry name (path p) of the dir open as dirfd, whose names are present.
//
// A whiteout beside an entry of the name it deletes is left out: the entry replaces
// the lower one by itself, and a dir in that place is made opaque instead. Other
// extractors apply a whiteout to what they already unpacked, so a whiteout sorted
// after its own entry ("-x" sorts before ".wh.-x") would delete it.
func (d *differ) one(dirfd int, name, p string, present map[string]bool) error {
	if IsReservedName(name) {
		if t, ok := WhiteoutTarget(name); ok {
			if present[t] {
				return nil
			}
			return d.e.marker(p)
		}
		return nil // the opaque marker goes out with its dir; other ".wh..wh." names are private
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("lstat: %w", err)
	}
	if d.format == FormatOverlay && IsOverlayWhiteout(&st) {
		dir, _ := splitPath(p)
		return d.e.marker(joinPath(dir, WhiteoutName(name)))
	}
	if err := d.e.entry(dirfd, name, p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	opq, err := IsOpaqueDir(fd)
	if err != nil {
		return err
	}
	if opq || present[WhiteoutName(name)] {
		if err := d.e.marker(p + "/" + OpaqueMarker); err != nil {
			return err
		}
	}
	return d.walk(fd, p)
}
