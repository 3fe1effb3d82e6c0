package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
)

// TestPodmanForceMask: with force_mask in storage.conf, containers/storage stores
// layer files masked (0755, root's) with their real owner and mode in
// user.containers.override_stat and passes xattr_permissions=2 to the
// mount_program, which must show the real ones (rev19-podman finding 1: layerfs
// showed the masked ones and refused uid 1000 its own file and /tmp). What a
// container changes must reach its commit: the chmod and the new entries of
// uid 1000 (fuse-overlayfs 1.10, the oracle for the first part, commits /d/f
// without its chmod and /tmp/new masked, so the commit part is layerfs's only).
func TestPodmanForceMask(t *testing.T) {
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, program string }{
		{"fuse-overlayfs", "fuse-overlayfs"},
		{"layerfs", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog := mountProgram(t, tc.program)
			bb := testenv.RequireTool(t, "busybox")
			p := newPodmanEnv(t, prog, `force_mask = "shared"`)

			// A busybox rootfs with a file of uid 1000 (0644) and a 1777 /tmp.
			r := t.TempDir()
			for _, d := range []string{"bin", "d", "tmp"} {
				must(t, os.Mkdir(filepath.Join(r, d), 0o755))
			}
			b, err := os.ReadFile(bb)
			must(t, err)
			must(t, os.WriteFile(filepath.Join(r, "bin/busybox"), b, 0o755))
			for _, a := range []string{"sh", "stat", "chmod", "mkdir", "echo"} {
				must(t, os.Symlink("busybox", filepath.Join(r, "bin", a)))
			}
			must(t, os.WriteFile(filepath.Join(r, "d/f"), []byte("x\n"), 0o644))
			must(t, os.Chown(filepath.Join(r, "d/f"), 1000, 1000))
			must(t, os.Chmod(filepath.Join(r, "tmp"), 0o1777))
			tarball := filepath.Join(t.TempDir(), "bb.tar")
			if out, err := exec.Command("tar", "-C", r, "-cf", tarball, ".").CombinedOutput(); err != nil {
				t.Fatalf("tar: %v: %s", err, out)
			}
			p.ok("import", "-q", tarball, "localhost/fm:1")

			// (containers/storage 4.3 keeps no sticky bit in the override: 777.)
			if got, want := p.ok("run", "--rm", "localhost/fm:1", "stat", "-c", "%a %u %g %n", "/d/f", "/tmp"), "644 1000 1000 /d/f\n777 0 0 /tmp\n"; got != want {
				t.Errorf("stat in the container = %q, want %q", got, want)
			}
			out, errOut, err := p.run("run", "--name", "c1", "--user", "1000:1000", "localhost/fm:1", "sh", "-c",
				"echo a >> /d/f && echo own-ok; echo n > /tmp/new && echo tmp-ok; chmod 600 /d/f")
			if err != nil && tc.program == "" {
				t.Errorf("uid 1000's run: %v: %s", err, errOut)
			}
			if out != "own-ok\ntmp-ok\n" {
				t.Errorf("uid 1000 in the container printed %q (%s), want own-ok, tmp-ok", out, errOut)
			}
			if tc.program != "" {
				return // the oracle's commit loses the chmod (see above)
			}
			p.ok("commit", "-q", "c1", "localhost/fm:2")
			if got, want := p.ok("run", "--rm", "localhost/fm:2", "stat", "-c", "%a %u %g %n", "/d/f", "/tmp/new"), "600 1000 1000 /d/f\n644 1000 1000 /tmp/new\n"; got != want {
				t.Errorf("stat in the committed image = %q, want %q", got, want)
			}
		})
	}
}
