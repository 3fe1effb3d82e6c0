package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCommitRunningLeavesRuntimeStubsOut: the empty /etc/hosts, /etc/resolv.conf
// and /etc/hostname a run binds over (and /proc, /dev, /sys, /etc for an image
// without them) are the runtime's, as in docker's init layer: diff and commit of
// the running container left them in (an unchanged container committed a layer
// of empty files), while after it stopped they were gone.
func TestCommitRunningLeavesRuntimeStubsOut(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	mustRun(t, "import", "-q", scratchBusyboxTar(t), "bbscratch")
	t.Cleanup(func() { run(t, "rm", "-f", "c1", "c2") })

	mustRun(t, "run", "-d", "--name", "c1", "busybox", "sleep", "600")
	mustRun(t, "run", "-d", "--name", "c2", "bbscratch", "/busybox", "sleep", "600")
	for _, c := range []struct{ name, image string }{{"c1", "busybox"}, {"c2", "bbscratch"}} {
		if got := mustRun(t, "diff", c.name); got != "" {
			t.Errorf("diff %s (unchanged, running) = %q, want nothing", c.name, got)
		}
		mustRun(t, "commit", c.name, "snap-"+c.name)
		if got, want := layerCount(t, "snap-"+c.name), layerCount(t, c.image); got != want {
			t.Errorf("commit of unchanged running %s: %d layers, want %d (no layer, as docker)", c.name, got, want)
		}
	}

	// --squash: the image's whole tree, without them either.
	mustRun(t, "commit", "--squash", "c2", "snap-squash")
	if got, want := strings.Join(topLayerNames(t, "snap-squash"), " "), "busybox"; got != want {
		t.Errorf("commit --squash of unchanged running c2 = %q, want %q", got, want)
	}

	// A real change is still committed, without the stubs beside it.
	mustRun(t, "exec", "c1", "sh", "-c", "echo x > /etc/motd")
	if got, want := mustRun(t, "diff", "c1"), "C /etc\nA /etc/motd\n"; got != want {
		t.Errorf("diff c1 = %q, want %q", got, want)
	}
	mustRun(t, "commit", "c1", "snap-motd")
	if got, want := strings.Join(topLayerNames(t, "snap-motd"), " "), "etc/ etc/motd"; got != want {
		t.Errorf("committed layer of c1 = %q, want %q", got, want)
	}

	// --rebase: the stubs stay in the running container (its mounts sit on
	// them), out of the layer it now runs on, and go when it stops. Its mounts
	// stay too: the rebase's entry invalidation detached every one of them
	// (/proc, /dev, /sys, the etc binds), /etc/hostname was the empty stub.
	mustRun(t, "exec", "c1", "sh", "-c", "echo y > /tmp/y")
	mountsBefore := mustRun(t, "exec", "c1", "sh", "-c", "cut -d' ' -f5 /proc/self/mountinfo | sort")
	hostname := mustRun(t, "exec", "c1", "cat", "/etc/hostname")
	mustRun(t, "commit", "--rebase", "c1", "snap-rebased")
	time.Sleep(200 * time.Millisecond) // the kernel's caches are dropped in the background
	if got := mustRun(t, "exec", "c1", "sh", "-c", "cut -d' ' -f5 /proc/self/mountinfo | sort"); got != mountsBefore {
		t.Errorf("c1's mounts after commit --rebase:\n%s\nbefore:\n%s", got, mountsBefore)
	}
	if got := mustRun(t, "exec", "c1", "cat", "/etc/hostname"); got != hostname || got == "" {
		t.Errorf("c1's /etc/hostname after commit --rebase = %q, want %q", got, hostname)
	}
	// Nor at the next listing: the carried stubs are the nodes they were (a
	// first fix kept the entries, and the next ls / replaced them, mounts gone).
	mustRun(t, "exec", "c1", "ls", "-la", "/", "/etc", "/tmp")
	if got := mustRun(t, "exec", "c1", "sh", "-c", "cut -d' ' -f5 /proc/self/mountinfo | sort"); got != mountsBefore {
		t.Errorf("c1's mounts after commit --rebase and ls:\n%s\nbefore:\n%s", got, mountsBefore)
	}
	// c2 has nothing to commit but the stubs: no layer, and still its mounts.
	mounts2 := mustRun(t, "exec", "c2", "/busybox", "sh", "-c", "/busybox cut -d' ' -f5 /proc/self/mountinfo | /busybox sort")
	mustRun(t, "commit", "--rebase", "c2", "snap-c2-rebased")
	time.Sleep(200 * time.Millisecond)
	mustRun(t, "exec", "c2", "/busybox", "ls", "-la", "/", "/etc")
	if got := mustRun(t, "exec", "c2", "/busybox", "sh", "-c", "/busybox cut -d' ' -f5 /proc/self/mountinfo | /busybox sort"); got != mounts2 {
		t.Errorf("c2's mounts after commit --rebase of no change:\n%s\nbefore:\n%s", got, mounts2)
	}
	if got, want := strings.Join(topLayerNames(t, "snap-rebased"), " "), "etc/ etc/motd tmp/ tmp/y"; got != want {
		t.Errorf("layer of commit --rebase = %q, want %q", got, want)
	}
	if r := run(t, "exec", "c1", "sh", "-c", "test -f /etc/hostname && test -f /etc/hosts && test -f /etc/resolv.conf"); r.Code != 0 {
		t.Errorf("after commit --rebase, exec c1: the etc files are gone: exit %d %s", r.Code, r.Stderr)
	}
	if got := mustRun(t, "diff", "c1"); got != "" {
		t.Errorf("diff c1 after commit --rebase = %q, want nothing", got)
	}
	// A chmod of a dir the runtime made (/etc of an image without one) is a
	// change; once committed with --rebase it is not one any more, and the dir
	// goes with the stubs at the end (it showed as changed after every rebase).
	mustRun(t, "run", "-d", "--name", "c3", "bbscratch", "/busybox", "sleep", "600")
	t.Cleanup(func() { run(t, "rm", "-f", "c3") })
	mustRun(t, "exec", "c3", "/busybox", "chmod", "700", "/etc")
	if got, want := mustRun(t, "diff", "c3"), "A /etc\n"; got != want {
		t.Errorf("diff c3 after chmod of the runtime's /etc = %q, want %q", got, want)
	}
	mustRun(t, "commit", "--rebase", "c3", "snap-c3")
	if got := mustRun(t, "diff", "c3"); got != "" {
		t.Errorf("diff c3 after commit --rebase = %q, want nothing", got)
	}
	mustRun(t, "stop", "-t", "0", "c3")
	if got := mustRun(t, "diff", "c3"); got != "" {
		t.Errorf("diff c3 after commit --rebase and stop = %q, want nothing", got)
	}
	mustRun(t, "stop", "-t", "0", "c1", "c2")
	for _, name := range []string{"c1", "c2"} {
		if got := mustRun(t, "diff", name); got != "" {
			t.Errorf("diff %s after stop = %q, want nothing", name, got)
		}
		dir := filepath.Join(rootFor(t), "work", name)
		uppers, _ := filepath.Glob(filepath.Join(dir, "upper*"))
		for _, u := range uppers {
			if ents, err := os.ReadDir(u); err != nil || len(ents) != 0 {
				t.Errorf("%s after stop: upper dir %s holds %v (%v), want it empty", name, u, ents, err)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "runtime-paths.json")); !os.IsNotExist(err) {
			t.Errorf("%s after stop: runtime-paths.json is still there (%v)", name, err)
		}
	}
}

