package cow

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrUnsafePath is returned by Apply for a tar entry that could lead a write
	// outside the target dir: a ".." escape (absolute names and hard-link targets
	// count from the target dir, as in docker), an entry below a symlink or a
	// non-directory, a hard link to something the tar did not create.
	ErrUnsafePath = errors.New("unsafe path in layer tar")
	// ErrDigestMismatch is returned when an unpacked layer's diffID is not the one
	// asked for. Nothing is left behind.
	ErrDigestMismatch = errors.New("layer digest mismatch")
	// ErrUnsupported is returned for input cow cannot represent faithfully: unknown tar
	// entry types, names over 255 bytes, paths over 16 KiB, symlinks
	// to "" or past PATH_MAX, device numbers past Linux's 12:20 bits, owners outside
	// Linux's 32-bit ids (negative, or 2^32-1 and up), a hard link into the dir its
	// entry replaces, or kernel overlayfs redirect/metacopy entries in an upper dir.
	ErrUnsupported = errors.New("unsupported layer content")
	// ErrTruncated is returned by CheckLayer with RequireEndMarker for a tar that
	// ends without its end-of-archive marker: cut short, most likely.
	ErrTruncated = errors.New("tar archive cut short: no end-of-archive marker")
)

// EntryError is the error Apply, CheckLayer, Diff, Export and Changes return for one entry:
// "apply etc/passwd: ...". Path is the entry's name in the tar (Apply) or its path
// relative to the dir walked; the sentinels above are reached through Unwrap.
type EntryError struct {
	Op   string // "apply", "check", "diff", "export", "changes"
	Path string
	Err  error
}

func (e *EntryError) Error() string { return e.Op + " " + shortPath(e.Path) + ": " + e.Err.Error() }

// shortPath is p for an error message: a path of a hostile tar can be 100 KB,
// which would make the one-line error unreadable. The middle goes.
func shortPath(p string) string {
	const keep = 120
	if len(p) <= 3*keep {
		return p
	}
	return fmt.Sprintf("%s...(%d bytes)...%s", strings.ToValidUTF8(p[:keep], ""), len(p), strings.ToValidUTF8(p[len(p)-keep:], ""))
}
func (e *EntryError) Unwrap() error { return e.Err }
