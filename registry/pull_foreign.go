package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

// A foreign (non-distributable) layer is one whose descriptor lists URLs, or a
// Docker foreign layer. docker on Linux fetches it from the registry by digest
// like any layer; containers/image also tries its URLs. A pull does both: the
// registry first, then each http(s) URL in order; the first that answers 200 is
// the one read. Its content is checked against the descriptor's digest as any
// layer's, and it is read no further than the descriptor's size and a byte, so
// a URL cannot make a pull download more than the manifest says. Registry
// credentials are never sent to a URL.

// foreign reports a layer whose descriptor makes it foreign.
func foreign(l v1.Descriptor) bool {
	return len(l.URLs) > 0 || l.MediaType == types.DockerForeignLayer
}

// foreignClient fetches foreign layers' URLs: the environment's proxy, the system's
// CAs, nothing of any registry's configuration.
var foreignClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	// The blob's bytes as stored: Go would otherwise ask for gzip and undo
	// a server's Content-Encoding: gzip of a .tar.gz, whose digest then fails.
	t.DisableCompression = true
	return &http.Client{Transport: t}
}()

// openForeign opens foreign layer l: from the registry, else from the first of its
// URLs that serves it. from is the URL it came from ("" for the registry). When
// every source fails, the error is one line naming the layer and each source with
// its failure.
func (f *layerFetch) openForeign(ctx context.Context, l v1.Descriptor) (rc io.ReadCloser, from string, err error) {
	d := digest.Digest(l.Digest.String())
	var tried []string
	rc, err = f.registryBlob(ctx, l.Digest)
	if err == nil {
		return rc, "", nil
	}
	if ctx.Err() != nil {
		return nil, "", context.Cause(ctx)
	}
	tried = append(tried, "registry: "+oneLine(classify(err)).Error())
	for _, u := range l.URLs {
		rc, err := f.openURL(ctx, u, l.Size)
		if err == nil {
			return rc, u, nil
		}
		if ctx.Err() != nil {
			return nil, "", context.Cause(ctx)
		}
		tried = append(tried, u+": "+err.Error())
	}
	if len(l.URLs) == 0 {
		tried = append(tried, "no URLs")
	}
	return nil, "", fmt.Errorf("download foreign layer %s: %w (tried %s)", d, ErrNotFound, strings.Join(tried, "; "))
}

// openURL GETs one URL of a foreign layer of size bytes.
func (f *layerFetch) openURL(ctx context.Context, u string, size int64) (io.ReadCloser, error) {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, errors.New("not an http or https URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.urlClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named already
		}
		return nil, oneLine(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	return limitedBody{io.LimitReader(resp.Body, size+1), resp.Body}, nil
}

// limitedBody reads a response body no further than its limit.
type limitedBody struct {
	io.Reader
	io.Closer
}
