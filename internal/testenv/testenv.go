// Package testenv gates tests that need /dev/fuse or root, visibly.
//
// LAYERFS_TEST_FUSE unset: run FUSE tests when /dev/fuse is usable, else skip and say
// why. "1": a missing FUSE is a failure (CI sets it). "0": skip FUSE tests.
package testenv

import (
	"flag"
	"os"
	"os/exec"
	"testing"
)

// RequireFUSE skips (or, with LAYERFS_TEST_FUSE=1, fails) t unless FUSE mounts can be made.
func RequireFUSE(t testing.TB) {
	t.Helper()
	mode := os.Getenv("LAYERFS_TEST_FUSE")
	if mode == "0" {
		t.Skip("LAYERFS_TEST_FUSE=0: FUSE tests disabled")
	}
	reason := fuseUnusable()
	if reason == "" {
		return
	}
	if mode == "1" {
		t.Fatalf("LAYERFS_TEST_FUSE=1 but FUSE is unusable: %s", reason)
	}
	t.Skipf("FUSE unusable (%s); set LAYERFS_TEST_FUSE=1 to make this a failure", reason)
}

func fuseUnusable() string {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return err.Error()
	}
	f.Close()
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return "no fusermount3 for an unprivileged mount"
			}
		}
	}
	return ""
}

// RequireRoot skips t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// RequireTool skips t unless the named program is on PATH; in CI (CI=true) it fails,
// since .ci/run installs every oracle tool.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not on PATH in CI; .ci/run must install it", name)
	}
	t.Skipf("%s not on PATH", name)
	return ""
}

// CapFuzzMinimize lowers go test's minimisation of new fuzz inputs
// (-fuzzminimizetime, 60s by default) to 200 runs unless the flag was given; call
// it from TestMain after flag.Parse. The fuzz engine minimises every input that
// adds coverage before it reports it, and a run of a target that unpacks or loads
// costs milliseconds of syscalls: with the default, a fuzz run spent nearly all
// its time minimising and its status line said 0 execs/sec. Failing inputs are
// minimised within the same limit.
func CapFuzzMinimize() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if !set {
		if err := flag.Set("test.fuzzminimizetime", "200x"); err != nil {
			panic(err)
		}
	}
}
