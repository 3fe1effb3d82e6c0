package mountcmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/layerfs/layerfs/fs"
	"golang.org/x/sys/unix"
)

// pauseTimeout bounds how long a pause request waits for in-flight writes.
const pauseTimeout = 2 * time.Minute

// controlServer answers control requests for one live mount (see control.go).
type controlServer struct {
	w       *workContainer
	m       unionMount
	log     *log.Logger
	started time.Time

	mu       sync.Mutex
	state    *workState // as mounted; updated by rebase
	nextConn int
	pausedBy int // id of the connection holding the pause, 0 if none
	pausing  bool
	stopped  chan struct{} // closed once a stop request unmounted
	stopOnce sync.Once
	stopping atomic.Bool // a stop request is unmounting
}

func newControlServer(w *workContainer, m unionMount, st *workState, lg *log.Logger) *controlServer {
	return &controlServer{w: w, m: m, log: lg, state: st, started: time.Now().UTC(), stopped: make(chan struct{})}
}

// serve accepts connections until l is closed.
func (s *controlServer) serve(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Printf("control: accept: %v", err)
			}
			return
		}
		s.mu.Lock()
		s.nextConn++
		id := s.nextConn
		s.mu.Unlock()
		go s.handleConn(conn, id)
	}
}

func (s *controlServer) handleConn(conn net.Conn, id int) {
	defer conn.Close()
	defer s.releasePause(id)
	pid := peerPID(conn)
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req controlRequest
		var resp controlResponse
		if err := json.Unmarshal(line, &req); err != nil {
			resp.Error = fmt.Sprintf("bad request: %v", err)
		} else {
			resp = s.handle(req, id, pid)
		}
		b, _ := json.Marshal(resp)
		if _, err := conn.Write(append(b, '\n')); err != nil {
			return
		}
		if req.Op == opStop && resp.OK {
			s.stopOnce.Do(func() { close(s.stopped) })
		}
	}
}

// handle answers one request of connection id, whose client is process pid (0:
// unknown).
func (s *controlServer) handle(req controlRequest, id, pid int) controlResponse {
	var err error
	switch req.Op {
	case opStatus:
		return controlResponse{OK: true, Status: s.status()}
	case opPause:
		err = s.pause(id, pid)
	case opResume:
		err = s.resume(id)
	case opRebase:
		err = s.rebase(req.Rebase)
	case opStop:
		err = s.stop()
	case opSync:
		s.mu.Lock()
		paused := s.pausedBy != 0 || s.pausing
		s.mu.Unlock()
		if !paused { // under a pause the WRITEs would wait for it: nothing to do
			ctx, cancel := context.WithTimeout(context.Background(), pauseTimeout)
			err = s.m.Sync(ctx)
			cancel()
		}
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		s.log.Printf("control: %s: %v", req.Op, err)
		return controlResponse{Error: oneLine(err.Error())}
	}
	s.log.Printf("control: %s: ok", req.Op)
	return controlResponse{OK: true}
}

func (s *controlServer) status() *serverStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &serverStatus{
		Name:       s.w.name,
		Mountpoint: s.state.Mountpoint,
		PID:        os.Getpid(),
		Paused:     s.pausedBy != 0,
		ReadOnly:   s.state.ReadOnly,
		Lowers:     s.state.Lowers,
		Upper:      s.w.upperPath(s.state),
		Started:    s.started,
	}
}

// pause pauses the mount for connection id. The client's process is never stopped
// for holding a passthrough file open (it would wait for its own pause).
func (s *controlServer) pause(id, pid int) error {
	s.mu.Lock()
	if s.pausedBy != 0 || s.pausing {
		s.mu.Unlock()
		return errors.New("mount is already paused")
	}
	s.pausing = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), pauseTimeout)
	err := s.m.Pause(ctx, pid)
	cancel()
	s.mu.Lock()
	s.pausing = false
	if err == nil {
		s.pausedBy = id
	}
	s.mu.Unlock()
	return err
}

