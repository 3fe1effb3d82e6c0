package mountcmd

// run -d, stop and logs (the build team's; kept apart from run.go for size).
//
// run -d re-executes `layerfs run --detached-child ...` in a new session: that
// child is the container's monitor (docker's conmon): it mounts, starts the
// container with its output copied to work/<name>/container-json.log
// (run_log.go), waits for it, and unmounts (and removes it with --rm)
// afterwards, as a foreground run does. The child's own stdout and stderr are a
// pipe to the parent until the container runs; then it points them at the log,
// the parent reads EOF, prints the container's ID (start: its argument as typed)
// and exits. Anything the child wrote before is its error (a command that could
// not start: its message and exit code). The parent picks the new container's ID
// and hands it to the child (--detached-id), so it can print it even once a --rm
// container is gone, and, as docker run -d, also when the container was made but
// its command could not start.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/build"
	"golang.org/x/sys/unix"
)

func containerLogPath(w *workContainer) string { return filepath.Join(w.Dir(), "container.log") }

// runDetached starts the monitor and returns once the container runs, printing
// echo then (start's argument); for a new container (not o.reuse) it prints the
// ID it chose for it, as docker run -d.
func runDetached(cmd *cobra.Command, g *globalOptions, o *runOptions, ref string, args []string, echo string) error {
	name := o.name
	if name == "" {
		name = "run-" + randomID()[:10]
	}
	if !o.reuse {
		o.id = randomID()
		echo = o.id
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// The options go through a pipe (the monitor's fd 3), not on the command
	// line, where every user's ps would show the -e values, nor in the
	// environment, which holds 128 KiB a string.
	opts, err := json.Marshal(o.saved())
	if err != nil {
		return err
	}
	child := []string{"--root", g.root, "run", "--detached-child", "--name", name}
	if o.reuse {
		child = append(child, "--reuse")
	} else {
		child = append(child, "--detached-id", o.id)
	}
	child = append(append(child, ref), args...)

	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	optR, optW, err := os.Pipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return err
	}
	c := exec.Command(exe, child...)
	c.Stdout, c.Stderr = pw, pw
	c.ExtraFiles = []*os.File{optR} // fd 3: runOptionsFD
	c.Dir = "/"
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	build.CloseExtraFilesOnExec() // the caller's other fds stay out of the monitor
	err = c.Start()
	pw.Close()
	optR.Close()
	if err != nil {
		optW.Close()
		pr.Close()
		return fmt.Errorf("start container: %w", err)
	}
	go func() { // the pipe holds 64 KiB: the monitor reads while we write
		optW.Write(opts)
		optW.Close()
	}()
	msg, _ := io.ReadAll(pr) // EOF: the container runs, or the child is gone
	pr.Close()
	if len(msg) == 0 {
		c.Process.Release()
		_, err := fmt.Fprintln(cmd.OutOrStdout(), echo)
		return err
	}
	c.Wait()
	code := c.ProcessState.ExitCode()
	if code <= 0 {
		code = 125
	}
	// docker run -d prints the ID once the container is made, before it
	// starts it. A --rm container whose command could not start (126, 127:
	// only a made container's command can fail so) is gone already.
	if !o.reuse && (madeContainer(g, name, o.id) || o.rm && (code == 126 || code == 127)) {
		fmt.Fprintln(cmd.OutOrStdout(), echo)
	}
	cmd.ErrOrStderr().Write(msg)
	return exitError{code}
}

// madeContainer reports whether the container name exists with ID id: the one
// a failed run -d made (and left created), not one of that name made before.
func madeContainer(g *globalOptions, name, id string) bool {
	w, err := newWorkContainer(g.root, name)
	if err != nil {
		return false
	}
	st, err := w.load()
	return err == nil && st.ID == id
}

// detachedIO is the monitor's side of a detached container's stdio.
type detachedIO struct {
	out   *containerIO
	raw   *os.File  // the log, for the monitor's own messages once the container runs
	stdin io.Reader // nil: /dev/null, or with -t the terminal nobody types in
	hold  *os.File  // the write end of stdin with -i: kept open, never written
}

func openDetachedIO(w *workContainer, o *runOptions) (d *detachedIO, stdout, stderr io.Writer, err error) {
	raw, err := os.OpenFile(containerJSONLogPath(w), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("container log: %w", err)
	}
	d = &detachedIO{raw: raw}
	if d.out, stdout, stderr, err = openContainerIO(w, o.tty, nil, nil); err != nil {
		raw.Close()
		return nil, nil, nil, err
	}
	if o.interactive && !o.tty {
		r, wr, err := os.Pipe()
		if err != nil {
			d.Close()
			return nil, nil, nil, err
		}
		d.stdin, d.hold = r, wr
	}
	return d, stdout, stderr, nil
}

