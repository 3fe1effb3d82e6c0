package integration

// End-to-end tests of info, system df, system prune and container prune: the
// real binary against a store with mounted and unmounted containers, images in
// use and not, and a build's cache.

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileTar writes a tar holding one file name with content and returns its path.
func fileTar(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layer.tar")
	b := writeTarEntries(t, []tarFileEntry{{hdr: &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg}, body: []byte(content)}})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dfRows runs system df --format json and returns its rows by type.
func (e *mountEnv) dfRows() map[string]map[string]string {
	e.t.Helper()
	rows := map[string]map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(e.ok("system", "df", "--format", "json")), "\n") {
		var r map[string]string
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			e.t.Fatalf("system df --format json line %q: %v", line, err)
		}
		rows[r["Type"]] = r
	}
	return rows
}

// wantDf checks the TOTAL and ACTIVE of system df's row typ.
func (e *mountEnv) wantDf(when, typ, total, active string) map[string]string {
	e.t.Helper()
	r := e.dfRows()[typ]
	if r["TotalCount"] != total || r["Active"] != active {
		e.t.Errorf("%s: system df %s = %v, want total %s, active %s", when, typ, r, total, active)
	}
	return r
}

// ps returns name -> mount status (.Mount).
func (e *mountEnv) ps() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(e.ok("ps", "-a", "--format", "{{.Name}} {{.Mount}}")), "\n") {
		if n, s, ok := strings.Cut(line, " "); ok {
			out[n] = s
		}
	}
	return out
}

func TestInfo(t *testing.T) {
	e := newMountEnv(t)
	dir := e.dir()
	e.ok("mount", "--name", "c1", e.image, dir)
	out := e.ok("info")
	for _, want := range []string{
		"Client:\n Version: ",
		"\nServer:\n Containers: 1\n  Mounted: 1\n  Paused: 0\n  Dead: 0\n  Unmounted: 0\n Images: 1\n Storage Driver: layerfs\n  Backing Filesystem: ",
		"\n  Layers Cached: 1\n",
		"\n  Passthrough: ",
		"\n FUSE:\n  Device: /dev/fuse\n  fusermount3: ",
		"\n Kernel Version: ",
		"\n Operating System: ",
		"\n Layerfs Root Dir: " + e.root + "\n",
		"\n Registry: https://index.docker.io/v1/\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	var info struct {
		Containers, ContainersRunning, ContainersStopped, Images, LayersCached, NCPU int
		Driver, LayerfsRootDir, KernelVersion, BackingFilesystem                     string
		FUSE                                                                         struct{ DevicePresent bool }
	}
	js := e.ok("info", "--format", "json")
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		t.Fatalf("info --format json = %q: %v", js, err)
	}
	if info.Containers != 1 || info.ContainersRunning != 1 || info.Images != 1 || info.LayersCached != 1 || info.NCPU < 1 ||
		info.Driver != "layerfs" || info.LayerfsRootDir != e.root || info.KernelVersion == "" || info.BackingFilesystem == "" || !info.FUSE.DevicePresent {
		t.Errorf("info --format json = %s", js)
	}
	e.ok("umount", "c1")
	// .ServerVersion is how scripts see that docker is there.
	if got := e.ok("info", "-f", "{{.ServerVersion}}"); strings.TrimSpace(got) == "" || strings.Contains(got, "<no value>") {
		t.Errorf("info -f {{.ServerVersion}} = %q", got)
	}
	if got, want := e.ok("system", "info", "--format", "{{.ContainersRunning}} {{.ContainersStopped}} {{.DockerRootDir}}"), "0 1 "+e.root+"\n"; got != want {
		t.Errorf("system info --format TEMPLATE = %q, want %q", got, want)
	}
}

