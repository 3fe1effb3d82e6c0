package mountcmd

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/layerfs/layerfs/registry"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// newTransferProgress picks how pull and push show per-layer progress: nothing with quiet,
// live bars when out is a terminal, docker's plain status lines otherwise. Call
// the returned done once the transfer has ended (ok or not) before printing more.
func newTransferProgress(out io.Writer, quiet bool) (registry.Progress, func()) {
	if quiet {
		return nil, func() {}
	}
	if f, ok := out.(*os.File); ok && isTerminal(f) && terminalWidth(f) > 0 {
		p := &barProgress{out: out, bars: map[string]*layerBar{}}
		return p, p.done
	}
	return &lineProgress{out: out, last: map[string]registry.Status{}}, func() {}
}

// terminalWidth is f's width in columns (0 if unknown: mpb would draw nothing).
func terminalWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

// lineProgress prints docker's non-terminal output: one line per status change,
// without the byte counts.
type lineProgress struct {
	mu   sync.Mutex
	out  io.Writer
	last map[string]registry.Status
}

func (p *lineProgress) Header(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.out, line)
}

func (p *lineProgress) Layer(id string, s registry.Status, _, _ int64) {
	if s == registry.StatusDownloading || s == registry.StatusPushing {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last[id] == s {
		return
	}
	p.last[id] = s
	fmt.Fprintf(p.out, "%s: %s\n", id, s)
}

// barProgress draws one mpb bar per layer, labelled with docker's status word.
type barProgress struct {
	mu   sync.Mutex
	out  io.Writer
	p    *mpb.Progress
	bars map[string]*layerBar
	ids  []string
}

type layerBar struct {
	bar    *mpb.Bar
	mu     sync.Mutex
	status registry.Status
}

func (l *layerBar) get() registry.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

func (p *barProgress) Header(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p != nil {
		fmt.Fprintln(p.p, line)
		return
	}
	fmt.Fprintln(p.out, line)
}

func (p *barProgress) Layer(id string, s registry.Status, cur, total int64) {
	p.mu.Lock()
	if p.p == nil {
		p.p = mpb.New(mpb.WithOutput(p.out), mpb.WithWidth(50))
	}
	lb := p.bars[id]
	if lb == nil {
		lb = &layerBar{status: s}
		// A zero total keeps the bar from completing by itself: the final status
		// completes it (mpb ignores SetTotal on bars made with a total).
		lb.bar = p.p.AddBar(0,
			mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return id + ": " + string(lb.get()) }, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Any(func(st decor.Statistics) string {
				if st.Completed || st.Total <= 0 {
					return ""
				}
				return fmt.Sprintf("%.1f/%.1f", decor.SizeB1024(st.Current), decor.SizeB1024(st.Total))
			})),
			mpb.BarFillerClearOnComplete(),
		)
		p.bars[id] = lb
		p.ids = append(p.ids, id)
	}
	p.mu.Unlock()

	lb.mu.Lock()
	lb.status = s
	lb.mu.Unlock()
	switch {
	case s == registry.StatusDownloading || s == registry.StatusPushing:
		if total > 0 {
			lb.bar.SetTotal(total, false)
		}
		lb.bar.SetCurrent(cur)
	case s.Final():
		lb.bar.SetTotal(-1, true)
	}
}

// done stops the bars (aborting those that never finished) and waits for the
// last render.
func (p *barProgress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p == nil {
		return
	}
	for _, id := range p.ids {
		if b := p.bars[id].bar; !b.Completed() {
			b.Abort(false)
		}
	}
	p.p.Wait()
}
