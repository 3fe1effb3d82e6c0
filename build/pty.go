package build

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// openPty opens a new pseudo-terminal pair on the devpts that /dev/ptmx of the
// calling thread's root leads to (the host's for run -t; the container's own
// for exec -t, which calls it from a thread inside the container, so that the
// process's terminal is a /dev/pts/N there as in docker) and returns the
// master, the slave and the slave's path under that root.
func openPty() (master, slave *os.File, name string, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, "", fmt.Errorf("open pty: %w", err)
	}
	return ptyPair(m)
}

// ptyPair unlocks the pty whose master m is and opens its slave; it closes m on
// failure.
func ptyPair(m *os.File) (master, slave *os.File, name string, err error) {
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, "", fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, "", fmt.Errorf("pty number: %w", err)
	}
	name = fmt.Sprintf("/dev/pts/%d", n)
	// The slave through the master (Linux 4.13): no path is looked up, so
	// whatever a container mounted on its /dev/pts is never opened.
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno == 0 {
		return m, os.NewFile(fd, name), name, nil
	}
	s, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, "", fmt.Errorf("open pty slave: %w", err)
	}
	return m, s, name, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// makeRaw puts the terminal f in raw mode (cfmakeraw) and returns how to undo it.
func makeRaw(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// ttyRelay is a container process's terminal seen from the user's side: the
// master, the copies between it and the user's stdio, and how to put the
// user's terminal back. run -t and exec -t share it.
type ttyRelay struct {
	pty     *os.File // the master side; nil without a terminal
	copying sync.WaitGroup
	restore func() // the user's terminal mode
	sigpipe chan os.Signal
}

// attachPty connects the user's stdio to the container's terminal: the user's
// terminal (if stdin is one) goes raw, input is copied in (only with a stdin),
// output out, and the window size follows.
func (t *ttyRelay) attachPty(stdin io.Reader, stdout io.Writer) {
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		if restore, err := makeRaw(f); err == nil {
			t.restore = restore
		}
	}
	t.resizePty()
	if stdin != nil {
		go io.Copy(t.pty, stdin) // ends with the process: the pty is closed then
	}
	if stdout == nil {
		stdout = io.Discard
	}
	// A reader of the output that goes away (run -t ... | head) is an EPIPE
	// for the copy, not SIGPIPE killing run or exec before they clean up.
	t.sigpipe = make(chan os.Signal, 1)
	signal.Notify(t.sigpipe, unix.SIGPIPE)
	t.copying.Add(1)
	go func() {
		defer t.copying.Done()
		out := &failedWriter{w: stdout}
		io.Copy(out, t.pty) // EIO once every slave fd is closed
		if out.err != nil {
			// The user's side is gone: hang the terminal up, as a closed
			// terminal does (the process's writes fail, its session gets
			// SIGHUP). Undrained, it would block in a write for good.
			t.pty.Close()
		}
	}()
}

// failedWriter is w, remembering the error of a write that failed.
type failedWriter struct {
	w   io.Writer
	err error
}

func (f *failedWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err != nil {
		f.err = err
	}
	return n, err
}

// resizePty copies the user's window size (from stdout or stdin) to the container's terminal.
func (t *ttyRelay) resizePty() {
	if t.pty == nil {
		return
	}
	for _, f := range []*os.File{os.Stdout, os.Stdin} {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			unix.IoctlSetWinsize(int(t.pty.Fd()), unix.TIOCSWINSZ, ws)
			return
		}
	}
}

// detachPty waits for the output copy, closes the master and gives the user's
// terminal its mode back. With a grace above 0 the copy is cut that long after
// the call: a process left in the background may hold the slave open forever.
func (t *ttyRelay) detachPty(grace time.Duration) {
	if t.pty == nil {
		return
	}
	if grace > 0 {
		t.pty.SetReadDeadline(time.Now().Add(grace))
	}
	t.copying.Wait()
	t.pty.Close()
	if t.sigpipe != nil {
		signal.Stop(t.sigpipe)
	}
	if t.restore != nil {
		t.restore()
	}
}

// userWinsize is the window size of the user's terminal (stdout or stdin), nil
// if neither is one.
func userWinsize() *unix.Winsize {
	for _, f := range []*os.File{os.Stdout, os.Stdin} {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			return ws
		}
	}
	return nil
}

// setupConsole makes the container's terminal, as runc's init does with a
// console socket: a pty of the container's devpts (mounted at rfd's /dev/pts),
// sized as the spec says, its slave bound on /dev/console, made the init's
// controlling terminal (it leads a session of its own) and stdio; the master
// goes to Start over the socket at fd 5. The command's tty is then a
// /dev/pts/N of its own, as in docker.
func setupConsole(rfd *os.File, spec *ProcessSpec) error {
	sock := os.NewFile(5, "console")
	defer sock.Close()
	m, err := openat2InRoot(rfd, "/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY)
	if err != nil {
		return fmt.Errorf("open the container's pty: %w", err)
	}
	master, slave, _, err := ptyPair(m)
	if err != nil {
		return err
	}
	defer master.Close()
	defer slave.Close()
	if spec.ConsoleRows > 0 && spec.ConsoleCols > 0 {
		unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: spec.ConsoleRows, Col: spec.ConsoleCols})
	}
	if err := bindIn(rfd, Bind{Source: fdPath(slave), Target: "/dev/console"}); err != nil {
		return err
	}
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("make the pty the controlling terminal: %w", err)
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
			return fmt.Errorf("pty as stdio: %w", err)
		}
	}
	if err := unix.Sendmsg(int(sock.Fd()), []byte{0}, unix.UnixRights(int(master.Fd())), nil, 0); err != nil {
		return fmt.Errorf("send the pty to layerfs: %w", err)
	}
	return nil
}

// receiveFile reads one fd sent over sock (SCM_RIGHTS); nil if the sender
// closed the socket without sending one.
func receiveFile(sock *os.File, name string) *os.File {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	for {
		_, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || oobn == 0 {
			return nil
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) == 0 {
			return nil
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil
		}
		return os.NewFile(uintptr(fds[0]), name)
	}
}