// started points the monitor's stdout and stderr at the log (lines that are
// not JSON records: logs shows them on stderr): the parent's pipe closes and
// run -d returns.
func (d *detachedIO) started() {
	unix.Dup2(int(d.raw.Fd()), 1)
	unix.Dup2(int(d.raw.Fd()), 2)
}

// Close waits for the container's output to be in the log.
func (d *detachedIO) Close() {
	d.out.Close()
	d.raw.Close()
	if d.hold != nil {
		d.hold.Close()
	}
}

type stopOptions struct {
	timeout int
	signal  string
}

// addStopFlags gives stop and restart docker's -s/--signal and -t/--timeout
// (with --time, its older name, as an alias).
func addStopFlags(cmd *cobra.Command, o *stopOptions, what string) {
	cmd.Flags().StringVarP(&o.signal, "signal", "s", "", "signal to send to the container (default: run's --stop-signal, else the image's STOPSIGNAL, else SIGTERM)")
	cmd.Flags().IntVarP(&o.timeout, "timeout", "t", 0, "seconds to wait "+what+" (default: run's --stop-timeout, else 10; -1: no limit)")
	cmd.Flags().IntVar(&o.timeout, "time", 0, "seconds to wait (an alias of --timeout)")
	cmd.Flags().MarkHidden("time")
}

// noStopTimeout is stop's timeout for -t -1 (any negative -t): no SIGKILL,
// it waits for the container to exit however long it takes, as docker's
// daemon does.
const noStopTimeout = time.Duration(math.MaxInt64)

// stopArgs reads the flags addStopFlags made: the timeout (negative: the
// container's own, not given; noStopTimeout: -t -1) and the signal (0: the
// container's own).
func (o *stopOptions) stopArgs(cmd *cobra.Command) (time.Duration, unix.Signal, error) {
	timeout := time.Duration(o.timeout) * time.Second
	switch {
	case !cmd.Flags().Changed("timeout") && !cmd.Flags().Changed("time"):
		timeout = -1 // the container's own
	case o.timeout < 0:
		timeout = noStopTimeout
	}
	var sig unix.Signal
	if o.signal != "" {
		s, err := parseSignal(o.signal)
		if err != nil || s <= 0 || s > 64 {
			return 0, 0, fmt.Errorf("invalid signal: %s", o.signal)
		}
		sig = s
	}
	return timeout, sig, nil
}

func init() {
	addVerb(newStopCommand)
	addVerb(newLogsCommand)
}

