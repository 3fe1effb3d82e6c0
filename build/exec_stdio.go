package build

import (
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// execStreamGrace is how long exec's copies of the process's output go on
// after it exited: what it wrote is in the pipes or the pty by then, and a
// process it left in the background may hold them open for ever (docker's
// daemon waits 2 s for an exec's streams too).
const execStreamGrace = 2 * time.Second

// execStdio is an exec'd process's stdio: pipes, or with Tty a pty of the
// container's own, relayed to and from the caller's. The process never gets
// the caller's files: on the caller's terminal it could push input into the
// caller's shell (TIOCSTI), and through /proc/self/fd it could reopen a
// file the caller redirected to with other flags.
type execStdio struct {
	ttyRelay
	child   []*os.File // the process's ends: closed here once it has them
	readers []*os.File // the output pipes' read ends
	stdinW  *os.File   // the stdin pipe's write end (with a Stdin)
	copying sync.WaitGroup
	sigpipe chan os.Signal
}

// pipes sets cmd's stdio up as pipes: stdin from spec.Stdin (nil: the host's
// /dev/null), stdout and stderr copied to spec's. A Stdout and Stderr that are
// one open file (2>&1) share a pipe, so their order is kept.
func (s *execStdio) pipes(spec ExecSpec) (stdin, stdout, stderr *os.File, err error) {
	if spec.Stdin == nil {
		if stdin, err = os.Open(os.DevNull); err != nil {
			return nil, nil, nil, err
		}
		s.child = append(s.child, stdin)
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, nil, err
		}
		stdin, s.stdinW = r, w
		s.child = append(s.child, r)
		go func() {
			io.Copy(w, spec.Stdin)
			w.Close() // EOF for the process, as docker's exec -i gives
		}()
	}
	// A reader of our output that goes away (exec ... | head) must be an EPIPE
	// for the copy, not SIGPIPE killing exec: the copy then closes the pipe and
	// the process gets the EPIPE (or SIGPIPE) itself.
	s.sigpipe = make(chan os.Signal, 1)
	signal.Notify(s.sigpipe, unix.SIGPIPE)
	if stdout, err = s.output(spec.Stdout); err != nil {
		return nil, nil, nil, err
	}
	if SameOpenFile(spec.Stdout, spec.Stderr) {
		return stdin, stdout, stdout, nil
	}
	if stderr, err = s.output(spec.Stderr); err != nil {
		return nil, nil, nil, err
	}
	return stdin, stdout, stderr, nil
}

// output is a pipe whose read end is copied to out (nil: discarded) and
// whose write end is returned for the process.
func (s *execStdio) output(out io.Writer) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	s.readers, s.child = append(s.readers, r), append(s.child, w)
	if out == nil {
		out = io.Discard
	}
	s.copying.Add(1)
	go func() {
		defer s.copying.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if _, werr := out.Write(buf[:n]); werr != nil {
					r.Close() // the process's next write fails as ours did
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return w, nil
}

// SameOpenFile reports whether a and b are one open file (dup'd fds, as for
// 2>&1): then one pipe serves both, and their order is kept.
func SameOpenFile(a, b io.Writer) bool {
	fa, ok := a.(*os.File)
	fb, ok2 := b.(*os.File)
	if !ok || !ok2 {
		return false
	}
	sa, err := fa.Stat()
	if err != nil {
		return false
	}
	sb, err := fb.Stat()
	return err == nil && os.SameFile(sa, sb)
}

// started closes our copies of the process's ends: the output copies then end
// when the process (and whatever it passed them to) has closed them.
func (s *execStdio) started() {
	for _, f := range s.child {
		f.Close()
	}
	s.child = nil
}

// close ends the relay once the process has exited: the output is copied
// until its end or execStreamGrace, then everything is closed and the
// caller's terminal gets its mode back. It is also what undoes a failed start.
func (s *execStdio) close() {
	s.started()
	if s.stdinW != nil {
		s.stdinW.Close() // the stdin copy ends at its next write
	}
	deadline := time.Now().Add(execStreamGrace)
	for _, r := range s.readers {
		r.SetReadDeadline(deadline)
	}
	s.copying.Wait()
	for _, r := range s.readers {
		r.Close()
	}
	if s.sigpipe != nil {
		signal.Stop(s.sigpipe)
	}
	s.detachPty(execStreamGrace)
}
