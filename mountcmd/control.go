package mountcmd

// The control protocol between the CLI and a mount server.
//
// The server listens on <root>/work/<name>/control.sock (mode 0600, in a 0700 dir).
// A connection carries a sequence of requests, each one JSON object on one line,
// each answered by one JSON line, in order:
//
//	{"op":"status"}                      -> {"ok":true,"status":{...serverStatus}}
//	{"op":"pause"}                       -> {"ok":true} once writers are held at the barrier
//	{"op":"resume"}                      -> {"ok":true}
//	{"op":"rebase","rebase":{...}}       -> {"ok":true} once the new stack is live
//	{"op":"stop"}                        -> {"ok":true} once unmounted; the server then exits
//	failure                              -> {"ok":false,"error":"one line"}
//
// A pause belongs to the connection that took it: when that connection closes, for
// whatever reason (the committing process crashed), the server resumes by itself,
// so writers are never held by a client that is gone. Only one pause at a time.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Control operations.
const (
	opStatus = "status"
	opPause  = "pause"
	opResume = "resume"
	opRebase = "rebase"
	opStop   = "stop"
	opSync   = "sync"
)

// errServerGone: no live server answers for the container.
var errServerGone = errors.New("mount server is not running")

type controlRequest struct {
	Op     string         `json:"op"`
	Rebase *RebaseRequest `json:"rebase,omitempty"`
}

type controlResponse struct {
	OK     bool          `json:"ok"`
	Error  string        `json:"error,omitempty"`
	Status *serverStatus `json:"status,omitempty"`
}

// serverStatus is what a live server reports about its mount.
type serverStatus struct {
	Name       string    `json:"name"`
	Mountpoint string    `json:"mountpoint"`
	PID        int       `json:"pid"`
	Paused     bool      `json:"paused"`
	ReadOnly   bool      `json:"readOnly"`
	Lowers     []string  `json:"lowers"`
	Upper      string    `json:"upper"`
	Started    time.Time `json:"started"`
}

// RebaseRequest swaps a live mount onto a new stack (after commit --rebase): Lowers
// are the layer dirs of the committed image, top first; Upper is the fresh (empty)
// upper dir, absolute or relative to the container's dir, on the same filesystem as
// its work/ dir. When the swap succeeded the server records the new stack in
// state.json, with the image fields when they are set, so that ps, rmi, gc and a
// remount after a crash all see the committed image.
type RebaseRequest struct {
	Lowers         []string      `json:"lowers"`
	Upper          string        `json:"upper"`
	ImageID        digest.Digest `json:"imageID,omitempty"`
	ManifestDigest digest.Digest `json:"manifestDigest,omitempty"`
	ImageRef       string        `json:"imageRef,omitempty"`
	// Committed is the lower dir made from the old upper dir; the server keeps the
	// inode numbers its files had in InodeMap (relative to the container's dir).
	Committed string `json:"committed,omitempty"`
	InodeMap  string `json:"inodeMap,omitempty"`
}

// remoteError is a failure the server reported (as opposed to a broken connection).
type remoteError struct{ op, msg string }

func (e *remoteError) Error() string { return e.op + ": " + e.msg }

// controlClient talks to one container's mount server over one connection.
//
// Use (commit, for example), holding the container lock (lockContainer) throughout:
//
//	c, err := dialControl(ctx, w)   // errServerGone if not mounted
//	defer c.Close()                 // also resumes, if this client paused
//	err = c.Pause(ctx)              // writers now wait; readers go on
//	... read the upper dir (cow.Diff) and store the layer ...
//	err = c.Rebase(ctx, RebaseRequest{Lowers: ..., Upper: "upper-2", ImageID: ...})
//	err = c.Resume(ctx)
//
// Methods are not safe for concurrent use; each waits for the server's answer or
// for ctx, whichever comes first.
type controlClient struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialControl connects to the container's server; errServerGone if none listens.
func dialControl(ctx context.Context, w *workContainer) (*controlClient, error) {
	var conn net.Conn
	err := withShortSocketPath(w.socketPath(), func(addr string) error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "unix", addr)
		return err
	})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("container %s: %w", w.name, errServerGone)
		}
		return nil, fmt.Errorf("connect to server of %s: %w", w.name, err)
	}
	return &controlClient{conn: conn, r: bufio.NewReader(conn)}, nil
}

// Close ends the connection; a pause this client holds is lifted by the server.
func (c *controlClient) Close() error { return c.conn.Close() }

// Status asks the server for its state.
func (c *controlClient) Status(ctx context.Context) (*serverStatus, error) {
	resp, err := c.call(ctx, controlRequest{Op: opStatus})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("status: empty answer")
	}
	return resp.Status, nil
}

// Pause raises the write barrier and returns once it holds: new writes wait, and
// the upper dir is consistent until Resume or Close.
func (c *controlClient) Pause(ctx context.Context) error {
	_, err := c.call(ctx, controlRequest{Op: opPause})
	return err
}

// Sync has the server write the mount's dirty pages back into the upper dir
// (commit --pause=false: stores into shared mappings are then in the commit).
// A server from before the op (a mount an older layerfs serves) has nothing to
// sync: that is no error.
func (c *controlClient) Sync(ctx context.Context) error {
	_, err := c.call(ctx, controlRequest{Op: opSync})
	var remote *remoteError
	if errors.As(err, &remote) && strings.HasPrefix(remote.msg, "unknown operation") {
		return nil
	}
	return err
}

// Resume lifts this client's pause.
func (c *controlClient) Resume(ctx context.Context) error {
	_, err := c.call(ctx, controlRequest{Op: opResume})
	return err
}

// Rebase swaps the mount onto r's stack (see RebaseRequest). Called while this
// client holds a pause, the pause stays in force and the writes it holds land in
// the new upper once resumed; otherwise the swap waits for in-flight writes.
func (c *controlClient) Rebase(ctx context.Context, r RebaseRequest) error {
	_, err := c.call(ctx, controlRequest{Op: opRebase, Rebase: &r})
	return err
}

// Stop unmounts; the server exits after answering.
func (c *controlClient) Stop(ctx context.Context) error {
	_, err := c.call(ctx, controlRequest{Op: opStop})
	return err
}

func (c *controlClient) call(ctx context.Context, req controlRequest) (*controlResponse, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.Op, err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%s: %w", req.Op, ctxErr(ctx, err))
	}
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.Op, ctxErr(ctx, err))
	}
	var resp controlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("%s: bad answer: %w", req.Op, err)
	}
	if !resp.OK {
		return nil, &remoteError{op: req.Op, msg: resp.Error}
	}
	return &resp, nil
}

// ctxErr prefers the context's error over the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// withShortSocketPath calls f with an address for the socket at path. Unix socket
// paths are limited to 107 bytes; a longer one is reached through
// /proc/self/fd/<dirfd>/<name>, which the kernel resolves like any path.
func withShortSocketPath(path string, f func(addr string) error) error {
	if len(path) < 100 {
		return f(path)
	}
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	return f(fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)))
}
