package mountcmd

// Helpers shared by commit, diff and export: image configs, layer dirs, fresh upper
// dirs, terminal checks and commit's progress line.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
	"github.com/layerfs/layerfs/cow"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// decodeImageConfig reads img's config as stored, keeping docker's extension fields
// (OnBuild, Healthcheck, Shell) that ocispec.Image drops.
func decodeImageConfig(img *blobstore.Image, out *dockerspec.DockerOCIImage) error {
	if len(img.RawConfig) == 0 {
		out.Image = img.Config
		out.Config.ImageConfig = img.Config.Config
		return nil
	}
	if err := json.Unmarshal(img.RawConfig, out); err != nil {
		return fmt.Errorf("config of image %s: %w", img.ID, err)
	}
	return nil
}

// containerLowers are the lower dirs a working container sits on: the ones it was
// last mounted with, or its image's when it has none recorded.
func containerLowers(ctx context.Context, g *globalOptions, store *blobstore.Store, st *workState, img *blobstore.Image) ([]string, error) {
	if l, ok := recordedLowers(st); ok {
		return l, nil
	}
	return ensureLayers(ctx, g, store, img)
}

// recordedLowers are the lower dirs st names, if it names some and all are there.
func recordedLowers(st *workState) ([]string, bool) {
	if len(st.Lowers) == 0 {
		return nil, false
	}
	for _, l := range st.Lowers {
		if fi, err := os.Stat(l); err != nil || !fi.IsDir() {
			return nil, false
		}
	}
	return st.Lowers, true
}

// readableLowers are the lower dirs of container w (state st) for a command that
// only reads it (diff, export, cp): its image's, or, when another tool took that
// image from the store (umoci rm and gc), the ones it was last mounted with, which
// gc keeps for it. Before, such a container's work could only be dug out of its
// upper dir by hand (review rev23-oci).
func readableLowers(ctx context.Context, g *globalOptions, store *blobstore.Store, w *workContainer, st *workState) ([]string, error) {
	img, err := imageOfContainer(store, w, st)
	if err != nil {
		return lowersWithoutImage(st, err)
	}
	return containerLowers(ctx, g, store, st, img)
}

// lowersWithoutImage are the lowers st records, for a read of a container whose
// image did not read with err: only when the image is gone and they are there.
func lowersWithoutImage(st *workState, err error) ([]string, error) {
	if l, ok := recordedLowers(st); ok && errors.Is(err, blobstore.ErrNotFound) {
		return l, nil
	}
	return nil, err
}

// freshUpper makes a new empty upper dir in dir with the root metadata (mode, owner,
// times, which are the merged tree's root) of the old one.
func freshUpper(dir, old string) (string, error) {
	p, err := os.MkdirTemp(dir, "upper-")
	if err != nil {
		return "", fmt.Errorf("new upper dir: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(old, &st); err == nil {
		err = os.Lchown(p, int(st.Uid), int(st.Gid))
		if err == nil { // after chown, which clears set-id bits
			err = os.Chmod(p, os.FileMode(st.Mode&0o777)|build.FileModeBits(st.Mode))
		}
		if err == nil {
			err = unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, st.Mtim}, 0)
		}
		if err != nil {
			cow.RemoveAll(p)
			return "", fmt.Errorf("new upper dir: %w", err)
		}
	} else if err := os.Chmod(p, 0o755); err != nil {
		cow.RemoveAll(p)
		return "", fmt.Errorf("new upper dir: %w", err)
	}
	return p, nil
}

// writerIsTerminal reports whether w is a terminal.
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// commitProgress shows, on a terminal, one line that the commit rewrites in place:
// bytes read from the upper dir (the uncompressed tar), compressed bytes written,
// and the rate. Nothing when the output is not a terminal.
type commitProgress struct {
	read, written atomic.Int64
	shown         atomic.Bool // a line was printed: finish it on stop
	out           io.Writer
	start         time.Time
	done          chan struct{}
	wg            sync.WaitGroup
}