// scratchBusyboxTar is a rootfs tar holding only /busybox (an image FROM
// scratch: no /etc, /proc, /dev or /sys).
func scratchBusyboxTar(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		bb = "/bin/busybox"
	}
	dir := t.TempDir()
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "rootfs.tar")
	if b, err := exec.Command("tar", "--owner=0", "--group=0", "--numeric-owner", "-C", rootfs, "-cf", out, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	return out
}

// layerCount is how many layers image ref has.
func layerCount(t *testing.T, ref string) int {
	t.Helper()
	var layers []string
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "-f", "{{json .RootFS.Layers}}", ref)), &layers); err != nil {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	return len(layers)
}

// topLayerNames lists the entries of image ref's top layer, as `save` writes it.
func topLayerNames(t *testing.T, ref string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "save.tar")
	mustRun(t, "save", "-o", out, ref)
	entries := readTarFile(t, out)
	var manifest []struct{ Layers []string }
	for _, e := range entries {
		if e.hdr.Name == "manifest.json" {
			if err := json.Unmarshal(e.body, &manifest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(manifest) != 1 || len(manifest[0].Layers) == 0 {
		t.Fatalf("save %s: manifest.json = %+v", ref, manifest)
	}
	top := manifest[0].Layers[len(manifest[0].Layers)-1]
	for _, e := range entries {
		if e.hdr.Name != top {
			continue
		}
		var r io.Reader = bytes.NewReader(e.body)
		if bytes.HasPrefix(e.body, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		var names []string
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return names
			}
			if err != nil {
				t.Fatalf("layer %s of %s: %v", top, ref, err)
			}
			names = append(names, h.Name)
		}
	}
	t.Fatalf("save %s: no layer %s", ref, top)
	return nil
}
