package mountcmd

// A container's output: docker keeps every container's output for `logs`,
// foreground or detached, with each line's stream and time (its json-file
// log driver: `logs` keeps stdout and stderr apart, -t and --since read the
// times), and gives a container without -t pipes, not the user's terminal.
// containerIO does both: the container writes into pipes; run copies what
// comes out to the user (in the foreground) and appends it, a JSON record
// per line, to work/<name>/container-json.log.

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/build"
)

// containerJSONLogPath is the container's log in docker's json-file format.
// containerLogPath (container.log), raw, is what earlier layerfs versions wrote.
func containerJSONLogPath(w *workContainer) string {
	return filepath.Join(w.Dir(), "container-json.log")
}

// logRecord is one line of the log, as docker's json-file driver writes it.
type logRecord struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// containerLog appends records to the log; a log that fails (a full disk) is
// given up, the run goes on.
type containerLog struct {
	mu sync.Mutex
	f  *os.File // nil: closed or failed
}

func openContainerLog(w *workContainer) *containerLog {
	f, err := os.OpenFile(containerJSONLogPath(w), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return &containerLog{}
	}
	return &containerLog{f: f}
}

func (l *containerLog) write(stream string, line []byte) {
	b, err := json.Marshal(logRecord{Log: string(line), Stream: stream, Time: time.Now().UTC()})
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if _, err := l.f.Write(b); err != nil {
		l.f.Close()
		l.f = nil
	}
}

func (l *containerLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// maxLogLine is the longest record: a longer line is split, as docker's 16 KiB.
const maxLogLine = 16 << 10

// logStream writes one stream into the log, a record per line; a line without
// its newline yet waits for it (or for flush).
type logStream struct {
	log     *containerLog
	name    string // stdout or stderr
	mu      sync.Mutex
	partial []byte
}

// Write never fails: the log is a copy of the output, not its destination.
func (s *logStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, b...)
	rest := s.partial
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		switch {
		case i >= 0 && i < maxLogLine:
			s.log.write(s.name, rest[:i+1])
			rest = rest[i+1:]
		case len(rest) >= maxLogLine: // too long a line: split
			s.log.write(s.name, rest[:maxLogLine])
			rest = rest[maxLogLine:]
		default: // the start of a line: kept for its newline (or flush)
			s.partial = append(s.partial[:0], rest...)
			return len(b), nil
		}
	}
	s.partial = s.partial[:0]
	return len(b), nil
}

func (s *logStream) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.partial) > 0 {
		s.log.write(s.name, s.partial)
		s.partial = nil
	}
}

// containerIO is a run's side of its container's stdout and stderr.
type containerIO struct {
	log     *containerLog
	streams [2]*logStream // stdout, stderr
	copying sync.WaitGroup
	readers []*os.File
	writers []*os.File // the container's ends: closed in run once it has them
	sigpipe chan os.Signal
	// For Close: a copy writing to the user is waited for however long it
	// takes; pipes idle for a few seconds after the container's end are cut.
	writing atomic.Int32
	active  atomic.Int64 // unix nanoseconds of the last read
}

// openContainerIO opens w's log and, without a terminal (tty false), the pipes
// the container writes its stdout and stderr into, copied to the log and to
// stdout and stderr (nil: to the log only, for a detached run). It returns
// what to give the container as its stdout and stderr: the pipes; with tty,
// the writer for the terminal's output (stdout, and the log). A stdout and
// stderr that are one file (2>&1) get one pipe, so their order is kept.
func openContainerIO(w *workContainer, tty bool, stdout, stderr *os.File) (c *containerIO, cout, cerr io.Writer, err error) {
	c = &containerIO{log: openContainerLog(w), sigpipe: make(chan os.Signal, 1)}
	c.streams = [2]*logStream{{log: c.log, name: "stdout"}, {log: c.log, name: "stderr"}}
	// A reader of our output that goes away (run ... | head) must be an EPIPE
	// for the copy, not SIGPIPE killing run before it unmounts; the copy then
	// closes the pipe and the container gets the EPIPE (or SIGPIPE) itself.
	signal.Notify(c.sigpipe, unix.SIGPIPE)
	if tty {
		var out io.Writer = c.streams[0]
		if stdout != nil {
			out = io.MultiWriter(c.streams[0], stdout)
		}
		return c, out, nil, nil
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	c.readers, c.writers = append(c.readers, outR), append(c.writers, outW)
	c.copy(outR, c.streams[0], stdout)
	if stdout != nil && stderr != nil && build.SameOpenFile(stdout, stderr) && !isTerminal(stdout) {
		return c, outW, outW, nil // 2>&1 into a file or pipe: kept in order, logged as stdout
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	c.readers, c.writers = append(c.readers, errR), append(c.writers, errW)
	c.copy(errR, c.streams[1], stderr)
	return c, outW, errW, nil
}

// started closes run's copies of the container's ends of the pipes: the
// copies then end when the container's last process has closed them.
func (c *containerIO) started() {
	for _, w := range c.writers {
		w.Close()
	}
	c.writers = nil
}

// copy copies r to the log and to out (nil: none) until r ends or out fails;
// on a failure of out it closes r, so that the container's next write fails
// as it would have on out.
func (c *containerIO) copy(r *os.File, log *logStream, out *os.File) {
	c.copying.Add(1)
	go func() {
		defer c.copying.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			c.active.Store(time.Now().UnixNano())
			if n > 0 {
				log.Write(buf[:n])
				if out != nil {
					c.writing.Add(1)
					_, werr := out.Write(buf[:n])
					c.writing.Add(-1)
					if werr != nil {
						r.Close()
						return
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

// Close waits for the copies to drain what the container wrote, then closes
// the log. Every process of the container's pid namespace is gone once its
// pid 1 is, so the pipes end at once; one held open some other way is cut
// once nothing came through it for a few seconds (a slow reader of run's
// output is waited for).
func (c *containerIO) Close() {
	c.started()
	done := make(chan struct{})
	go func() {
		c.copying.Wait()
		close(done)
	}()
	c.active.Store(time.Now().UnixNano())
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for cut := false; ; {
		select {
		case <-done:
		case <-tick.C:
			idle := time.Since(time.Unix(0, c.active.Load()))
			if !cut && c.writing.Load() == 0 && idle > 5*time.Second {
				for _, r := range c.readers {
					r.Close()
				}
				cut = true
			}
			continue
		}
		break
	}
	signal.Stop(c.sigpipe)
	for _, s := range c.streams {
		s.flush()
	}
	c.log.close()
}
