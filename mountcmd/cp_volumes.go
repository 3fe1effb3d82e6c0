package mountcmd

// cp and a container that does not run: its volumes (run's -v and --mount
// binds, anonymous -v volumes, the image's VOLUMEs) are bound on the union
// for the copy, as moby's archive code mounts a stopped container's volumes
// (daemon.mountVolumes): a copy into a volume path lands in the volume, not
// in the container's changes, a :ro volume refuses it, and what is only in a
// volume can be copied out. The binds live in a mount namespace of the
// copy's own, held by one thread: nothing reaches the host's mounts, and they
// go when that thread ends (or with cp, killed).

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
)

// errReadOnlyVolume is docker's refusal of a copy into a :ro volume.
var errReadOnlyVolume = errors.New("mounted volume is marked read-only")

// cpVolumes are w's volumes as its run binds them, parents first:
// -v HOST:CONTAINER and --mount binds (not tmpfs or devices, whose content a
// stopped container does not have), -v CONTAINER and the image's VOLUMEs
// (img; nil if it is gone) from the container's volumes/ dirs. A bind whose
// host dir is gone is left out. None for a container run did not make.
//
// An anonymous or image volume whose dir is not there yet (a container
// created, never started: docker makes its volumes at create) is made now
// when fillFrom, the container's merged tree, is given (the caller holds the
// container's lock): filled with what the container has at its path, as its
// first run would, which then takes it as it is. Otherwise it is left out.
func cpVolumes(w *workContainer, img *blobstore.Image, fillFrom string) []build.Bind {
	sr := loadSavedRun(w)
	if sr == nil {
		return nil
	}
	binds, _ := parseVolumes(sr.Volumes)
	more, _ := parseMounts(sr.Mounts)
	var out []build.Bind
	var anon []string
	for _, b := range append(binds, more...) {
		switch {
		case b.Tmpfs || b.Device:
		case b.Source == "":
			anon = append(anon, filepath.Clean(b.Target))
		default:
			if _, err := os.Stat(b.Source); err == nil {
				out = append(out, build.Bind{Source: b.Source, Target: filepath.Clean(b.Target), ReadOnly: b.ReadOnly})
			}
		}
	}
	if img != nil {
		for v := range img.Config.Config.Volumes {
			anon = append(anon, filepath.Clean("/"+v))
		}
	}
next:
	for _, p := range anon {
		for _, b := range out {
			if b.Target == p {
				continue next // a -v over the VOLUME, or a repeat
			}
		}
		dir := volumeDir(w, p)
		if !isDir(dir) && fillFrom != "" {
			fillVolume(dir, fillFrom, p) // failed: left out, as before
		}
		if isDir(dir) {
			out = append(out, build.Bind{Source: dir, Target: p})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return mountDepth(out[i].Target) < mountDepth(out[j].Target) })
	return out
}

// cpImage is w's image, for its VOLUMEs; nil if it cannot be read (gone).
func cpImage(g *globalOptions, w *workContainer, st *workState) *blobstore.Image {
	s, err := openStore(g)
	if err != nil {
		return nil
	}
	img, err := imageOfContainer(s, w, st)
	if err != nil {
		return nil
	}
	return img
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// errReadOnlyRootfs is docker's refusal of a copy into a --read-only
// container outside its volumes.
var errReadOnlyRootfs = errors.New("container rootfs is marked read-only")

// checkVolumeWrite refuses a copy to dst (a path in the container, its
// symlinks followed) inside a read-only volume, or in no volume of a
// container whose root is read-only (run --read-only), as docker checks the
// path before it extracts (checkIfPathIsInAVolume: the innermost volume
// holding it decides; then ReadonlyRootfs).
func checkVolumeWrite(vols []build.Bind, dst string, readOnlyRoot bool) error {
	p := path.Clean("/" + dst)
	var in *build.Bind
	for i, b := range vols { // parents first: the last match is the innermost
		if p == b.Target || strings.HasPrefix(p, strings.TrimSuffix(b.Target, "/")+"/") {
			in = &vols[i]
		}
	}
	if in != nil && in.ReadOnly {
		return errReadOnlyVolume
	}
	if in == nil && readOnlyRoot {
		return errReadOnlyRootfs
	}
	return nil
}

// openRootWithVolumes opens the root of the container mount at mp with vols
// bound in it, in a new mount namespace (see the file's comment). done ends
// it; the caller closes root first.
func openRootWithVolumes(mp string, vols []build.Bind) (root *os.File, done func(), err error) {
	type result struct {
		root *os.File
		err  error
	}
	opened := make(chan result)
	quit, exited := make(chan struct{}), make(chan struct{})
	tid := 0
	var work func()
	work = func() {
		// Never unlocked: the thread, and with it the namespace, ends with
		// this goroutine. Go starts new threads from a clean one, never this.
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Not the main thread: Go never ends it (it would stay in the
			// namespace, and /proc/self/mountinfo with it). Held meanwhile,
			// so the work runs on another.
			go work()
			<-exited
			runtime.UnlockOSThread()
			return
		}
		defer close(exited)
		tid = unix.Gettid()
		root, err := func() (*os.File, error) {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return nil, err
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return nil, err
			}
			root, err := openMountRoot(mp)
			if err != nil {
				return nil, err
			}
			for _, b := range vols {
				if err := build.BindIn(root, b); err != nil {
					root.Close()
					return nil, err
				}
			}
			return root, nil
		}()
		opened <- result{root, err}
		if err == nil {
			<-quit
		}
	}
	go work()
	// until the thread is gone, and the namespace's copy of the mount with it
	end := func() {
		<-exited
		task := fmt.Sprintf("/proc/self/task/%d", tid)
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if _, err := os.Stat(task); err != nil {
				return
			}
		}
	}
	r := <-opened
	if r.err != nil {
		end()
		return nil, nil, r.err
	}
	return r.root, func() { close(quit); end() }, nil
}