func (s *controlServer) resume(id int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pausedBy == 0 {
		return errors.New("mount is not paused")
	}
	if s.pausedBy != id {
		return errors.New("mount is paused by another client")
	}
	s.pausedBy = 0
	s.m.Resume()
	return nil
}

// releasePause lifts the pause of a connection that went away.
func (s *controlServer) releasePause(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pausedBy == id {
		s.log.Printf("control: client holding the pause went away: resuming")
		s.pausedBy = 0
		s.m.Resume()
	}
}

func (s *controlServer) rebase(r *RebaseRequest) error {
	if r == nil || r.Upper == "" {
		return errors.New("rebase needs lowers and an upper dir")
	}
	if s.state.ReadOnly {
		return errors.New("read-only mount cannot be rebased")
	}
	upper := r.Upper
	if !filepath.IsAbs(upper) {
		upper = filepath.Join(s.w.Dir(), upper)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mapFile := r.InodeMap
	if r.Committed != "" && mapFile != "" {
		if err := s.m.KeepInodes(filepath.Join(s.w.Dir(), mapFile), r.Committed); err != nil {
			s.log.Printf("rebase: %v: the committed files get new inode numbers", err)
			mapFile = ""
		}
	}
	maps := withInodeMap(s.state, r.Lowers, r.Committed, mapFile)
	old := s.state
	st := *s.state
	st.Lowers = r.Lowers
	st.InodeMaps = maps
	if err := s.rebaseMount(r.Lowers, upper, s.w.inodeMaps(&st)); err != nil {
		return err
	}
	st.Upper = r.Upper
	if rel, err := filepath.Rel(s.w.Dir(), upper); err == nil && !strings.HasPrefix(rel, "..") {
		st.Upper = rel
	}
	if r.ImageID != "" {
		st.ImageID = r.ImageID
		st.ManifestDigest = r.ManifestDigest
		st.ImageRef = r.ImageRef
	}
	// Reread the state on disk (the pid was written after the server started) and
	// apply the new stack to it.
	if disk, err := s.w.load(); err == nil {
		disk.Lowers, disk.Upper, disk.InodeMaps = st.Lowers, st.Upper, st.InodeMaps
		disk.ImageID, disk.ManifestDigest, disk.ImageRef = st.ImageID, st.ManifestDigest, st.ImageRef
		st = *disk
	}
	if err := s.w.save(&st); err != nil {
		// state.json still names the old stack (a full disk): go back to it,
		// so the mount and its state agree. The commit holds a pause, so no
		// write reached the new upper.
		if rerr := s.rebaseMount(old.Lowers, s.w.upperPath(old), s.w.inodeMaps(old)); rerr != nil {
			// It runs on the new stack, unsaved: Status must say so, or the
			// commit would take the new upper for unused and remove it.
			s.state = &st
			return fmt.Errorf("rebased, but %w (going back failed: %v)", err, rerr)
		}
		return fmt.Errorf("not rebased: %w", err)
	}
	s.state = &st
	return nil
}

// rebaseMount swaps the stack, keeping a pause in force (the writers it holds go
// to the new upper). The caller holds s.mu.
func (s *controlServer) rebaseMount(lowers []string, upper string, maps fs.InodeMaps) error {
	if s.pausedBy != 0 {
		return s.m.RebasePaused(lowers, upper, maps)
	}
	return s.m.Rebase(lowers, upper, maps)
}

func (s *controlServer) stop() error {
	s.mu.Lock()
	if s.pausedBy != 0 {
		s.pausedBy = 0
		s.m.Resume()
	}
	s.mu.Unlock()
	s.stopping.Store(true)
	if err := s.m.Unmount(); err != nil { // names the mountpoint
		s.stopping.Store(false)
		return err
	}
	return nil
}

// oneLine keeps the first line of a message (answers and CLI errors are one line).
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// peerPID returns the PID of the process at the other end of a unix socket
// connection, or 0.
func peerPID(conn net.Conn) int {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}
