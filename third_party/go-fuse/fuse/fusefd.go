// Copyright 2026 the Go-FUSE Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package fuse

import (
	"log"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// fuseFD owns the per-FUSE-fd state: the fd itself, the read-side
// bookkeeping (reqReaders, inflightRequestBytes), and the WaitGroup
// tracking reader goroutines on this fd. The pools are shared with the
// owning Server via pointers, and a back pointer to the Server gives the
// per-fd methods access to shared configuration and callbacks.
//
// Today a Server has a single fuseFD; this struct exists so that adding
// support for FUSE_DEV_IOC_CLONE'd fds is a matter of widening the field
// to a slice.
type fuseFD struct {
	server *Server

	// I/O with kernel and daemon. file owns the FUSE fd; conn is its
	// RawConn. Running syscalls through conn holds a reference on the
	// fd, so concurrent writers and close() are safe against the fd
	// number being reused without any explicit locking.
	file *os.File
	conn syscall.RawConn

	reqMu                sync.Mutex
	reqReaders           int
	inflightRequestBytes int

	// loops tracks reader goroutines servicing fd.
	loops sync.WaitGroup

	// For MountOptions.ReaderSpawnDelay, under reqMu: since when no
	// reader has been waiting while a request was being handled
	// (zero: a reader waits, or nothing is handled), whether a reader
	// saw the device end, and the watcher's wake-up channel when it
	// sleeps for want of work.
	starvedSince time.Time
	ended        bool
	watcherWake  chan struct{}

	// For MountOptions.ReaderSpawnDelay: requests to handle before the
	// next look for queued ones, and the last gap (pollTurn).
	pollSkip, pollEvery atomic.Int32

	// Shared pools owned by Server.
	reqPool  *sync.Pool
	readPool *sync.Pool
	buffers  *bufferPool

	// Accounting constants, set once at server construction.
	reqAllocBytes int
	readBufBytes  int
}

// newFuseFD returns a fuseFD bound to ms and ready to read from fd.
// Ownership of fd passes to the returned fuseFD's *os.File. All shared
// state (pools, buffer pool, accounting constants) is wired up here.
func (ms *Server) newFuseFD(fd int) (*fuseFD, error) {
	file := os.NewFile(uintptr(fd), "/dev/fuse")
	conn, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, err
	}
	_, readBufBytes, reqAllocBytes := requestAccountingSizes(ms.opts.MaxWrite)
	return &fuseFD{
		server:        ms,
		file:          file,
		conn:          conn,
		reqPool:       &ms.reqPool,
		readPool:      &ms.readPool,
		buffers:       &ms.buffers,
		reqAllocBytes: reqAllocBytes,
		readBufBytes:  readBufBytes,
	}, nil
}

// withFD runs f with the underlying FUSE file descriptor, holding a
// reference on it for the duration so the fd cannot be closed (and its
// number reused) while f runs. This is what lets concurrent writers and
// close() run without a serializing mutex. The error is non-nil only
// when the fd is already closed, in which case f is not called.
func (r *fuseFD) withFD(f func(fd int)) error {
	return r.conn.Control(func(fd uintptr) {
		f(int(fd))
	})
}

// writevFD writes iov to the FUSE fd, holding a reference against
// concurrent close. The error is the underlying syscall error, or a
// non-syscall error if the fd is already closed.
func (r *fuseFD) writevFD(iov [][]byte) (int, error) {
	var n int
	var err error
	if cerr := r.withFD(func(fd int) {
		n, err = writev(fd, iov)
	}); cerr != nil {
		return 0, cerr
	}
	return n, err
}

