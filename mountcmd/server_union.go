package mountcmd

import (
	"context"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
)

// unionOptions is what the server asks of the union filesystem (fs.Options).
type unionOptions struct {
	Lowers      []string // layer dirs, top first
	Upper       string
	Work        string
	ReadOnly    bool
	Passthrough bool // per-open FUSE passthrough (fs.Options.Passthrough)
	Debug       bool
	FsName      string // mount source in /proc/mounts: "layerfs:<name>"
	InodeMaps   fs.InodeMaps
}

// unionMount is what the server needs of a live union mount (*fs.MountPoint).
type unionMount interface {
	Wait()
	Unmount() error
	Pause(ctx context.Context, skip ...int) error // skip: PIDs never stopped
	Resume()
	Sync(ctx context.Context) error                                      // dirty pages to the upper dir, for a commit without a pause
	Rebase(lowers []string, upper string, maps fs.InodeMaps) error       // takes the barrier itself
	RebasePaused(lowers []string, upper string, maps fs.InodeMaps) error // for the holder of a Pause
	KeepInodes(file, committed string) error                             // before a Rebase
}

var _ unionMount = (*fs.MountPoint)(nil)

// mountUnion mounts the union at mountpoint and returns once it is live. Working
// containers write OCI whiteouts in their upper dir (commit walks it as a layer).
var mountUnion = func(mountpoint string, o unionOptions) (unionMount, error) {
	lowers := o.Lowers
	if o.ReadOnly && o.Upper != "" {
		// A read-only mount has no upper dir (fs.Options): the container's
		// changes are shown as its top layer instead (found by the cp work: a
		// container mounted read-only showed its image without them).
		lowers = append([]string{o.Upper}, lowers...)
	}
	return fs.Mount(mountpoint, fs.Options{
		Lowers:      lowers,
		Upper:       o.Upper,
		Work:        o.Work,
		Format:      cow.FormatOCI,
		ReadOnly:    o.ReadOnly,
		Passthrough: o.Passthrough,
		Debug:       o.Debug,
		FsName:      o.FsName,
		InodeMaps:   o.InodeMaps,
	})
}
