package cow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// slowReader hands out its bytes in small pieces with pauses, so concurrent fills
// really overlap.
type slowReader struct {
	r *bytes.Reader
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	if len(p) > 4096 {
		p = p[:4096]
	}
	return s.r.Read(p)
}
func (s *slowReader) Close() error { return nil }

func testLayer(t testing.TB, seed string) ([]byte, digest.Digest) {
	b := buildTar(t, dir("d"), reg("d/"+seed, strings.Repeat(seed, 20000)),
		tarEntry{hdr: dirHdr("ro", 0o555)}, reg("ro/f", "x"))
	return b, digest.FromBytes(b)
}

func TestEnsure(t *testing.T) {
	c := &LayerCache{Dir: filepath.Join(tempDir(t), "layers")}
	b, d := testLayer(t, "a")
	var opens atomic.Int32
	open := func() (io.ReadCloser, error) {
		opens.Add(1)
		return &slowReader{bytes.NewReader(b)}, nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	paths := make([]string, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = c.Ensure(context.Background(), d, open)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || paths[i] != c.Path(d) {
			t.Errorf("Ensure #%d = %q, %v; want %q", i, paths[i], err, c.Path(d))
		}
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("8 concurrent Ensure opened the layer %d times, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(c.Path(d), "d/a")); err != nil {
		t.Errorf("layer content: %v", err)
	}
	if p, err := c.Ensure(context.Background(), d, open); err != nil || p != c.Path(d) || opens.Load() != 1 {
		t.Errorf("Ensure again = %q, %v (opens %d); want no new unpack", p, err, opens.Load())
	}
	assertNoTemp(t, c.Dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temp dir %s left in %s", e.Name(), dir)
		}
	}
}

func TestEnsureMismatch(t *testing.T) {
	c := &LayerCache{Dir: tempDir(t)}
	b, _ := testLayer(t, "a")
	wrong := digest.FromString("something else")
	_, err := c.Ensure(context.Background(), wrong, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Ensure(wrong diffID) = %v, want ErrDigestMismatch", err)
	}
	if _, err := os.Stat(c.Path(wrong)); !os.IsNotExist(err) {
		t.Errorf("layer dir exists after a mismatch: %v", err)
	}
	assertNoTemp(t, c.Dir)

	// A stream that fails half way leaves nothing either.
	_, d := testLayer(t, "b")
	_, err = c.Ensure(context.Background(), d, func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(bytes.NewReader(b[:3000]), errReader{})), nil
	})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Ensure(failing stream) = %v, want the stream's error", err)
	}
	if _, err := os.Stat(c.Path(d)); !os.IsNotExist(err) {
		t.Errorf("layer dir exists after a failed unpack")
	}
	assertNoTemp(t, c.Dir)

	// A temp dir left by a crashed fill of the layer is cleared by the next fill.
	stale := filepath.Join(c.Dir, tmpPrefix+d.Encoded()+"-crashed")
	writeFile(t, filepath.Join(stale, "x"), "x", 0o644)
	b2, _ := testLayer(t, "b")
	if _, err := c.Ensure(context.Background(), d, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b2)), nil
	}); err != nil {
		t.Fatal(err)
	}
	assertNoTemp(t, c.Dir)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

// TestEnsureProcesses: two processes filling the same layer at once both succeed
// and only one unpacks.
func TestEnsureProcesses(t *testing.T) {
	dir := tempDir(t)
	b, d := testLayer(t, "p")
	tarPath := filepath.Join(dir, "layer.tar")
	must(t, os.WriteFile(tarPath, b, 0o644))
	count := filepath.Join(dir, "opens")
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 2; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnsureHelperProcess$")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = append(os.Environ(), "COW_HELPER=1", "COW_DIR="+filepath.Join(dir, "layers"),
			"COW_TAR="+tarPath, "COW_DIGEST="+d.String(), "COW_COUNT="+count)
		must(t, cmd.Start())
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v\n%s", i, err, outs[i])
		}
	}
	n, _ := os.ReadFile(count)
	if len(n) != 1 {
		t.Errorf("two processes opened the layer %d times, want 1", len(n))
	}
}

func TestEnsureHelperProcess(t *testing.T) {
	if os.Getenv("COW_HELPER") != "1" {
		t.Skip("helper for TestEnsureProcesses")
	}
	c := &LayerCache{Dir: os.Getenv("COW_DIR")}
	_, err := c.Ensure(context.Background(), digest.Digest(os.Getenv("COW_DIGEST")), func() (io.ReadCloser, error) {
		f, err := os.OpenFile(os.Getenv("COW_COUNT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		f.Write([]byte("x"))
		f.Close()
		time.Sleep(300 * time.Millisecond) // hold the lock while the other process starts
		b, err := os.ReadFile(os.Getenv("COW_TAR"))
		return &slowReader{bytes.NewReader(b)}, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestEnsureAllAndPrune(t *testing.T) {
	c := &LayerCache{Dir: tempDir(t)}
	var srcs []LayerSource
	for i := 0; i < 5; i++ {
		b, d := testLayer(t, fmt.Sprint(i))
		srcs = append(srcs, LayerSource{DiffID: d, Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}})
	}
	paths, err := c.EnsureAll(context.Background(), srcs)
	must(t, err)
	for i, p := range paths {
		if p != c.Path(srcs[i].DiffID) || !isDir(p) {
			t.Errorf("EnsureAll path %d = %s, want %s unpacked", i, p, c.Path(srcs[i].DiffID))
		}
	}
	// One bad layer fails the lot.
	bad := append([]LayerSource{}, srcs...)
	bad = append(bad, LayerSource{DiffID: digest.FromString("x"), Open: srcs[0].Open})
	if _, err := c.EnsureAll(context.Background(), bad); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("EnsureAll(with a bad layer) = %v, want ErrDigestMismatch", err)
	}
	// A stale temp dir (read-only inside) is pruned too.
	stale := filepath.Join(c.Dir, tmpPrefix+srcs[0].DiffID.Encoded()+"-123")
	must(t, os.MkdirAll(filepath.Join(stale, "ro"), 0o755))
	writeFile(t, filepath.Join(stale, "ro/f"), "x", 0o444)
	must(t, os.Chmod(filepath.Join(stale, "ro"), 0o555))

	must(t, c.Prune(map[digest.Digest]bool{srcs[1].DiffID: true, srcs[3].DiffID: true}))
	for i, s := range srcs {
		if want := i == 1 || i == 3; isDir(c.Path(s.DiffID)) != want {
			t.Errorf("after Prune, layer %d present = %v, want %v", i, !want, want)
		}
	}
	assertNoTemp(t, c.Dir)
}

// TestEnsureWaitCancelled: a caller waiting for another's fill gives up with its ctx.
func TestEnsureWaitCancelled(t *testing.T) {
	c := &LayerCache{Dir: tempDir(t)}
	b, d := testLayer(t, "w")
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := c.Ensure(context.Background(), d, func() (io.ReadCloser, error) {
			close(started)
			<-release
			return io.NopCloser(bytes.NewReader(b)), nil
		})
		done <- err
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Ensure(ctx, d, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ensure while another fills, ctx expiring = %v, want DeadlineExceeded", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("first Ensure: %v", err)
	}
}
