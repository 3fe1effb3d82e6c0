package integration

// Build context hardening found in a security review: a hostile context (or
// context tar on stdin) must not get host data into an image.

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBuildContextSwapRaceStaysInContext: a context file swapped for a symlink
// to a host file while COPY walks its dir (renameat2 RENAME_EXCHANGE in a loop)
// is never read through that symlink: each source is opened beneath the context
// with no symlink on the way, not by a path checked earlier (a TOCTOU that got
// the host file's content into the image as a regular file).
func TestBuildContextSwapRaceStaysInContext(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	host := t.TempDir()
	writeFiles(t, host, map[string]string{"secret": "host secret\n"})
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nCOPY d /d/\n"})
	const n = 50
	for i := 0; i < n; i++ {
		name := "f" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		writeFiles(t, ctx, map[string]string{"d/" + name: "context file\n"})
		os.MkdirAll(filepath.Join(ctx, "spare"), 0o755)
		if err := os.Symlink(filepath.Join(host, "secret"), filepath.Join(ctx, "spare", name)); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	entries, _ := os.ReadDir(filepath.Join(ctx, "d"))
	for _, e := range entries {
		a, b := filepath.Join(ctx, "d", e.Name()), filepath.Join(ctx, "spare", e.Name())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 10; i++ {
		if r := run(t, "build", "--no-cache", "-q", "-t", "race", ctx); r.Code != 0 {
			continue // a source that is a symlink when opened fails the build: fine
		}
		if got := run(t, "run", "--rm", "race", "sh", "-c", "cat /d/*"); strings.Contains(got.Stdout, "host secret") {
			t.Fatalf("build %d: a host file swapped into the context was copied into the image", i)
		}
	}
}

// TestBuildStdinContextHostile: a context tar on stdin makes no device nodes
// on the host (COPY of one read the host device: a disk, /dev/mem) nor FIFOs
// (COPY hung on one), and a tar that fails to unpack is an error that leaves
// no temp dir behind (it panicked and kept it).
func TestBuildStdinContextHostile(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	build := func(tarball []byte, tag string) result {
		t.Helper()
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(c, layerfsBin, "--root", rootFor(t), "build", "-t", tag, "-")
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // ^C: it unmounts
		cmd.WaitDelay = 20 * time.Second
		var stdout, stderr bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(tarball), &stdout, &stderr
		err := cmd.Run()
		if c.Err() != nil {
			t.Fatalf("build %s hung:\n%s%s", tag, stdout.String(), stderr.String())
		}
		r := result{Stdout: stdout.String(), Stderr: stderr.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.Code = ee.ExitCode()
		}
		return r
	}
	mktar := func(df string, hs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df)), Typeflag: tar.TypeReg})
		tw.Write([]byte(df))
		for _, h := range hs {
			tw.WriteHeader(h)
		}
		tw.Close()
		return buf.Bytes()
	}
	noTemp := func() {
		t.Helper()
		if entries, _ := os.ReadDir(filepath.Join(rootFor(t), "tmp")); len(entries) != 0 {
			t.Errorf("stdin build left temp files: %v", entries)
		}
	}

	// A block device for a loop device holding a "disk" of the host.
	disk := filepath.Join(t.TempDir(), "disk")
	os.WriteFile(disk, bytes.Repeat([]byte("host disk secret\n"), 256), 0o600)
	if out, err := exec.Command("losetup", "-f", "--show", disk).Output(); err == nil {
		dev := strings.TrimSpace(string(out))
		defer exec.Command("losetup", "-d", dev).Run()
		var st unix.Stat_t
		if err := unix.Stat(dev, &st); err != nil {
			t.Fatal(err)
		}
		r := build(mktar("FROM busybox\nCOPY disk /disk\n",
			&tar.Header{Name: "disk", Mode: 0o600, Typeflag: tar.TypeBlock, Devmajor: int64(unix.Major(st.Rdev)), Devminor: int64(unix.Minor(st.Rdev))}), "dev")
		if r.Code == 0 {
			if got := mustRun(t, "run", "--rm", "dev", "cat", "/disk"); strings.Contains(got, "host disk secret") {
				t.Errorf("COPY of a device node from a stdin context read the host device %s", dev)
			}
		}
		noTemp()
	} else {
		t.Logf("no loop device (%v): device read not checked", err)
	}

	r := build(mktar("FROM busybox\nCOPY fifo /fifo\n", &tar.Header{Name: "fifo", Mode: 0o644, Typeflag: tar.TypeFifo}), "fifo")
	if r.Code == 0 {
		t.Logf("fifo: built (a FIFO is skipped or copied as one)")
	}
	noTemp()

	// A Dockerfile (or .dockerignore) that is a symlink to a host file is not
	// read: its lines came back in parse errors.
	hostDF := filepath.Join(t.TempDir(), "Dockerfile")
	os.WriteFile(hostDF, []byte("FROM busybox\nHOST_SECRET_LINE x\n"), 0o600)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Typeflag: tar.TypeSymlink, Linkname: hostDF})
	tw.WriteHeader(&tar.Header{Name: ".dockerignore", Typeflag: tar.TypeSymlink, Linkname: hostDF})
	tw.Close()
	if r := build(buf.Bytes(), "dflink"); r.Code == 0 || strings.Contains(r.Stdout+r.Stderr, "HOST_SECRET") {
		t.Errorf("a stdin context's Dockerfile symlink read the host file: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	noTemp()

	// A hard link to a missing file fails the unpack.
	r = build(mktar("FROM busybox\n", &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "missing"}), "bad")
	if r.Code == 0 || strings.Contains(r.Stderr, "panic") {
		t.Errorf("bad stdin tar: exit %d, want an error, no panic\n%s", r.Code, r.Stderr)
	}
	noTemp()
}
