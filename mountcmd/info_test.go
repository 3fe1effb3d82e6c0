package mountcmd

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestKernelMajorMinor(t *testing.T) {
	for _, tc := range []struct {
		in         string
		maj, minor int
		ok         bool
	}{
		{"6.18.44-fc-v657", 6, 18, true},
		{"6.9.0", 6, 9, true},
		{"5.15.0-91-generic", 5, 15, true},
		{"6.10-rc1", 6, 10, true},
		{"6", 0, 0, false},
		{"", 0, 0, false},
		{"x.y", 0, 0, false},
	} {
		maj, minor, ok := kernelMajorMinor(tc.in)
		if maj != tc.maj || minor != tc.minor || ok != tc.ok {
			t.Errorf("kernelMajorMinor(%q) = %d, %d, %v; want %d, %d, %v", tc.in, maj, minor, ok, tc.maj, tc.minor, tc.ok)
		}
	}
}

func TestPassthroughAvailable(t *testing.T) {
	for _, tc := range []struct {
		euid    int
		release string
		want    bool
		reason  string
	}{
		{0, "6.9.0", true, ""},
		{0, "6.18.44-fc", true, ""},
		{0, "7.0.1", true, ""},
		{0, "6.8.12", false, "needs Linux 6.9 or later, this is 6.8"},
		{0, "5.19.0", false, "needs Linux 6.9 or later, this is 5.19"},
		{1000, "6.18.0", false, "needs root"},
		{0, "weird", false, `unknown kernel release "weird"`},
	} {
		got := passthroughAvailable(tc.euid, tc.release)
		if got.Available != tc.want || got.Reason != tc.reason {
			t.Errorf("passthroughAvailable(%d, %q) = %+v, want %v %q", tc.euid, tc.release, got, tc.want, tc.reason)
		}
	}
}

// TestInfoOutput: the text has docker info's shape; json and templates see the
// same fields, docker's DockerRootDir among them.
func TestInfoOutput(t *testing.T) {
	root := t.TempDir()
	makeContainer(t, root, "c1", 0, nil)
	makeContainer(t, root, "c2", 0, nil)
	info, err := gatherInfo(t.Context(), &globalOptions{root: root})
	if err != nil {
		t.Fatal(err)
	}
	if info.Containers != 2 || info.ContainersStopped != 2 || info.ContainersRunning != 0 || info.Images != 0 {
		t.Errorf("gatherInfo: containers %d (%d stopped, %d running), images %d; want 2, 2, 0, 0",
			info.Containers, info.ContainersStopped, info.ContainersRunning, info.Images)
	}
	if info.BackingFilesystem == "" || info.BackingFilesystem == "unknown" || info.KernelVersion == "" || info.NCPU < 1 || info.MemTotal <= 0 {
		t.Errorf("gatherInfo = %+v, want the backing filesystem, kernel, CPUs and memory", info)
	}
	var out, errOut bytes.Buffer
	if err := writeInfo(&out, &errOut, info, ""); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Client:\n Version: " + Version + "\n",
		"\nServer:\n Containers: 2\n  Mounted: 0\n  Paused: 0\n  Dead: 0\n  Unmounted: 2\n Images: 0\n Storage Driver: layerfs\n  Backing Filesystem: " + info.BackingFilesystem + "\n",
		"  Layers Cached: 0\n",
		"\n Kernel Version: " + info.KernelVersion + "\n",
		"\n Layerfs Root Dir: " + root + "\n",
		"\n Registry: https://index.docker.io/v1/\n",
		"\n FUSE:\n  Device: /dev/fuse",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("info lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := writeInfo(&out, &errOut, info, "json"); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("info --format json = %q: %v", out.String(), err)
	}
	if m["Containers"] != 2.0 || m["Driver"] != "layerfs" || m["LayerfsRootDir"] != root {
		t.Errorf("info --format json = %s", out.String())
	}
	out.Reset()
	if err := writeInfo(&out, &errOut, info, "{{.ContainersStopped}} {{.DockerRootDir}} {{.Driver}}"); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "2 "+root+" layerfs\n"; got != want {
		t.Errorf("info --format template = %q, want %q", got, want)
	}
	if err := writeInfo(&out, &errOut, info, "{{.Bogus"); err == nil || !strings.HasPrefix(err.Error(), "template parsing error") {
		t.Errorf("info --format '{{.Bogus' = %v, want a template parsing error", err)
	}
}