func newStopCommand(g *globalOptions) *cobra.Command {
	o := &stopOptions{}
	cmd := &cobra.Command{
		Use:   "stop [-s SIGNAL] [-t SECONDS] CONTAINER...",
		Short: "Stop running containers",
		Long: `Stop containers that run (started by run, or run -d): send -s, else run's
--stop-signal, else the image's STOPSIGNAL (SIGTERM by default) to the container's pid 1, and
SIGKILL after the timeout (-t, else run's --stop-timeout, else 10 s; -t -1 waits
without limit), as docker stop does. Returns once the container is unmounted (ready for commit or rm).
A container that runs nothing is left as it is, no error (docker's stop of a
stopped container): layerfs stop $(layerfs ps -q) stops what runs.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			timeout, sig, err := o.stopArgs(cmd)
			if err != nil {
				return err
			}
			return forEachName(cmd, args, true, func(name string) error {
				if err := stopContainer(g, name, timeout, sig); !errors.Is(err, errNotRunning) {
					return err
				}
				return nil
			})
		},
	}
	addStopFlags(cmd, o, "before killing the container")
	return cmd
}

// stopContainer stops arg's command: sig (0: its stop signal), then SIGKILL
// after timeout (negative: the container's --stop-timeout, else 10 s;
// noStopTimeout: never), and returns once its monitor has unmounted it.
func stopContainer(g *globalOptions, arg string, timeout time.Duration, sig unix.Signal) error {
	w, rs, err := runningContainer(g, arg)
	if err != nil {
		return err
	}
	if timeout < 0 {
		timeout = 10 * time.Second
		if rs.StopTimeout != nil {
			timeout = time.Duration(*rs.StopTimeout) * time.Second
			if *rs.StopTimeout < 0 { // run --stop-timeout -1: no limit, as docker's
				timeout = noStopTimeout
			}
		}
	}
	if sig == 0 {
		sig = unix.SIGTERM
		if rs.StopSignal != "" {
			if s, err := parseSignal(rs.StopSignal); err == nil {
				sig = s
			}
		}
	}
	if err := signalRun(rs, sig); err != nil {
		return fmt.Errorf("stop container %s: %w", w.name, err)
	}
	deadline := time.Now().Add(timeout)
	for rs.alive() && (timeout == noStopTimeout || time.Now().Before(deadline)) {
		time.Sleep(20 * time.Millisecond)
	}
	if rs.alive() {
		if err := signalRun(rs, unix.SIGKILL); err != nil {
			return fmt.Errorf("stop container %s: %w", w.name, err)
		}
	}
	return waitUnmounted(w)
}

// waitUnmounted returns once w's monitor has recorded the exit and unmounted
// it: it drops run.json last.
func waitUnmounted(w *workContainer) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(runStatePath(w)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !w.exists() {
			return nil // removed meanwhile (run --rm)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("container %s: still unmounting after a minute", w.name)
}

// signalRun signals rs's pid 1 through a pidfd opened while it still is the
// process run started: a pid reused meanwhile is never signalled. Gone is no
// error.
func signalRun(rs *runState, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(rs.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !rs.alive() {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// parseSignal takes a signal name (with or without SIG, RTMIN+N and RTMAX-N
// too, as docker's: systemd images stop on SIGRTMIN+3) or number.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return unix.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n := unix.SignalNum("SIG" + name); n != 0 {
		return n, nil
	}
	const rtmin, rtmax = 34, 64 // as the C library shows them (glibc keeps 32, 33)
	n, off := 0, ""
	switch {
	case strings.HasPrefix(name, "RTMIN"):
		n, off = rtmin, strings.TrimPrefix(name, "RTMIN")
		if off != "" && off[0] != '+' {
			n = 0
		}
	case strings.HasPrefix(name, "RTMAX"):
		n, off = rtmax, strings.TrimPrefix(name, "RTMAX")
		if off != "" && off[0] != '-' {
			n = 0
		}
	}
	if n != 0 && off != "" {
		k, err := strconv.Atoi(off) // "+3" or "-2"
		if err != nil {
			n = 0
		}
		n += k
	}
	if n >= rtmin && n <= rtmax {
		return unix.Signal(n), nil
	}
	return 0, fmt.Errorf("invalid signal: %s", s)
}

type logsOptions struct {
	follow     bool
	tail       string
	timestamps bool
	since      string
	until      string
}

func newLogsCommand(g *globalOptions) *cobra.Command {
	o := &logsOptions{}
	cmd := &cobra.Command{
		Use:   "logs [-f] [-t] [-n N] [--since T] [--until T] CONTAINER",
		Short: "Show the output of a container",
		Long: `Print what a container wrote in every run of it (in the foreground, with run -d,
start), as docker's logs does: its stdout on stdout, its stderr on stderr (a -t
container's terminal output is all stdout). -f keeps printing what it writes
until it stops; -n (--tail) N prints only the last N lines first (a negative N:
all); -t puts each line's time in front of it; --since and --until keep the
lines written from or before a time: RFC 3339 (2026-01-02T15:04:05Z), a date, unix seconds, or a
duration back from now (10m, 1h30m). The log is work/<name>/container-json.log,
in docker's json-file format.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := findContainer(g.root, args[0])
			if err != nil {
				return errors.New(userError(err))
			}
			lo := logShow{stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), tail: -1,
				follow: o.follow, timestamps: o.timestamps}
			if o.tail != "all" {
				// A negative number is all, as docker's daemon takes it.
				if lo.tail, err = strconv.Atoi(o.tail); err != nil {
					return fmt.Errorf("invalid value for --tail: %q (a number of lines, or all)", o.tail)
				}
				if lo.tail < 0 {
					lo.tail = -1
				}
			}
			now := time.Now()
			if o.since != "" {
				if lo.since, err = parseLogTime(o.since, now); err != nil {
					return fmt.Errorf("invalid value for --since: %w", err)
				}
			}
			if o.until != "" {
				if lo.until, err = parseLogTime(o.until, now); err != nil {
					return fmt.Errorf("invalid value for --until: %w", err)
				}
			}
			return showLogs(cmd.Context(), w, lo)
		},
	}
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "follow log output")
	cmd.Flags().StringVarP(&o.tail, "tail", "n", "all", "number of lines to show from the end of the logs")
	cmd.Flags().BoolVarP(&o.timestamps, "timestamps", "t", false, "show timestamps")
	cmd.Flags().StringVar(&o.since, "since", "", "show logs since a time (e.g. 2026-01-02T13:23:37Z) or a duration back (e.g. 42m)")
	cmd.Flags().StringVar(&o.until, "until", "", "show logs before a time (e.g. 2026-01-02T13:23:37Z) or a duration back (e.g. 42m)")
	return cmd
}

