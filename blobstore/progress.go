package blobstore

import "io"

// Progress receives the bytes of each blob that load and save copy, for progress
// bars. Track is called once per blob, from one goroutine at a time.
type Progress interface {
	Track(name string, total int64) ProgressTracker
}

// ProgressTracker gets a copy of every byte of one blob as it passes, then Done.
type ProgressTracker interface {
	io.Writer
	Done(err error)
}

type nopProgress struct{}

func (nopProgress) Track(string, int64) ProgressTracker { return nopTracker{} }

type nopTracker struct{}

func (nopTracker) Write(p []byte) (int, error) { return len(p), nil }
func (nopTracker) Done(error)                  {}

func orNop(p Progress) Progress {
	if p == nil {
		return nopProgress{}
	}
	return p
}
