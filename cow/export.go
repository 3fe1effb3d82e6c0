package cow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"golang.org/x/sys/unix"
)

// Export streams the merged view of upper over lowers (top first) as one flat rootfs
// tar, as `docker export` does: no whiteouts or opaque markers, what they hide left
// out, hard links kept (within the layer dir they live in), the same encoding as
// Diff. upper may be "" (just the lowers). f is the whiteout encoding of upper;
// lower dirs are read in both encodings, like the union fs does. The caller reads
// the stream to EOF and closes it; errors end it via CloseWithError.
func Export(ctx context.Context, lowers []string, upper string, f Format, opts ...ExportOption) io.ReadCloser {
	var o exportOptions
	for _, opt := range opts {
		opt(&o)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeExport(ctx, lowers, upper, f, o, pw))
	}()
	return pr
}

// ExportOption tunes Export.
type ExportOption func(*exportOptions)

type exportOptions struct {
	exclude func(rel string) bool
	layer   bool
}

// ExportAsLayer marks the tar as a layer (commit --squash): a path Apply would
// refuse is refused here, as Diff does, not stored for every mount to refuse.
func ExportAsLayer() ExportOption {
	return func(o *exportOptions) { o.layer = true }
}

// ExportExcludeUpper leaves the upper dir's entries for which exclude is true
// (relative, slash-separated paths, as DiffOptions.Exclude) out of the merge,
// with everything below them: the lowers' copies of them show instead, if any.
func ExportExcludeUpper(exclude func(rel string) bool) ExportOption {
	return func(o *exportOptions) { o.exclude = exclude }
}

func writeExport(ctx context.Context, lowers []string, upper string, f Format, o exportOptions, w io.Writer) error {
	var layers []mergeLayer
	defer func() {
		for _, l := range layers {
			unix.Close(l.fd)
		}
	}()
	dirs := lowers
	if upper != "" {
		dirs = append([]string{upper}, lowers...)
	}
	for i, d := range dirs {
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("export %s: %w", d, err)
		}
		l := mergeLayer{fd: fd, overlay: upper == "" || i > 0 || f == FormatOverlay}
		if upper != "" && i == 0 {
			l.exclude = o.exclude
		}
		layers = append(layers, l)
	}
	e := newTarEmitter(w, nil)
	e.layer = o.layer
	x := &exporter{ctx: ctx, e: e}
	if err := x.walk(layers, "."); err != nil {
		return err
	}
	return e.close()
}

// mergeLayer is one layer's copy of a directory in a merged walk.
type mergeLayer struct {
	fd      int
	overlay bool                  // 0/0 character devices are whiteouts here (else only for long names)
	exclude func(rel string) bool // entries of this layer to leave out (ExportExcludeUpper)
}

// mergedEntry is one name of a merged directory. It keeps no stat, which walk
// takes again as it writes the entry: a directory of 1M names held 1M stats
// (review rev22-scale: 517 MB to export one such directory).
type mergedEntry struct {
	name   string
	fd     int          // dir fd of the top layer that has it
	dirs   []mergeLayer // for a dir: the parent copies whose child dirs merge, top first
	closed bool         // lower layers cannot add to it any more
}

type exporter struct {
	ctx context.Context
	e   *tarEmitter
}

// mergeDir lists the merged entries of one directory (path rel) given its copies in
// layers (top first): a layer's whiteouts hide names in the layers below it, a
// non-dir hides everything below it, an opaque copy ends the merge, a layer's
// excluded entries are not there. Entries come back sorted; the dir fds in them are
// borrowed from layers.
func mergeDir(layers []mergeLayer, rel string) ([]*mergedEntry, error) {
	byName := map[string]*mergedEntry{}
	hidden := map[string]bool{}
	for _, l := range layers {
		names, err := readDirNames(l.fd)
		if err != nil {
			return nil, fmt.Errorf("readdir: %w", err)
		}
		var whiteouts []string
		for _, n := range names {
			if IsReservedName(n) {
				if t, ok := WhiteoutTarget(n); ok {
					whiteouts = append(whiteouts, t)
				}
				continue
			}
			if l.exclude != nil && l.exclude(joinPath(rel, n)) {
				continue
			}
			var st unix.Stat_t
			if err := lstatAt(l.fd, n, &st); err != nil {
				return nil, fmt.Errorf("lstat %s: %w", n, err)
			}
			if (l.overlay || HasLongWhiteout(n)) && IsOverlayWhiteout(&st) {
				whiteouts = append(whiteouts, n)
				continue
			}
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			me := byName[n]
			switch {
			case me == nil && !hidden[n]:
				me = &mergedEntry{name: n, fd: l.fd, closed: !isDir}
				byName[n] = me
				if isDir {
					me.dirs = []mergeLayer{l}
				}
			case me != nil && !me.closed:
				if isDir {
					me.dirs = append(me.dirs, l)
				} else {
					me.closed = true
				}
			}
		}
		for _, t := range whiteouts {
			hidden[t] = true
			if me := byName[t]; me != nil {
				me.closed = true
			}
		}
		opq, err := IsOpaqueDir(l.fd)
		if err != nil {
			return nil, err
		}
		if opq {
			break
		}
	}
	out := make([]*mergedEntry, 0, len(byName))
	for _, me := range byName {
		out = append(out, me)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// openChildren opens name in each parent layer copy; the caller closes the fds.
func openChildren(parents []mergeLayer, name string) ([]mergeLayer, error) {
	out := make([]mergeLayer, 0, len(parents))
	for _, p := range parents {
		fd, err := openAsOwner(p.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			closeLayers(out)
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		out = append(out, mergeLayer{fd: fd, overlay: p.overlay, exclude: p.exclude})
	}
	return out, nil
}

func closeLayers(ls []mergeLayer) {
	for _, l := range ls {
		unix.Close(l.fd)
	}
}

func (x *exporter) walk(layers []mergeLayer, rel string) error {
	ents, err := mergeDir(layers, rel)
	if err != nil {
		return &EntryError{"export", rel, err}
	}
	for _, me := range ents {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		p := joinPath(rel, me.name)
		var st unix.Stat_t
		if err := lstatAt(me.fd, me.name, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone since the listing
			}
			return &EntryError{"export", p, fmt.Errorf("lstat: %w", err)}
		}
		if err := x.e.entry(me.fd, me.name, p, &st); err != nil {
			return &EntryError{"export", p, err}
		}
		if me.dirs == nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		children, err := openChildren(me.dirs, me.name)
		if err != nil {
			return &EntryError{"export", p, err}
		}
		err = x.walk(children, p)
		closeLayers(children)
		if err != nil {
			return err
		}
	}
	return nil
}