// parseLogTime reads docker's --since/--until values: a duration back from
// now, RFC 3339 with or without zone or fraction, a date, or unix seconds.
func parseLogTime(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && v != "0" { // "0" is the epoch, as docker's
		return now.Add(-d), nil
	}
	// docker's forms (api/types/time.GetTimestamp): with a zone, or local
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02T15Z07:00", "2006-01-02Z07:00"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02T15", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, a date, unix seconds) or a duration", v)
}

// logShow is what logs prints and where.
type logShow struct {
	stdout, stderr io.Writer
	tail           int // the last tail lines; < 0: all
	follow         bool
	timestamps     bool
	since, until   time.Time // zero: no bound
}

// showLogs prints w's log: the last tail lines (all if tail < 0), then with
// follow whatever the container writes until its command is gone.
func showLogs(ctx context.Context, w *workContainer, lo logShow) error {
	path, legacy := containerJSONLogPath(w), false
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(containerLogPath(w)); err == nil {
			path, legacy = containerLogPath(w), true // written by an earlier layerfs: raw
		}
	}
	f, err := os.Open(path)
	for errors.Is(err, os.ErrNotExist) && lo.follow && loadRunState(w).alive() {
		time.Sleep(50 * time.Millisecond) // a run about to open it
		f, err = os.Open(path)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil // never run
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if lo.tail >= 0 {
		if err := seekTail(f, lo.tail); err != nil {
			return err
		}
	}
	r := bufio.NewReader(f)
	var partial []byte      // a line the writer has not finished yet
	drain := func() error { // prints the lines there are
		for {
			line, err := r.ReadBytes('\n')
			partial = append(partial, line...)
			if err != nil {
				return nil
			}
			if err := lo.print(partial, legacy); err != nil {
				return err
			}
			partial = partial[:0]
		}
	}
	for {
		if err := drain(); err != nil {
			return err
		}
		if !lo.follow || ctx.Err() != nil {
			break
		}
		if !loadRunState(w).alive() {
			if err := drain(); err != nil { // what it wrote last
				return err
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(partial) > 0 && legacy { // a record is whole only with its newline
		return lo.print(partial, legacy)
	}
	return nil
}

// print prints one line of the log: a record's text on its stream (after its
// time with -t), if within --since and --until; a line that is no record (the
// monitor's own messages, or a legacy raw log's line) as it is, on stderr
// (stdout for the raw log).
func (lo logShow) print(line []byte, legacy bool) error {
	if legacy {
		_, err := lo.stdout.Write(line)
		return err
	}
	var rec logRecord
	if json.Unmarshal(line, &rec) != nil {
		_, err := lo.stderr.Write(line)
		return err
	}
	if (!lo.since.IsZero() && rec.Time.Before(lo.since)) || (!lo.until.IsZero() && rec.Time.After(lo.until)) {
		return nil
	}
	out := lo.stdout
	if rec.Stream == "stderr" {
		out = lo.stderr
	}
	text := rec.Log
	if lo.timestamps {
		text = rec.Time.Format("2006-01-02T15:04:05.000000000Z07:00") + " " + text
	}
	_, err := io.WriteString(out, text)
	return err
}

// seekTail positions f at the start of its last n lines.
func seekTail(f *os.File, n int) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	if n == 0 {
		_, err := f.Seek(end, io.SeekStart)
		return err
	}
	buf := make([]byte, 64<<10)
	pos, lines := end, 0
	for pos > 0 {
		size := int64(len(buf))
		if pos < size {
			size = pos
		}
		pos -= size
		if _, err := f.ReadAt(buf[:size], pos); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		for i := size - 1; i >= 0; i-- {
			if buf[i] != '\n' || pos+i == end-1 {
				continue // a final newline ends the last line, it starts none
			}
			lines++
			if lines == n {
				_, err := f.Seek(pos+i+1, io.SeekStart)
				return err
			}
		}
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}

// stopIfRunning stops name's container at once (SIGKILL) if run is running it,
// and waits until its run has unmounted it. For rm -f, before it takes the
// container lock (the run needs that lock to finish). Not running is no error.
func stopIfRunning(g *globalOptions, name string) {
	if _, _, err := runningContainer(g, name); err == nil {
		stopContainer(g, name, 0, 0)
	}
}