// TestSystemDfAndPrune: df's counts follow mounts, prune removes an unmounted
// container, a dangling image and unused build cache and keeps a mounted
// container and the images containers use; -a then takes every image no
// container uses and all build cache.
func TestSystemDfAndPrune(t *testing.T) {
	e := newMountEnv(t)
	e.ok("import", "-q", fileTar(t, "other", "other image\n"), "other:1")
	dangling := strings.TrimSpace(e.ok("import", "-q", fileTar(t, "dangling", "nobody's\n")))
	e.wantDf("fresh", "Images", "3", "0")
	e.wantDf("fresh", "Containers", "0", "0")

	// A build leaves a cache mount and step entries (and the image "built").
	ctx := t.TempDir()
	df := "FROM " + e.image + "\nRUN --mount=type=cache,id=sys,target=/c echo x > /c/f\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("build", "-t", "built", ctx)
	cache := e.wantDf("after build", "Build Cache", "2", "0")
	if cache["Size"] == "0B" || cache["Reclaimable"] != cache["Size"] {
		t.Errorf("after build: build cache %v, want a size, all of it reclaimable", cache)
	}

	mdir, udir := e.dir(), e.dir()
	e.ok("mount", "--name", "m", e.image, mdir)
	if err := os.WriteFile(filepath.Join(mdir, "kept"), make([]byte, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("mount", "--name", "u", "other:1", udir)
	if err := os.WriteFile(filepath.Join(udir, "junk"), make([]byte, 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.wantDf("both mounted", "Containers", "2", "2")
	if c["Size"] != "25kB" || c["Reclaimable"] != "0B (0%)" {
		t.Errorf("both mounted: containers %v, want 25kB, none reclaimable", c)
	}
	e.wantDf("both mounted", "Images", "4", "2")
	e.ok("umount", "u")
	c = e.wantDf("u unmounted", "Containers", "2", "1")
	if c["Reclaimable"] != "20kB (80%)" {
		t.Errorf("u unmounted: containers %v, want 20kB (80%%) reclaimable", c)
	}
	if out := e.ok("system", "df", "-v"); !strings.Contains(out, "Containers space usage:") || !strings.Contains(out, "exec.cachemount") {
		t.Errorf("system df -v =\n%s", out)
	}

	// "n", and a stdin that is not a terminal and says nothing, remove nothing.
	for _, stdin := range []string{"n\n", ""} {
		r := runWith(t, cmdOpts{root: e.root, stdin: strings.NewReader(stdin)}, "system", "prune")
		if r.Code != 0 || !strings.Contains(r.Stdout, "WARNING! This will remove:\n  - all stopped containers\n") || strings.Contains(r.Stdout, "Deleted") {
			t.Errorf("system prune answered %q: exit %d, %q", stdin, r.Code, r.Stdout)
		}
	}
	if got := e.ps(); len(got) != 2 {
		t.Errorf("after a refused prune: ps = %v, want m and u", got)
	}

	uID := containerIDIn(t, e.root, "u")
	out := e.ok("system", "prune", "-f")
	for _, want := range []string{"Deleted Containers:\n" + uID + "\n\n", "Deleted Images:\n", "deleted: " + dangling + "\n", "Deleted build cache objects:\ncache mount sys\n", "Total reclaimed space: "} {
		if !strings.Contains(out, want) {
			t.Errorf("system prune -f lacks %q:\n%s", want, out)
		}
	}
	if got := e.ps(); len(got) != 1 || got["m"] != "mounted" {
		t.Errorf("after system prune: ps = %v, want only m, mounted", got)
	}
	if b, err := os.ReadFile(filepath.Join(mdir, "kept")); err != nil || len(b) != 5000 {
		t.Errorf("m's file after system prune: %d bytes, %v", len(b), err)
	}
	imgs := e.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
	for _, want := range []string{"busybox:test", "other:1", "built:latest"} {
		if !strings.Contains(imgs, want+"\n") {
			t.Errorf("after system prune: images =\n%s\nwant %s kept (tagged)", imgs, want)
		}
	}
	e.wantDf("after prune", "Images", "3", "1")
	e.wantDf("after prune", "Containers", "1", "1")
	var v struct{ BuildCache []struct{ CacheType string } }
	if err := json.Unmarshal([]byte(e.ok("system", "df", "-v", "--format", "json")), &v); err != nil {
		t.Fatal(err)
	}
	for _, r := range v.BuildCache {
		if r.CacheType == "exec.cachemount" {
			t.Errorf("after system prune: build cache %v, want no cache mount", v.BuildCache)
		}
	}

	out = e.ok("system", "prune", "-a", "-f")
	if !strings.Contains(out, "untagged: other:1\n") || !strings.Contains(out, "untagged: built:latest\n") || strings.Contains(out, "busybox") {
		t.Errorf("system prune -a -f =\n%s\nwant other:1 and built untagged, busybox:test kept", out)
	}
	e.wantDf("after prune -a", "Images", "1", "1")
	e.wantDf("after prune -a", "Build Cache", "0", "0")
	if got := e.ps(); got["m"] != "mounted" {
		t.Errorf("after system prune -a: ps = %v, want m mounted", got)
	}
}

// TestContainerPrune runs container prune as the container group registers it.
func TestContainerPrune(t *testing.T) {
	e := newMountEnv(t)
	mdir := e.dir()
	e.ok("mount", "--name", "m", e.image, mdir)
	ids := map[string]string{}
	for _, n := range []string{"m", "u1", "u2"} {
		if n != "m" {
			e.ok("mount", "--name", n, e.image, e.dir())
			e.ok("umount", n)
		}
		ids[n] = containerIDIn(t, e.root, n)
	}
	for _, stdin := range []string{"n\n", ""} {
		r := runWith(t, cmdOpts{root: e.root, stdin: strings.NewReader(stdin)}, "container", "prune")
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ") || strings.Contains(r.Stdout, "Deleted") {
			t.Errorf("container prune answered %q: exit %d, %q", stdin, r.Code, r.Stdout)
		}
	}
	if got := e.ps(); len(got) != 3 {
		t.Errorf("after a refused container prune: ps = %v", got)
	}
	r := runWith(t, cmdOpts{root: e.root, stdin: strings.NewReader("y\n")}, "container", "prune")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Deleted Containers:\n"+ids["u1"]+"\n"+ids["u2"]+"\n\nTotal reclaimed space: ") {
		t.Errorf("container prune answered y: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := e.ps(); len(got) != 1 || got["m"] != "mounted" {
		t.Errorf("after container prune: ps = %v, want only m, mounted", got)
	}
	e.ok("umount", "m")
	if out := e.ok("container", "prune", "-f"); out != "Deleted Containers:\n"+ids["m"]+"\n\nTotal reclaimed space: 0B\n" {
		t.Errorf("container prune -f = %q", out)
	}
}