// readRequest reads one request from the kernel. Returns nil, OK if
// there are too many concurrent readers or insufficient request-bytes
// budget.
func (r *fuseFD) readRequest() (req *requestAlloc, code Status) {
	ms := r.server
	lazy := ms.opts.ReaderSpawnDelay > 0
	r.reqMu.Lock()
	if r.reqReaders > ms.maxReaders || (lazy && r.reqReaders > 0) || !r.reserveRequestBytes() {
		r.reqMu.Unlock()
		return nil, OK
	}
	r.reqReaders++
	r.starvedSince = time.Time{}
	r.reqMu.Unlock()

	req = r.reqPool.Get().(*requestAlloc)
	dest := r.readPool.Get().([]byte)

	var n int
	err := handleEINTR(func() error {
		var err error
		if cerr := r.withFD(func(fd int) {
			n, err = syscall.Read(fd, dest)
		}); cerr != nil {
			return cerr
		}
		return err
	})
	if err != nil {
		r.reqMu.Lock()
		r.putReadBuf(dest)
		r.putReq(req)
		r.reqReaders--
		if err != syscall.ENOENT {
			r.ended = true
			if r.watcherWake != nil {
				close(r.watcherWake)
				r.watcherWake = nil
			}
		}
		r.reqMu.Unlock()
		return nil, ToStatus(err)
	}

	// A lazy reader starts another one only when more requests wait.
	// FORGETs never start one (below), so they need not look, nor do
	// RELEASEs: the kernel sends both in the background, no caller
	// waits for them, and the watcher covers a slow one.
	pending := false
	if lazy && n >= int(unsafe.Sizeof(InHeader{})) {
		switch ((*InHeader)(unsafe.Pointer(&dest[0]))).Opcode {
		case _OP_FORGET, _OP_BATCH_FORGET, _OP_RELEASE, _OP_RELEASEDIR:
		default:
			if r.pollTurn() {
				pending = r.pending()
				r.polled(pending)
			}
		}
	}

	r.reqMu.Lock()
	defer r.reqMu.Unlock()
	gobbled := req.setInput(dest[:n])
	if len(req.inputBuf) < int(unsafe.Sizeof(InHeader{})) {
		log.Printf("Short read for input header: %v", req.inputBuf)
		r.putReadBuf(dest)
		r.putReq(req)
		r.reqReaders--
		return nil, EINVAL
	}
	opCode := ((*InHeader)(unsafe.Pointer(&req.inputBuf[0]))).Opcode
	/* These messages don't expect reply, so they cost nothing for
	   the kernel to send. Make sure we're not overwhelmed by not
	   spawning a new reader.
	*/
	needsBackPressure := (opCode == _OP_FORGET || opCode == _OP_BATCH_FORGET)

	if !gobbled {
		r.putReadBuf(dest)
	}
	r.reqReaders--
	if !ms.singleReader && r.reqReaders <= 0 && (lazy || !needsBackPressure) {
		if (!lazy || pending) && !needsBackPressure {
			r.loops.Add(1)
			go ms.loop()
		} else if r.starvedSince.IsZero() {
			// Handled with no reader waiting, FORGETs too: the
			// watcher starts one if this takes ReaderSpawnDelay.
			r.starvedSince = time.Now()
			if r.watcherWake != nil {
				close(r.watcherWake)
				r.watcherWake = nil
			}
		}
	}

	return req, OK
}

// maxPollEvery bounds how many requests a lazy reader handles between
// two looks for queued ones, when the last looks found none.
const maxPollEvery = 16

// pollTurn reports whether the request just read should look for
// queued ones. A serial client (tar, rm) never has any queued, and the
// look is a system call per request; so after each look that found
// none, the next comes twice as many requests later, up to
// maxPollEvery, and after one that found some, at the next request.
func (r *fuseFD) pollTurn() bool {
	if r.pollSkip.Load() > 0 {
		r.pollSkip.Add(-1)
		return false
	}
	return true
}

// polled records what a look for queued requests found.
func (r *fuseFD) polled(found bool) {
	every := int32(1)
	if !found {
		every = min(max(2*r.pollEvery.Load(), 1), maxPollEvery)
	}
	r.pollEvery.Store(every)
	r.pollSkip.Store(every - 1)
}

// pending reports whether the kernel has a request queued on the
// device. The zero-timeout poll never blocks.
func (r *fuseFD) pending() bool {
	var pending bool
	r.withFD(func(fd int) {
		pfd := struct {
			fd      int32
			events  int16
			revents int16
		}{fd: int32(fd), events: 0x1} // POLLIN
		var ts syscall.Timespec
		n, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		pending = errno == 0 && n > 0 && pfd.revents&0x1 != 0
	})
	return pending
}