func startCommitProgress(out io.Writer) *commitProgress {
	p := &commitProgress{out: out, start: time.Now(), done: make(chan struct{})}
	if !writerIsTerminal(out) {
		p.out = nil
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.shown.Store(true)
				fmt.Fprintf(p.out, "\r\x1b[K%s", p.line())
			}
		}
	}()
	return p
}

func (p *commitProgress) line() string {
	secs := time.Since(p.start).Seconds()
	r, w := p.read.Load(), p.written.Load()
	rate := 0.0
	if secs > 0 {
		rate = float64(r) / secs
	}
	return fmt.Sprintf("Committing: read %s from the upper dir, wrote %s compressed, %s/s", humanBytes(float64(r)), humanBytes(float64(w)), humanBytes(rate))
}

func (p *commitProgress) stop(ok bool) {
	if p.out == nil {
		return
	}
	close(p.done)
	p.wg.Wait()
	if !p.shown.Load() {
		return
	}
	if ok {
		fmt.Fprintf(p.out, "\r\x1b[K%s\n", p.line())
	} else {
		fmt.Fprint(p.out, "\r\x1b[K")
	}
}

func (p *commitProgress) reader(r io.Reader) io.Reader { return &countingReader{r: r, n: &p.read} }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func humanBytes(n float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for n >= 1000 && i < len(units)-1 {
		n /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// containerConfig is the config a commit of w starts from. docker commits from the
// container's config, not its image's: for a container made by run that is the
// image config with run's command, --entrypoint, -e, -w and -u (run-config.json),
// so the command becomes the new image's Cmd and history created_by. A container
// made by mount starts from its image's config.
func containerConfig(w *workContainer, img dockerspec.DockerOCIImageConfig) (dockerspec.DockerOCIImageConfig, error) {
	b, err := os.ReadFile(runConfigPath(w))
	if errors.Is(err, os.ErrNotExist) {
		return img, nil
	}
	if err != nil {
		return img, fmt.Errorf("container %s: %w", w.name, err)
	}
	var sr savedRun
	if err := json.Unmarshal(b, &sr); err != nil {
		return img, fmt.Errorf("container %s: run-config.json: %w", w.name, err)
	}
	cfg := build.CopyConfig(img)
	if sr.entrypointSet() { // as processSpec: the image's CMD goes too
		cfg.Entrypoint, cfg.Cmd = nil, nil
		if sr.Entrypoint != "" {
			cfg.Entrypoint = []string{sr.Entrypoint}
		}
	}
	if len(sr.Args) > 0 {
		cfg.Cmd = append([]string(nil), sr.Args...)
	}
	for _, e := range sr.Env {
		cfg.Env = setEnvVar(cfg.Env, e)
	}
	if sr.Workdir != "" {
		cfg.WorkingDir = sr.Workdir
	}
	if sr.User != "" {
		cfg.User = sr.User
	}
	// As moby's commit merge: the container's labels (the image's, then
	// run's --label), anonymous -v volumes and --stop-signal are its config.
	if labels := parseLabels(sr.Labels); len(labels) > 0 {
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for k, v := range labels {
			cfg.Labels[k] = v
		}
	}
	if anon := anonymousVolumePaths(sr.Volumes); len(anon) > 0 {
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range anon {
			cfg.Volumes[v] = struct{}{}
		}
	}
	if sr.StopSignal != "" {
		cfg.StopSignal = sr.StopSignal
	}
	return cfg, nil
}

// anonymousVolumePaths are the paths of run's -v CONTAINER (anonymous
// volumes), which docker keeps in the container's Config.Volumes.
func anonymousVolumePaths(vs []string) []string {
	binds, err := parseVolumes(vs)
	if err != nil {
		return nil
	}
	_, anon := anonymousVolumes(binds)
	return anon
}
