package mountcmd

// kill, wait, restart and rename: the container verbs docker users reach for
// after run -d, on the containers run made (rename on any working container).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/cow"
)

func init() {
	addVerb(newKillCommand)
	addVerb(newWaitCommand)
	addVerb(newRestartCommand)
	addVerb(newRenameCommand)
}

func newKillCommand(g *globalOptions) *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill [-s SIGNAL] CONTAINER...",
		Short: "Kill one or more running containers",
		Long: `Send a signal (SIGKILL unless -s) to the pid 1 of containers that run (started
by run or run -d), as docker kill does. The container's monitor unmounts it once
the command is gone; its exit status is kept for inspect and wait.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := parseSignal(signal)
			if err != nil || sig <= 0 || sig > 64 {
				return fmt.Errorf("invalid signal: %s", signal)
			}
			return forEachName(cmd, args, true, func(arg string) error {
				return killContainer(g, arg, sig)
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal to send to the container")
	return cmd
}

// killContainer signals arg's pid 1 (signalRun); with SIGKILL it returns once
// the container is stopped and unmounted, as docker kill does.
func killContainer(g *globalOptions, arg string, sig unix.Signal) error {
	w, rs, err := runningContainer(g, arg)
	if err != nil {
		if w != nil && errors.Is(err, errNotRunning) {
			return fmt.Errorf("cannot kill container: %s: container %s %w", arg, w.name, errNotRunning)
		}
		return err
	}
	if err := signalRun(rs, sig); err != nil {
		return fmt.Errorf("cannot kill container: %s: %w", arg, err)
	}
	if sig != unix.SIGKILL {
		return nil
	}
	return waitUnmounted(w)
}

func newWaitCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER...",
		Short: "Block until containers stop, then print their exit codes",
		Long: `Wait for the command run started in each container to end and print its exit
status, one line each, as docker wait does. A container that is not running prints
the status of its last run at once.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := false
			for _, arg := range args {
				code, err := waitContainer(cmd.Context(), g, arg)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", userError(err))
					failed = true
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), code)
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
}

// exitGrace is how long wait gives a container's monitor to record the exit
// after the command is gone (it writes exit.json, then unmounts).
const exitGrace = 10 * time.Second