// watchReaders runs for MountOptions.ReaderSpawnDelay: it starts a
// reader when requests have been handled for that long with none
// waiting on the device, so that a slow request does not hold up the
// others. After two looks that found nothing being handled it sleeps
// on a channel until a reader takes a request with none left waiting:
// ticking on through a sparse workload (a build) woke a thread every
// delay, which cost the build more than the wake-ups it saved.
func (r *fuseFD) watchReaders() {
	delay := r.server.opts.ReaderSpawnDelay
	idle := 0
	for {
		r.reqMu.Lock()
		if r.ended {
			r.reqMu.Unlock()
			return
		}
		var wake chan struct{}
		switch {
		case r.starvedSince.IsZero():
			idle++
			if idle >= 2 {
				wake = make(chan struct{})
				r.watcherWake = wake
				idle = 0
			}
		case time.Since(r.starvedSince) >= delay:
			idle = 0
			r.starvedSince = time.Time{}
			r.loops.Add(1)
			go r.server.loop()
		default:
			idle = 0
		}
		r.reqMu.Unlock()
		if wake != nil {
			<-wake
			continue
		}
		time.Sleep(delay)
	}
}

// returnRequest returns a request to the pool of unused requests.
func (r *fuseFD) returnRequest(req *requestAlloc) {
	if req.bufferPoolOutputBuf != nil {
		r.buffers.FreeBuffer(req.bufferPoolOutputBuf)
		req.bufferPoolOutputBuf = nil
	}
	if req.interrupted {
		req.interrupted = false
		req.cancel = make(chan struct{}, 0)
	}
	req.clear()

	r.reqMu.Lock()
	if p := req.bufferPoolInputBuf; p != nil {
		req.bufferPoolInputBuf = nil
		r.putReadBuf(p)
	}
	r.putReq(req)
	r.reqMu.Unlock()
}

func (r *fuseFD) reserveRequestBytes() bool {
	if !r.canReserveRequestBytes() {
		return false
	}
	r.inflightRequestBytes += r.requestBytes()
	return true
}

func (r *fuseFD) canReserveRequestBytes() bool {
	return r.inflightRequestBytes == 0 ||
		r.requestBytes() <= r.server.opts.MaxInflightRequestBytes-r.inflightRequestBytes
}

// canAcceptAnother wraps canReserveRequestBytes with reqMu, for callers
// that don't already hold the lock.
func (r *fuseFD) canAcceptAnother() bool {
	r.reqMu.Lock()
	defer r.reqMu.Unlock()
	return r.canReserveRequestBytes()
}

func (r *fuseFD) requestBytes() int {
	return r.reqAllocBytes + r.readBufBytes
}

func (r *fuseFD) putReadBuf(buf []byte) {
	r.readPool.Put(buf)
	r.inflightRequestBytes -= r.readBufBytes
}

func (r *fuseFD) putReq(req *requestAlloc) {
	r.reqPool.Put(req)
	r.inflightRequestBytes -= r.reqAllocBytes
}

// close closes the underlying FUSE fd. The *os.File waits for in-flight
// RawConn operations (reads, writes, ioctls) before releasing the fd.
func (r *fuseFD) close() error {
	return r.file.Close()
}

func (r *fuseFD) writev(iov [][]byte) (int, syscall.Errno) {
	n, err := r.writevFD(iov)
	if err == nil {
		return n, 0
	}
	errno, ok := err.(syscall.Errno)
	if !ok {
		// The fd is closed; report it as such.
		return n, syscall.EBADF
	}
	if errno == syscall.EINVAL {
		// Detail: the kernel returns EINVAL for unsupported
		// notify methods.
		errno = syscall.ENOSYS
	}
	return n, errno
}

func (r *fuseFD) writeWithSlice(req *request, ws withSlice) Status {
	slices, st := ws.Slices()
	if !st.Ok() {
		return st
	}
	bufs := make([][]byte, 0, 2+len(slices))
	bufs = append(bufs, req.outHeaderBuf, req.outDataBuf)
	bufs = append(bufs, slices...)
	_, err := r.writevFD(bufs)
	return ToStatus(err)
}
