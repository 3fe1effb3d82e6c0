package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// unionOptions is what the server asks of the union filesystem (fs.Options).
type unionOptions struct {
	Lowers   []string // layer dirs, top first
	Upper    string
	Work     string
	ReadOnly bool
	Debug    bool
	FsName   string // mount source in /proc/mounts: "layerfs:<name>"
}

// unionMount is what the server needs of a live union mount (*fs.Mount).
type unionMount interface {
	Wait()
	Unmount() error
	Pause(ctx context.Context) error
	Resume()
	Rebase(lowers []string, upper string) error
}

// mountUnion mounts the union at mountpoint and returns once it is live.
//
// STAND-IN until the fs package lands: a go-fuse loopback of the upper dir alone,
// refusing lower layers, with a no-op barrier. Replaced by fs.Mount.
var mountUnion = func(mountpoint string, o unionOptions) (unionMount, error) {
	if len(o.Lowers) > 0 {
		return nil, fmt.Errorf("mount %s: union filesystem not built yet: lower layers unsupported", mountpoint)
	}
	root, err := fusefs.NewLoopbackRoot(o.Upper)
	if err != nil {
		return nil, err
	}
	sec := time.Second
	mopts := fuse.MountOptions{FsName: o.FsName, Name: "layerfs", AllowOther: true, Debug: o.Debug}
	if o.ReadOnly {
		mopts.Options = append(mopts.Options, "ro")
	}
	srv, err := fusefs.Mount(mountpoint, root, &fusefs.Options{MountOptions: mopts, EntryTimeout: &sec, AttrTimeout: &sec})
	if err != nil {
		return nil, err
	}
	return loopbackMount{srv}, nil
}

type loopbackMount struct{ srv *fuse.Server }

func (m loopbackMount) Wait()                           { m.srv.Wait() }
func (m loopbackMount) Unmount() error                  { return m.srv.Unmount() }
func (m loopbackMount) Pause(ctx context.Context) error { return nil }
func (m loopbackMount) Resume()                         {}
func (m loopbackMount) Rebase([]string, string) error {
	return errors.New("rebase: union filesystem not built yet")
}
