package build

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
)

// Build steps mount the image so far (withMountPaths; read-only for COPY
// --from, fromStage) and then read and write through that mount themselves:
// COPY's files, WORKDIR's dirs, chown, the runtime's stubs. The mount is
// served by a process of its own, never by the build: a process killed
// (SIGKILL) while one of its threads waits on a FUSE request that its own
// server goroutines had read can never end (the kernel waits for the answer
// without a way out, and the /dev/fuse fd that would abort the connection is
// that same process's), and it kept its store lease, so gc, rmi and prune
// waited for it until someone ran `umount -f` on the step mount (found by the
// crash review). With the server apart, the build's request is answered and
// the build dies; the server sees it gone and takes the mount down.

// StepMountCommand is the hidden subcommand (argv[1]) under which the binary
// serves a build step's mount; the command line wires it to StepMountMain.
const StepMountCommand = "__build-mount"

// stepMountSpec is what the server is told on fd 3 (one JSON line).
type stepMountSpec struct {
	Dir      string
	Lowers   []string
	Upper    string
	Work     string
	Format   cow.Format
	ReadOnly bool
	FsName   string
}

// stepMount is a live mount served by a child process.
type stepMount struct {
	dir  string
	cmd  *exec.Cmd
	ctl  *os.File // to the server: a line asks it to unmount; EOF (our death) too
	res  *os.File // from the server: "ok" or an error, a line each
	resR *bufio.Reader
}

// mountStep mounts spec at spec.Dir, served by a child process, and returns
// once the mount is live.
func mountStep(spec stepMountSpec) (*stepMount, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", spec.Dir, err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", spec.Dir, err)
	}
	defer ctlR.Close()
	resR, resW, err := os.Pipe()
	if err != nil {
		ctlW.Close()
		return nil, fmt.Errorf("mount %s: %w", spec.Dir, err)
	}
	s := &stepMount{dir: spec.Dir, ctl: ctlW, res: resR, resR: bufio.NewReader(resR)}
	s.cmd = &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"layerfs", StepMountCommand},
		Env:        []string{"PATH=" + os.Getenv("PATH")}, // fusermount3, for a user
		Dir:        "/",
		ExtraFiles: []*os.File{ctlR, resW},
		// What the filesystem logs (the cause of an EIO) is the build's to show.
		Stderr: os.Stderr,
		// Its own process group: a ^C at the terminal is the build's to act
		// on (it unmounts), not a way to pull the mount from under it.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = s.cmd.Start()
	resW.Close()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("mount %s: %w", spec.Dir, err)
	}
	if _, err := ctlW.Write(append(b, '\n')); err != nil {
		s.kill()
		return nil, fmt.Errorf("mount %s: %w", spec.Dir, err)
	}
	if err := s.answer(); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// errServerGone is an answer that never came: the server has ended.
var errServerGone = errors.New("its server ended")

// answer reads the server's next line: nil for "ok", else its error.
func (s *stepMount) answer() error {
	line, err := s.resR.ReadString('\n')
	line = strings.TrimSuffix(line, "\n")
	switch {
	case line == "ok":
		return nil
	case line != "":
		return errors.New(line)
	case err == io.EOF:
		return fmt.Errorf("mount %s: %w", s.dir, errServerGone)
	default:
		return fmt.Errorf("mount %s: %w", s.dir, err)
	}
}

// Unmount unmounts; it fails (EBUSY) while the mount is in use, and may then be
// retried. Once it succeeds the server has ended.
func (s *stepMount) Unmount() error {
	if _, err := s.ctl.Write([]byte("unmount\n")); err == nil {
		if err := s.answer(); err == nil {
			s.close()
			return nil
		} else if !errors.Is(err, errServerGone) {
			return err
		}
	}
	// The server is gone (killed, or it saw the mount go): a dead FUSE mount
	// unmounts as any other, and one that is not there any more is done with.
	s.close()
	if err := unix.Unmount(s.dir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", s.dir, err)
	}
	return nil
}

func (s *stepMount) kill() {
	s.cmd.Process.Kill()
	s.close()
}

func (s *stepMount) close() {
	s.ctl.Close()
	s.res.Close()
	if s.cmd.Process != nil {
		s.cmd.Wait()
	}
}

// StepMountMain is the server side of mountStep: run as `<binary>
// StepMountCommand` with the control pipe on fd 3 and the answer pipe on fd 4.
// It mounts, serves until asked to unmount (or until the mount goes from
// outside), and if the build goes away first (EOF on fd 3) or ctx ends, takes
// the mount down (lazily if busy) and ends.
func StepMountMain(ctx context.Context) int {
	// Answers go into a pipe the build may have left: an EPIPE, not a death
	// (a server dying while it is busy with its own mount would hang it).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctl := bufio.NewReader(os.NewFile(3, "control"))
	res := os.NewFile(4, "answer")
	fail := func(err error) int {
		fmt.Fprintf(res, "%s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	line, err := ctl.ReadBytes('\n')
	if err != nil {
		return fail(fmt.Errorf("build step mount: read its spec: %w", err))
	}
	var spec stepMountSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fail(fmt.Errorf("build step mount: read its spec: %w", err))
	}
	m, err := fs.Mount(spec.Dir, fs.Options{Lowers: spec.Lowers, Upper: spec.Upper, Work: spec.Work,
		Format: spec.Format, ReadOnly: spec.ReadOnly, FsName: spec.FsName})
	if err != nil {
		return fail(err)
	}
	unmounted := make(chan struct{})
	go func() { m.Wait(); close(unmounted) }()
	requests, gone := make(chan struct{}), make(chan struct{})
	go func() {
		for {
			if _, err := ctl.ReadString('\n'); err != nil {
				close(gone)
				return
			}
			requests <- struct{}{}
		}
	}()
	fmt.Fprintln(res, "ok")
	for {
		select {
		case <-unmounted:
			return 0
		case <-requests:
			if err := m.Unmount(); err != nil {
				fmt.Fprintf(res, "%v\n", err)
				continue
			}
			m.Wait()
			fmt.Fprintln(res, "ok")
			return 0
		case <-gone:
		case <-ctx.Done():
		}
		if err := m.Unmount(); err != nil {
			unix.Unmount(spec.Dir, unix.MNT_DETACH)
		}
		select {
		case <-unmounted:
		case <-time.After(10 * time.Second):
		}
		return 0
	}
}
