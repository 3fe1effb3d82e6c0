package mountcmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	units "github.com/docker/go-units"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// drawableTerminal is a terminal with a known width (a pty without a size, as under
// script(1) with no terminal, cannot show bars: plain lines then).
func drawableTerminal(f *os.File) bool {
	if !isTerminal(f) {
		return false
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	return err == nil && ws.Col > 0
}

// progressReporter shows per-blob progress for load, save and import: mpb bars
// (bytes, rate) when w is a terminal, one plain line per finished blob otherwise,
// nothing when quiet. Finish waits for the bars to draw their last state.
type progressReporter struct {
	verb string
	w    io.Writer
	bars *mpb.Progress
	mu   sync.Mutex
}

var _ blobstore.Progress = (*progressReporter)(nil)

// newProgress returns nil (no progress) when quiet.
func newProgress(verb string, w io.Writer, quiet bool) *progressReporter {
	if quiet {
		return nil
	}
	p := &progressReporter{verb: verb, w: w}
	if f, ok := w.(*os.File); ok && drawableTerminal(f) {
		p.bars = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return p
}

// progress gives the blobstore.Progress, nil-safe.
func (p *progressReporter) progress() blobstore.Progress {
	if p == nil {
		return nil
	}
	return p
}

// Track starts one blob's bar (or line).
func (p *progressReporter) Track(name string, total int64) blobstore.ProgressTracker {
	label := shortBlobName(name)
	if p.bars == nil {
		return &lineTracker{p: p, label: label}
	}
	bar := p.bars.AddBar(total,
		mpb.PrependDecorators(decor.Name(p.verb+" "+label, decor.WC{W: len(p.verb) + 14, C: decor.DindentRight})),
		mpb.AppendDecorators(
			decor.CountersKiloByte("% .1f / % .1f", decor.WC{W: 22}),
			decor.Name(" "),
			decor.AverageSpeed(decor.SizeB1000(0), "% .1f", decor.WC{W: 12}),
		),
	)
	return &barTracker{bar: bar, start: time.Now()}
}

// Finish waits for the bars to finish drawing.
func (p *progressReporter) Finish() {
	if p != nil && p.bars != nil {
		p.bars.Wait()
	}
}

// shortBlobName shortens "sha256:<hex>" and blobs/sha256/<hex> paths to 12 hex digits.
func shortBlobName(name string) string {
	name = strings.TrimPrefix(name, "./") // a tar of an OCI layout made with "tar -C dir ."
	name = strings.TrimPrefix(name, "blobs/sha256/")
	name = strings.TrimPrefix(name, "sha256:")
	if i := strings.Index(name, "/"); i == 64 || (i < 0 && len(name) >= 64) {
		return name[:12]
	}
	return name
}

type barTracker struct {
	bar   *mpb.Bar
	start time.Time
	n     int64
}

func (t *barTracker) Write(b []byte) (int, error) {
	t.n += int64(len(b))
	t.bar.EwmaIncrBy(len(b), time.Since(t.start))
	t.start = time.Now()
	return len(b), nil
}

func (t *barTracker) Done(err error) {
	if err != nil {
		t.bar.Abort(false)
		return
	}
	t.bar.SetTotal(t.n, true)
}

type lineTracker struct {
	p     *progressReporter
	label string
	n     int64
	start time.Time
}

func (t *lineTracker) Write(b []byte) (int, error) {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	t.n += int64(len(b))
	return len(b), nil
}

func (t *lineTracker) Done(err error) {
	if err != nil {
		return
	}
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	fmt.Fprintf(t.p.w, "%s %s: %s\n", t.p.verb, t.label, units.HumanSizeWithPrecision(float64(t.n), 3))
}
