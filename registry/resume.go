package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"
)

// A blob download that breaks off is resumed where it stopped, as moby resumes
// a layer download at the offset its temp file reached (a Range request; moby's
// pull_v2 layerDescriptor, HTTPReadSeeker): before, a pull restarted the layer
// from byte 0, so a connection that dropped every few hundred MiB never got a
// big layer in. The resume happens under go-containerregistry, in the base
// transport, so the blob still reads as one stream to everything above it: the
// library's size and digest checks, the store's staging and the layer check.
//
// A body is resumed at most maxDownloadAttempts-1 times; then its error says
// so (errResumesSpent) and fetchLayer does not start the layer again. A resume
// the server does not honour (it answers 200, the whole blob) skips what had
// arrived; any other answer (a 401 once a token expired, a 404 once a signed
// URL did, a Content-Range that starts elsewhere) ends the body with the
// break's own error, and fetchLayer downloads the layer again from its start,
// through go-containerregistry, with fresh credentials.

// errResumesSpent marks a download that broke off once more after its last
// resume.
var errResumesSpent = errors.New("resumed too many times")

// blobURL reports whether p is a registry API path of a blob download,
// /v2/<name>/blobs/<digest> (not an upload: /v2/<name>/blobs/uploads/...).
func blobURL(p string) bool {
	dir, base := path.Split(p)
	return strings.HasPrefix(p, "/v2/") && strings.HasSuffix(dir, "/blobs/") && strings.Contains(base, ":")
}

// resumingBody is the body of a blob download, req the request (the last of
// its redirect chain) that got it, rt the transport to resume it by.
type resumingBody struct {
	rt      http.RoundTripper
	req     *http.Request
	body    io.ReadCloser
	size    int64 // the blob's, from the first answer's Content-Length; -1 unknown
	got     int64 // bytes read so far
	resumes int
	broke   error // the break a Read that returned data met
	failed  error // the break that ended the body
}

func (b *resumingBody) Read(p []byte) (int, error) {
	if b.failed != nil {
		return 0, b.failed
	}
	for {
		n, err := 0, b.broke
		if err == nil {
			n, err = b.body.Read(p)
			b.got += int64(n)
			if err == nil || err == io.EOF {
				return n, err
			}
			if n > 0 {
				b.broke = err // the data now, the break on the next Read
				return n, nil
			}
		}
		b.broke = nil
		if b.size >= 0 && b.got >= b.size {
			return 0, io.EOF // all there: the digest is the judge
		}
		if b.req.Context().Err() != nil {
			b.failed = err // stopped: nothing to resume
			return 0, err
		}
		if b.resumes == maxDownloadAttempts-1 {
			b.failed = fmt.Errorf("%w (%d times): %w", errResumesSpent, b.resumes, err)
			return 0, b.failed
		}
		b.resumes++
		if !b.resume() {
			b.failed = err
			return 0, err
		}
	}
}

// resume waits as fetchLayer waits between attempts, then asks for the rest of
// the blob; false if it has not got it.
func (b *resumingBody) resume() bool {
	t := time.NewTimer(time.Duration(b.resumes) * retryDelay)
	defer t.Stop()
	select {
	case <-b.req.Context().Done():
		return false
	case <-t.C:
	}
	req := b.req.Clone(b.req.Context())
	rng := fmt.Sprintf("bytes=%d-", b.got)
	if b.size > 0 {
		// the end too: go-containerregistry's registry takes no open range
		rng += fmt.Sprint(b.size - 1)
	}
	req.Header.Set("Range", rng)
	resp, err := b.rt.RoundTrip(req)
	if err != nil {
		return false
	}
	skip := int64(0)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var start int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start); err != nil || start != b.got {
			resp.Body.Close()
			return false
		}
	case http.StatusOK:
		skip = b.got // no ranges here: the whole blob again
	default:
		resp.Body.Close()
		return false
	}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			resp.Body.Close()
			return false
		}
	}
	b.body.Close()
	b.body = resp.Body
	return true
}

func (b *resumingBody) Close() error { return b.body.Close() }
