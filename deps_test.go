package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection pins ARCHITECTURE.md's import rules: blobstore and cow are
// leaves, fs never sees images, and only mountcmd and build compose the pieces.
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/layerfs/layerfs/"
	forbidden := map[string][]string{
		"blobstore": {"cow", "fs", "mountcmd", "build", "registry", "github.com/hanwen/go-fuse"},
		"cow":       {"blobstore", "fs", "mountcmd", "build", "registry", "github.com/hanwen/go-fuse"},
		"fs":        {"blobstore", "mountcmd", "build", "registry"},
		"registry":  {"cow", "fs", "mountcmd", "build", "github.com/hanwen/go-fuse"},
		"build":     {"mountcmd"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "./"+pkg).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "no Go files") || strings.Contains(string(out), "matched no packages") || strings.Contains(string(out), "cannot find") || strings.Contains(string(out), "directory not found") {
				continue // package not written yet
			}
			t.Fatalf("go list -deps ./%s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				target := b
				if !strings.Contains(b, ".") {
					target = mod + b
				}
				if dep == target || strings.HasPrefix(dep, target+"/") {
					t.Errorf("%s imports %s, which ARCHITECTURE.md forbids", pkg, dep)
				}
			}
		}
	}
}