func waitContainer(ctx context.Context, g *globalOptions, arg string) (int, error) {
	w, err := findContainer(g.root, arg)
	if err != nil {
		return 0, err
	}
	// The container waited for is the one found now, as docker's wait follows
	// an ID: once its name names another (removed, and made again), it is gone.
	id := ""
	if st, err := w.load(); err == nil {
		id = st.ID
	}
	replaced := func() bool {
		st, err := w.load()
		return err == nil && id != "" && st.ID != id
	}
	var since time.Time // the start of the run waited for
	var ended time.Time // when its command was first seen gone
	// seen is the exit last seen: a run --rm killed with its monitor is
	// settled by the first command that sees it (another wait, ps), which
	// removes the container, exit.json with it, at once. Looked at as soon as
	// the command is gone, and kept.
	var seen *exitRecord
	look := func(rs *runState) {
		rec := loadExit(w)
		if lost := lostRun(w, rs, rec); lost != nil {
			rec = lost
		}
		if rec != nil {
			seen = rec
		}
	}
	for {
		if replaced() {
			if seen != nil {
				return seen.ExitCode, nil
			}
			return 0, fmt.Errorf("container %s was removed (run --rm?) before its exit status could be read", w.name)
		}
		rs := loadRunState(w)
		if rs.alive() {
			since, ended = rs.Started, time.Time{}
			if err := waitPid(ctx, rs); err != nil {
				return 0, err
			}
			look(rs)
			continue
		}
		if rs != nil && since.IsZero() {
			since = rs.Started
		}
		// Killed with its monitor: 137 recorded now. A run --rm's container
		// goes with its exit.json then, so the record settling returns is
		// all there is to read; and if another command settled and removed
		// it meanwhile, what was seen before (the lost run, or the exit.json
		// it wrote) is the same record.
		look(rs)
		rec, _ := settleLostRun(w)
		if rec == nil {
			rec = loadExit(w)
		}
		if rec == nil && !w.exists() {
			rec = seen
		}
		if rec != nil && !rec.Started.Before(since) {
			// As docker wait: once the container is stopped, unmounted here.
			if err := waitUnmounted(w); err != nil {
				return 0, err
			}
			return rec.ExitCode, nil
		}
		if !w.exists() {
			if since.IsZero() {
				return 0, fmt.Errorf("%w: %s", errNoSuchContainer, arg)
			}
			return 0, fmt.Errorf("container %s was removed (run --rm?) before its exit status could be read", w.name)
		}
		if rs == nil && since.IsZero() {
			st, err := w.load()
			if _, cerr := os.Stat(runConfigPath(w)); cerr != nil && (err != nil || !(st.Run || st.Incomplete)) {
				return 0, fmt.Errorf("container %s was not made by run: nothing runs in it to wait for", w.name)
			}
			// Ran before exits were kept, and not starting now (a start mounts
			// it and makes its etc files before run.json is there).
			if err == nil && ranBefore(w) && w.status(st) == statusUnmounted {
				return 0, fmt.Errorf("container %s has no recorded exit status (it ran before layerfs kept them)", w.name)
			}
			// Created, never started: wait for a start, as docker wait does.
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		now := time.Now()
		if ended.IsZero() {
			ended = now
		} else if now.Sub(ended) > exitGrace {
			return 0, fmt.Errorf("container %s: its run ended without recording an exit status (was its monitor killed?)", w.name)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitPid blocks until rs's process is gone (a pidfd turns readable), or ctx ends.
func waitPid(ctx context.Context, rs *runState) error {
	fd, err := unix.PidfdOpen(rs.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	if !rs.alive() {
		return nil
	}
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return ctx.Err()
}

func newRestartCommand(g *globalOptions) *cobra.Command {
	o := &stopOptions{}
	cmd := &cobra.Command{
		Annotations: map[string]string{rootOnly: "1"},
		Use:         "restart [-s SIGNAL] [-t SECONDS] CONTAINER...",
		Short:       "Restart one or more containers",
		Long: `Stop each container if it runs (as stop, with -s and -t), then start it again detached
(as start): its command runs again on the changes it has.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, sig, err := o.stopArgs(cmd)
			if err != nil {
				return err
			}
			// start prints each argument, as typed, once it runs.
			return forEachName(cmd, args, false, func(arg string) error {
				w, err := findContainer(g.root, arg)
				if err != nil {
					return err
				}
				if _, err := os.Stat(runConfigPath(w)); err != nil {
					return fmt.Errorf("container %s was not made by run: mount it instead", w.name)
				}
				if loadRunState(w).alive() {
					// Its run --rm must not remove it on the way.
					if err := os.WriteFile(restartingPath(w), nil, 0o600); err != nil {
						return err
					}
					if err := stopContainer(g, w.name, t, sig); err != nil {
						os.Remove(restartingPath(w))
						return err
					}
					now := time.Now() // the mark's age counts from here: prune spares it a while
					os.Chtimes(restartingPath(w), now, now)
				}
				if _, err = startContainer(cmd, g, &startOptions{}, w.name, arg); err != nil {
					os.Remove(restartingPath(w))
				}
				return err
			})
		},
	}
	addStopFlags(cmd, o, "for stop before killing the container")
	return cmd
}

func newRenameCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a working container",
		Long: `Give a working container a new name, keeping its changes, image and history.
A mounted container is refused: umount (or stop) it first.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return renameContainer(cmd.Context(), g, args[0], args[1])
		},
	}
}

func renameContainer(ctx context.Context, g *globalOptions, arg, newName string) error {
	w, err := findContainer(g.root, arg)
	if err != nil {
		return errors.New(userError(err))
	}
	newName = stripSlash(newName)
	to, err := newWorkContainer(g.root, newName)
	if err != nil {
		return fmt.Errorf("Error when allocating new name: %w", err) //nolint:staticcheck // docker's words
	}
	if to.name == w.name {
		return fmt.Errorf("Renaming a container with the same name as its current name") //nolint:staticcheck // docker's message
	}
	// A run --rm of either name killed with its monitor is gone, as in
	// docker: settled now, as the locks below would keep it from that.
	settleLostRun(w)
	to.nameTaken() // settles (or waits for another command settling) a dead run --rm of the new name; checked again below
	// Both locks, in name order (two crossed renames must not deadlock).
	first, second := w, to
	if second.name < first.name {
		first, second = second, first
	}
	unlock1, err := lockContainer(ctx, first)
	if err != nil {
		return err
	}
	defer unlock1()
	unlock2, err := lockContainer(ctx, second)
	if err != nil {
		return err
	}
	defer unlock2()
	st, err := w.load()
	if err != nil {
		return errors.New(userError(err))
	}
	if to.exists() {
		return errNameInUse(to.name)
	}
	if status := w.status(st); status != statusUnmounted || loadRunState(w).alive() {
		return fmt.Errorf("cannot rename container %s: it is %s at %s: umount (or stop) it first", w.name, status, st.Mountpoint)
	}
	// A leftover dir of a create that died half way (no state.json) is no
	// container: it goes.
	if err := cow.RemoveAll(to.Dir()); err != nil {
		return fmt.Errorf("rename container %s: %w", w.name, err)
	}
	if err := os.Rename(w.Dir(), to.Dir()); err != nil {
		return fmt.Errorf("rename container %s: %w", w.name, err)
	}
	st.ID = containerID(st) // one derived from the old name stays the ID
	st.Name = to.name
	st.Mountpoint, st.PID = "", 0
	if err := to.save(st); err != nil {
		return err
	}
	os.Remove(w.lockPath()) // as remove does: a racing locker recreates it harmlessly
	return nil
}

func stripSlash(name string) string {
	if len(name) > 1 && name[0] == '/' {
		return name[1:]
	}
	return name
}
