package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	lfs "github.com/layerfs/layerfs/fs"
)

// serverExitTimeout bounds how long umount waits for a stopped server to exit.
const serverExitTimeout = 15 * time.Second

// stopTimeout bounds how long umount waits for the server to answer a stop.
const stopTimeout = 30 * time.Second

type umountOptions struct {
	all   bool
	force bool
}

func init() { addVerb(newUmountCommand) }

func newUmountCommand(g *globalOptions) *cobra.Command {
	o := &umountOptions{}
	cmd := &cobra.Command{
		Use:     "umount [-a] DIR|NAME...",
		Aliases: []string{"unmount"},
		Short:   "Unmount working containers (their changes are kept until rm)",
		Long: `Unmount working containers, named by mountpoint or by name. The mount server
unmounts and exits; the upper dir keeps every change, and mount with the same
--name brings them back. If the server died (killed, crashed), umount clears the
dead mount it left. Prints nothing on success.

A busy mount (a process has a file open or its cwd in it) is refused; -f kills
the server instead and detaches the mount (those processes get errors).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.all && len(args) > 0 {
				return errors.New("--all takes no arguments")
			}
			if !o.all && len(args) == 0 {
				return errors.New("requires at least 1 arg (DIR or NAME), or --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUmount(cmd, g, o, args)
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "unmount every mounted working container")
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "kill a busy or unresponsive server and detach its mount")
	return cmd
}

func runUmount(cmd *cobra.Command, g *globalOptions, o *umountOptions, args []string) error {
	if o.all {
		ws, err := listContainers(g.root)
		if err != nil {
			return err
		}
		for _, w := range ws {
			// A running container's root is not ours to take away: -a
			// leaves it (stop does), as a name given alone is refused.
			if st, err := w.load(); err == nil && st.Mountpoint != "" && (o.force || !loadRunState(w).alive()) {
				args = append(args, w.name)
			}
		}
	}
	return forEachName(cmd, args, false, func(name string) error {
		return umountOne(cmd.Context(), g, name, o.force)
	})
}

func umountOne(ctx context.Context, g *globalOptions, arg string, force bool) error {
	w, err := findContainer(g.root, arg)
	if err != nil {
		return err
	}
	st, unlock, err := lockAndLoad(ctx, w)
	if err != nil {
		return err
	}
	defer unlock()
	if st.Mountpoint == "" && !w.serverAlive() {
		return fmt.Errorf("container %s is not mounted", w.name)
	}
	// The mount is the running container's root, held by its mount namespace:
	// the server would wait for that namespace (it failed after 30 s), or
	// abort the connection under the container.
	if !force && loadRunState(w).alive() {
		return fmt.Errorf("cannot unmount container %s: it is running (stop it first, or umount -f to take the mount from under it)", w.name)
	}
	return unmountContainer(ctx, w, st, force)
}

// findContainer names the working container arg designates: a container name
// (with or without docker's leading "/"), the mountpoint (or a path that resolves
// to it) of a mounted one, or a unique prefix of a container's ID.
func findContainer(root, arg string) (*workContainer, error) {
	if w, err := newWorkContainer(root, strings.TrimPrefix(arg, "/")); err == nil && w.exists() {
		return w, nil
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", errNoSuchContainer, arg)
	}
	want := []string{filepath.Clean(abs)}
	if p, err := filepath.EvalSymlinks(abs); err == nil && p != want[0] {
		want = append(want, p)
	}
	ws, err := listContainers(root)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		st, err := w.load()
		if err != nil || st.Mountpoint == "" {
			continue
		}
		for _, p := range want {
			if st.Mountpoint == p {
				return w, nil
			}
		}
	}
	if w, err := containerByID(ws, arg); w != nil || err != nil {
		return w, err
	}
	return nil, fmt.Errorf("%w: %s (neither a working container nor the mountpoint of one)", errNoSuchContainer, arg)
}

// containerByID finds the one container among ws whose ID starts with prefix;
// nil if none does (or prefix is no hex string). A prefix several IDs share is
// refused in docker's words.
func containerByID(ws []*workContainer, prefix string) (*workContainer, error) {
	if prefix == "" || !isHexString(prefix) {
		return nil, nil
	}
	var hit *workContainer
	for _, w := range ws {
		st, err := w.load()
		if err != nil || !strings.HasPrefix(containerID(st), prefix) {
			continue
		}
		if hit != nil {
			return nil, fmt.Errorf("%w: %s", errAmbiguousID, prefix)
		}
		hit = w
	}
	return hit, nil
}

// unmountContainer stops w's server (or clears the dead mount it left) and records
// that w is unmounted. With force, a server that does not stop (busy mount, no
// answer) is killed and its mount detached. The caller holds the container lock.
func unmountContainer(ctx context.Context, w *workContainer, st *workState, force bool) error {
	if w.serverAlive() {
		if err := stopServer(ctx, w, st); err != nil {
			if !force {
				return fmt.Errorf("%w (umount -f kills the server and detaches the mount)", err)
			}
			if err := killServer(ctx, w, st); err != nil {
				return err
			}
		}
	}
	if st.Mountpoint != "" && isOurMount(st.Mountpoint, w.fsName()) {
		if err := clearDeadMount(st.Mountpoint, w.fsName()); err != nil {
			return err
		}
	}
	st.Mountpoint, st.PID = "", 0
	return w.save(st)
}

// stopServer asks w's server to unmount and waits until it has exited.
func stopServer(ctx context.Context, w *workContainer, st *workState) error {
	if abortIfDying(w) {
		return waitServerExit(ctx, w) // no one answers on its control socket
	}
	sctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	c, err := dialControl(sctx, w)
	if err == nil {
		err = c.Stop(sctx)
		c.Close()
	}
	var remote *remoteError
	if errors.As(err, &remote) {
		return fmt.Errorf("umount %s: %w", w.name, err) // busy, typically
	}
	if err != nil && !errors.Is(err, errServerGone) {
		// The answer may be lost if the server exits at once; what counts is
		// that it is gone. A mount it left (it was killed, not stopped) is a dead
		// mount, which the caller clears.
		ctx2, cancel := context.WithTimeout(ctx, time.Second)
		werr := waitServerExit(ctx2, w)
		cancel()
		if werr != nil {
			return fmt.Errorf("umount %s: %w", w.name, err)
		}
	}
	return waitServerExit(ctx, w)
}

// killServer SIGKILLs w's server: the process state.json names, if it still is a
// server of w (a pid may have been reused), and waits until it is gone.
func killServer(ctx context.Context, w *workContainer, st *workState) error {
	pid := st.PID
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(string(cmdline), "\x00")
	if pid <= 1 || err != nil || !slices.Contains(args, w.name) || !slices.Contains(args, "__serve") && !slices.Contains(args, "mount") {
		return fmt.Errorf("umount %s: cannot tell which process serves it (pid %d in state.json is not its server)", w.name, pid)
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("umount %s: kill server %d: %w", w.name, pid, err)
	}
	return waitServerExit(ctx, w)
}

func waitServerExit(ctx context.Context, w *workContainer) error {
	deadline := time.Now().Add(serverExitTimeout)
	aborted := false
	for w.serverAlive() {
		if !aborted {
			aborted = abortIfDying(w)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("umount %s: server still running after %v (see %s)", w.name, serverExitTimeout, w.logPath())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("umount %s: %w", w.name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// clearDeadMount removes the mount a dead server left at mountpoint: umount(2),
// then a lazy one, then fusermount3 -u -z (what a non-root user has).
func clearDeadMount(mountpoint, source string) error {
	gone := func() bool { return !isOurMount(mountpoint, source) }
	var first error
	note := func(err error) {
		if first == nil && err != nil {
			first = err
		}
	}
	note(unix.Unmount(mountpoint, unix.UMOUNT_NOFOLLOW))
	if gone() {
		return nil
	}
	note(unix.Unmount(mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW))
	if gone() {
		return nil
	}
	for _, fm := range []string{"fusermount3", "fusermount"} {
		if out, err := exec.Command(fm, "-u", "-z", mountpoint).CombinedOutput(); err != nil {
			note(fmt.Errorf("%s: %v: %s", fm, err, oneLine(string(out))))
		}
		if gone() {
			return nil
		}
	}
	if first == nil {
		first = errors.New("still mounted")
	}
	return fmt.Errorf("clear dead mount %s: %w", mountpoint, first)
}

// abortIfDying aborts the FUSE connection of w's server if the server is
// dying but cannot end (killed while one of its threads waited on a request to
// its own mount: while it listed its own directories, or in go-fuse's start),
// and reports whether it did. Such a server holds its lock, its
// control socket and /dev/fuse for ever, and every use of its mount hangs
// (found by a review); the abort fails that request, and the process ends.
func abortIfDying(w *workContainer) bool {
	st, err := w.load()
	if err != nil || st.PID <= 0 || st.Mountpoint == "" {
		return false
	}
	if !procDying(st.PID) {
		return false
	}
	m, ok := findMount(st.Mountpoint)
	if !ok || m.Source != w.fsName() {
		return false
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(m.Dev, "%d:%d", &major, &minor); err != nil {
		return false
	}
	return lfs.AbortConnection(unix.Mkdev(major, minor)) == nil
}

// procDying reports whether pid was killed and has not ended: its main thread
// a zombie (another one still there), or SIGKILL pending for it.
func procDying(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			if strings.HasPrefix(v, "Z") || strings.HasPrefix(v, "X") {
				return true
			}
		case "SigPnd", "ShdPnd":
			var mask uint64
			if _, err := fmt.Sscanf(v, "%x", &mask); err == nil && mask&(1<<(unix.SIGKILL-1)) != 0 {
				return true
			}
		}
	}
	return false
}
