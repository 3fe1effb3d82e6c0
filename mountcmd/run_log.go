package mountcmd

// A foreground run's output: docker keeps every container's output for `logs`,
// not only a detached one's, and gives a container without -t pipes, not the
// user's terminal, as stdout and stderr. foregroundIO does both: the
// container writes into pipes, and run copies what comes out to its own stdout
// and stderr and appends it to work/<name>/container.log, where a run -d's
// monitor writes too.

import (
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// foregroundIO tees a foreground container's output to the user and its log.
type foregroundIO struct {
	log     *os.File // nil: the log could not be opened; the output still reaches the user
	mu      sync.Mutex
	copying sync.WaitGroup
	readers []*os.File
	writers []*os.File // the container's ends: closed in run once it has them
	sigpipe chan os.Signal
	// For Close: a copy writing to the user is waited for however long it
	// takes; pipes idle for a few seconds after the container's end are cut.
	writing atomic.Int32
	active  atomic.Int64 // unix nanoseconds of the last read
}

// openForegroundIO opens w's log and, without a terminal (tty false), the pipes
// the container writes its stdout and stderr into. The pipes' write ends are
// the returned stdout and stderr, to hand to the container; with tty they are
// nil and Tee wraps the terminal's output instead. A stdout and stderr that
// are one file (2>&1) get one pipe, so their order is kept.
func openForegroundIO(w *workContainer, tty bool) (f *foregroundIO, stdout, stderr *os.File, err error) {
	f = &foregroundIO{sigpipe: make(chan os.Signal, 1)}
	// A reader of our output that goes away (run ... | head) must be an EPIPE
	// for the copy, not SIGPIPE killing run before it unmounts; the copy then
	// closes the pipe and the container gets the EPIPE (or SIGPIPE) itself.
	signal.Notify(f.sigpipe, unix.SIGPIPE)
	if log, err := os.OpenFile(containerLogPath(w), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
		f.log = log
	}
	if tty {
		return f, nil, nil, nil
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	f.readers, f.writers = append(f.readers, outR), append(f.writers, outW)
	f.copy(outR, os.Stdout)
	if sameOpenFile(os.Stdout, os.Stderr) {
		return f, outW, outW, nil
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	f.readers, f.writers = append(f.readers, errR), append(f.writers, errW)
	f.copy(errR, os.Stderr)
	return f, outW, errW, nil
}

// sameOpenFile reports whether a and b are one file (dup'd fds, as for 2>&1).
func sameOpenFile(a, b *os.File) bool {
	sa, err := a.Stat()
	if err != nil {
		return false
	}
	sb, err := b.Stat()
	return err == nil && os.SameFile(sa, sb)
}

// started closes run's copies of the container's ends of the pipes: the
// copies then end when the container's last process has closed them.
func (f *foregroundIO) started() {
	for _, w := range f.writers {
		w.Close()
	}
	f.writers = nil
}

// copy copies r to out and the log until r ends or out fails; on a failure of
// out it closes r, so the container's next write fails as it would have on out.
func (f *foregroundIO) copy(r *os.File, out io.Writer) {
	f.copying.Add(1)
	go func() {
		defer f.copying.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			f.active.Store(time.Now().UnixNano())
			if n > 0 {
				f.writeLog(buf[:n])
				f.writing.Add(1)
				_, werr := out.Write(buf[:n])
				f.writing.Add(-1)
				if werr != nil {
					r.Close()
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

// writeLog appends b to the log; a log that fails (a full disk) is given up,
// the run goes on.
func (f *foregroundIO) writeLog(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.log == nil {
		return
	}
	if _, err := f.log.Write(b); err != nil {
		f.log.Close()
		f.log = nil
	}
}

// Tee is out, with everything written to it also appended to the log: a -t
// container's terminal output.
func (f *foregroundIO) Tee(out io.Writer) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		f.writeLog(b)
		return out.Write(b)
	})
}

type writerFunc func([]byte) (int, error)

func (fn writerFunc) Write(b []byte) (int, error) { return fn(b) }

// Close waits for the copies to drain what the container wrote, then closes
// the log. Every process of the container's pid namespace is gone once its
// pid 1 is, so the pipes end at once; one held open some other way is cut
// once nothing came through it for a few seconds (a slow reader of run's
// output is waited for).
func (f *foregroundIO) Close() {
	f.started()
	done := make(chan struct{})
	go func() {
		f.copying.Wait()
		close(done)
	}()
	f.active.Store(time.Now().UnixNano())
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for cut := false; ; {
		select {
		case <-done:
		case <-tick.C:
			idle := time.Since(time.Unix(0, f.active.Load()))
			if !cut && f.writing.Load() == 0 && idle > 5*time.Second {
				for _, r := range f.readers {
					r.Close()
				}
				cut = true
			}
			continue
		}
		break
	}
	signal.Stop(f.sigpipe)
	f.mu.Lock()
	if f.log != nil {
		f.log.Close()
		f.log = nil
	}
	f.mu.Unlock()
}
