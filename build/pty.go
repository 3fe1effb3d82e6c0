package build

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// openPty opens a new pseudo-terminal pair on the host's devpts and returns the
// master, the slave and the slave's path.
func openPty() (master, slave *os.File, name string, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, "", fmt.Errorf("open pty: %w", err)
	}
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

// attachPty connects the user's stdio to the container's terminal: the user's
// terminal (if stdin is one) goes raw, input is copied in (only with a Stdin),
// output out, and the window size follows.
func (p *Process) attachPty(spec ProcessSpec) {
	if f, ok := spec.Stdin.(*os.File); ok && isTerminal(f) {
		if restore, err := makeRaw(f); err == nil {
			p.restore = restore
		}
	}
	p.resizePty()
	if spec.Stdin != nil {
		go io.Copy(p.pty, spec.Stdin) // ends with the process: the pty is closed then
	}
	out := spec.Stdout
	if out == nil {
		out = io.Discard
	}
	p.copying.Add(1)
	go func() {
		defer p.copying.Done()
		io.Copy(out, p.pty) // EIO once every slave fd is closed
	}()
}

// resizePty copies the user's window size (from stdout or stdin) to the container's terminal.
func (p *Process) resizePty() {
	if p.pty == nil {
		return
	}
	for _, f := range []*os.File{os.Stdout, os.Stdin} {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			unix.IoctlSetWinsize(int(p.pty.Fd()), unix.TIOCSWINSZ, ws)
			return
		}
	}
}
