package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"
)

type rmOptions struct {
	force bool
}

func init() { addVerb(newRmCommand) }

func newRmCommand(g *globalOptions) *cobra.Command {
	o := &rmOptions{}
	cmd := &cobra.Command{
		Use:   "rm [-f] NAME...",
		Short: "Remove working containers and their changes",
		Long: `Remove working containers: the upper dir with every change, and the state.
A mounted container is refused unless -f, which unmounts it first (killing its
server if the mount is busy, as docker rm -f kills a running container). Each name
is handled on its own and printed once removed; with -f a missing one is not
an error (as docker rm -f). A container's anonymous volumes (the image's VOLUMEs,
run -v CONTAINER) are in its dir and go with it: -v is accepted for docker rm -v's
users and changes nothing.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachName(cmd, args, true, func(name string) error {
				err := rmOne(cmd.Context(), g, o, name)
				if o.force && errors.Is(err, errNoSuchContainer) {
					return errSkipped
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "unmount a mounted container first, killing a busy server")
	cmd.Flags().BoolP("volumes", "v", false, "remove anonymous volumes (they always go with the container)")
	return cmd
}

func rmOne(ctx context.Context, g *globalOptions, o *rmOptions, name string) error {
	w, err := findContainer(g.root, name)
	if err != nil {
		return err
	}
	name = w.name
	if o.force {
		// A process running in it (layerfs run -d) keeps the mount busy: stop it
		// first, as docker rm -f kills the container, instead of waiting out the
		// server's stop timeout.
		stopIfRunning(g, name)
	} else if rs := loadRunState(w); rs != nil {
		if rs.alive() {
			return fmt.Errorf("cannot remove container %q: container is running: stop the container before removing or force remove (-f)", name)
		}
		// Its command just ended: the run unmounts it in a moment (an rm
		// right after a restart of a short command said "umount it first").
		// Not under the container lock, which that unmount takes.
		for deadline := time.Now().Add(5 * time.Second); loadRunState(w) != nil && w.serverAlive() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	st, unlock, err := lockAndLoad(ctx, w)
	if err != nil && o.force && !errors.Is(err, errNoSuchContainer) && w.exists() {
		return removeBroken(ctx, w, err)
	}
	if err != nil {
		return err
	}
	defer unlock()
	if status := w.status(st); status != statusUnmounted {
		if !o.force {
			what := "mounted at " + st.Mountpoint
			if status == statusDead {
				what += " (its server died)"
			}
			return fmt.Errorf("cannot remove container %q: container is %s: umount it first or force remove (-f)", name, what)
		}
		if err := unmountContainer(ctx, w, st, true); err != nil {
			return fmt.Errorf("remove container %s: %w", name, err)
		}
	}
	return w.remove()
}

// removeBroken is rm -f of a container whose state.json cannot be read (why):
// its mounts, found by their source in the mount table, are detached (its
// server then exits), and its dir goes.
func removeBroken(ctx context.Context, w *workContainer, why error) error {
	unlock, err := lockContainer(ctx, w)
	if err != nil {
		return err
	}
	defer unlock()
	for _, m := range readMounts() {
		if m.Source == w.fsName() && strings.HasPrefix(m.FSType, "fuse") {
			if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
				return fmt.Errorf("remove container %s (%v): unmount %s: %w", w.name, why, m.Mountpoint, err)
			}
		}
	}
	return w.remove()
}
