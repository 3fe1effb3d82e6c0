package mountcmd

// cp: docker cp between a working container and the host. The container side is
// always its live merged tree: the mountpoint of a mounted container, else a
// mount cp makes for itself (cpRoot), so a write lands in the upper dir
// exactly as any write through the union does (copy-up, whiteouts). Both sides
// move as a tar stream (build.WriteTree into build.ExtractInRoot), as docker's
// client and daemon do, and every container path is resolved inside the
// container's root dir fd (openat2 RESOLVE_IN_ROOT): no symlink in the container
// reaches the host.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/build"
)

type cpOptions struct {
	archive    bool // -a: keep the source's owners
	followLink bool // -L: follow a symlink SRC_PATH names
	quiet      bool
}

func init() { addVerb(newCpCommand) }

// newCpCommand is `cp`; the container group's `container cp` is the same command.
func newCpCommand(g *globalOptions) *cobra.Command {
	o := &cpOptions{}
	cmd := &cobra.Command{
		Use: `cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
  layerfs cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH`,
		Short: "Copy files/folders between a working container and the local filesystem",
		Long: `Copy files/folders between a working container and the local filesystem, as
docker cp does. Container paths are relative to the container's root (/); a
relative one is taken from /. SRC_PATH/. copies a dir's contents; a DEST_PATH
that does not exist is created (one ending in / must exist for a file source).
A symlink SRC_PATH is copied as a symlink unless -L.

Use '-' as the source to read a tar archive from STDIN and extract it to a
directory in the container (the whole archive is checked first: absolute
names, .. escapes and links leading outside are refused). Use '-' as the
destination to write a tar archive of a container source to STDOUT.

Files copied into the container are root's (0:0), files copied out the
caller's; with -a both keep their source's owners. An unmounted container is
mounted for the copy and unmounted again; a container mounted --read-only
refuses writes. A container that does not run has its volumes (run's -v and
--mount binds, anonymous and image volumes) in place for the copy, as docker's;
a :ro volume refuses writes.`,
		Args:         exactArgs(2),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			// A closed pipe on stdout (cp c:/ - | head) is a write error, not
			// death by SIGPIPE: a temporary mount is taken down on the way out.
			signal.Ignore(syscall.SIGPIPE)
			if !cmd.Flags().Changed("quiet") {
				// docker's rule: no progress unless STDOUT is a terminal
				o.quiet = !writerIsTerminal(cmd.OutOrStdout())
			}
			err := runCp(cmd, g, o, args[0], args[1])
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", userError(err))
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.archive, "archive", "a", false, "archive mode (copy all uid/gid information)")
	f.BoolVarP(&o.followLink, "follow-link", "L", false, "always follow symbol link in SRC_PATH")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "suppress progress output during copy (automatic unless STDOUT is a terminal)")
	return cmd
}

// Errors cp words as docker does.
var (
	errCpBetweenContainers = errors.New("copying between containers is not supported")
	errCpNoContainer       = errors.New("must specify at least one container source")
	errCpTerminal          = errors.New("cowardly refusing to write a tar archive to a terminal: redirect STDOUT")
	errCannotCopyDir       = errors.New("cannot copy directory")
	errNoSuchDir           = errors.New("no such directory")
	errNotDir              = errors.New("not a directory")
)

// noPathError is a container path that does not exist, in docker's words:
// "No such container:path: web1:/nope".
type noPathError struct{ container, path string }

func (e *noPathError) Error() string {
	return fmt.Sprintf("No such container:path: %s:%s", e.container, e.path)
}

func runCp(cmd *cobra.Command, g *globalOptions, o *cpOptions, src, dst string) error {
	if src == "" {
		return errors.New("source can not be empty")
	}
	if dst == "" {
		return errors.New("destination can not be empty")
	}
	sc, sp := splitCpArg(src)
	dc, dp := splitCpArg(dst)
	switch {
	case sc != "" && dc != "":
		return errCpBetweenContainers
	case sc == "" && dc == "":
		return errCpNoContainer
	case sc != "":
		return cpFromContainer(cmd, g, o, sc, sp, dp)
	default:
		return cpToContainer(cmd, g, o, dc, sp, dp)
	}
}

// splitCpArg is docker's: CONTAINER:PATH, unless arg is an absolute path or
// starts with "." (./file:name.txt is a local file).
func splitCpArg(arg string) (container, p string) {
	if filepath.IsAbs(arg) {
		return "", arg
	}
	c, p, ok := strings.Cut(arg, ":")
	if !ok || strings.HasPrefix(c, ".") {
		return "", arg
	}
	return c, p
}

func cpFromContainer(cmd *cobra.Command, g *globalOptions, o *cpOptions, name, src, dst string) error {
	out := cmd.OutOrStdout()
	var d *cpDest // nil: a tar to STDOUT
	if dst == "-" {
		if writerIsTerminal(out) {
			return errCpTerminal
		}
	} else {
		var err error
		if d, err = hostDest(dst); err != nil {
			return err
		}
	}
	n, err := withContainerRoot(cmd, g, name, false, func(root *os.File, _ *workContainer) (int64, error) {
		return copyOut(root, name, src, d, out, o)
	})
	if err == nil && !o.quiet && d != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "Successfully copied %s to %s\n", humanSize(n), d.shown)
	}
	return err
}

func cpToContainer(cmd *cobra.Command, g *globalOptions, o *cpOptions, name, src, dst string) error {
	var in io.Reader
	if src == "-" {
		in = cmd.InOrStdin()
	} else {
		var err error
		if src, err = localPath(src); err != nil {
			return err
		}
	}
	n, err := withContainerRoot(cmd, g, name, true, func(root *os.File, w *workContainer) (int64, error) {
		// docker's check, before anything is copied, of the destination
		// with its symlinks followed in the container: not into a :ro
		// volume, nor outside the volumes of a run --read-only container.
		check := func(string) error { return nil }
		if st, err := w.load(); err == nil {
			vols := cpVolumes(w, cpImage(g, w, st), "")
			readOnly := false
			if sr := loadSavedRun(w); sr != nil {
				readOnly = sr.ReadOnly
			}
			check = func(p string) error { return checkVolumeWrite(vols, p, readOnly) }
		}
		return copyInChecked(root, name, src, dst, in, w.Dir(), o, check)
	})
	if err == nil && !o.quiet {
		fmt.Fprintf(cmd.ErrOrStderr(), "Successfully copied %s to %s:%s\n", humanSize(n), name, dst)
	}
	return err
}

// withContainerRoot runs fn on the merged tree of container name (cpRoot, for
// writing or not) and releases it; it returns fn's byte count.
func withContainerRoot(cmd *cobra.Command, g *globalOptions, name string, write bool, fn func(root *os.File, w *workContainer) (int64, error)) (int64, error) {
	w, err := cpContainer(g, name)
	if err != nil {
		return 0, err
	}
	root, release, err := cpRoot(cmd.Context(), g, w, write)
	if err != nil {
		return 0, err
	}
	n, err := fn(root, w)
	root.Close()
	if rerr := release(); err == nil {
		err = rerr
	}
	return n, err
}

// cpContainer is the working container NAME names, docker's "No such container"
// if none.
func cpContainer(g *globalOptions, name string) (*workContainer, error) {
	w, err := newWorkContainer(g.root, name)
	if err != nil || !w.exists() {
		return nil, fmt.Errorf("%w: %s", errNoSuchContainer, name)
	}
	return w, nil
}

// localPath is a host path made absolute, keeping a trailing "/" or "/." (they
// mean something to cp).
func localPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasSuffix(p, "/.") || p == ".":
		abs += "/."
	case strings.HasSuffix(p, "/") && abs != "/":
		abs += "/"
	}
	return abs, nil
}

// cpDest is a destination as docker's rules see it before the copy.
type cpDest struct {
	path       string // clean; for an existing one, its symlinks resolved
	shown      string // as the success line names it
	exists     bool
	isDir      bool
	assertsDir bool // it ends in "/" or "/."
}

// assertsDir reports whether p ends in "/" or "/." (or is "."): it must be a dir.
func assertsDir(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || p == "."
}

// plan applies docker's rules (its archive.PrepareArchiveCopy) to a source that
// is a dir (or a dir's contents, SRC/.) or not, named base: it returns the dir
// to extract into and the name the source's top entry takes there ("." for a
// dir's contents copied into an existing dir).
func (d *cpDest) plan(srcIsDir, contents bool, base string) (dir, name string, err error) {
	switch {
	case d.exists && d.isDir:
		if contents {
			return d.path, ".", nil
		}
		return d.path, base, nil
	case d.exists && srcIsDir:
		return "", "", errCannotCopyDir
	case d.exists, srcIsDir:
		return path.Dir(d.path), path.Base(d.path), nil
	case d.assertsDir:
		return "", "", errNoSuchDir
	}
	return path.Dir(d.path), path.Base(d.path), nil
}

// hostDest reads a host DEST_PATH: symlinks followed (a symlink to a file is
// written through, as docker does), its parent required to exist.
func hostDest(p string) (*cpDest, error) {
	abs, err := localPath(p)
	if err != nil {
		return nil, err
	}
	d := &cpDest{path: filepath.Clean(abs), shown: abs, assertsDir: assertsDir(abs)}
	fi, err := os.Stat(abs)
	switch {
	case err == nil:
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("invalid output path: %q must be a directory or a regular file", p)
		}
		d.exists, d.isDir = true, fi.IsDir()
		if d.path, err = filepath.EvalSymlinks(d.path); err != nil {
			return nil, err
		}
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR):
		parent := filepath.Dir(d.path)
		if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("invalid output path: directory %q does not exist", parent)
		}
	default:
		return nil, err
	}
	return d, nil
}

// cpSource is an opened SRC_PATH.
type cpSource struct {
	obj      *os.File // O_PATH
	isDir    bool
	contents bool   // SRC/.: a dir's contents
	base     string // the name it is copied under (a followed link's own name, as docker)
}

// openSource opens SRC_PATH p with open (a resolver for its side): the final
// symlink is followed with follow (-L) or when p ends in "/" or "/.". notFound
// words a missing p.
func openSource(open func(p string, flags int) (*os.File, error), p string, follow bool, notFound func(error) error) (*cpSource, error) {
	s := &cpSource{contents: strings.HasSuffix(p, "/.") || p == "."}
	asserts := assertsDir(p)
	flags := unix.O_PATH
	if !follow && !asserts {
		flags |= unix.O_NOFOLLOW
	}
	f, err := open(p, flags)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, notFound(err)
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", p, err)
	}
	s.obj, s.isDir = f, st.Mode&unix.S_IFMT == unix.S_IFDIR
	if asserts && !s.isDir {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, errNotDir)
	}
	s.base = path.Base(path.Clean("/" + p))
	if s.base == "/" || s.contents {
		s.base = "."
	}
	return s, nil
}

// copyOut copies src inside root, the tree of container name, to the host dest
// d, or as a tar to out when d is nil; it returns the size of the tar that moved.
func copyOut(root *os.File, name, src string, d *cpDest, out io.Writer, o *cpOptions) (int64, error) {
	s, err := openSource(func(p string, flags int) (*os.File, error) {
		return build.OpenIn(root, p, flags)
	}, src, o.followLink, func(error) error { return &noPathError{name, src} })
	if err != nil {
		return 0, err
	}
	defer s.obj.Close()
	if d == nil {
		return build.WriteTreeTar(out, s.obj, s.base)
	}
	dir, top, err := d.plan(s.isDir, s.contents, s.base)
	if err != nil {
		return 0, err
	}
	dfd, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return 0, err
	}
	defer dfd.Close()
	uid, gid := os.Geteuid(), os.Getegid() // the caller's, as docker's client extracts
	if o.archive && uid == 0 {
		uid, gid = -1, -1 // -a: the container's owners (a non-root caller cannot chown)
	}
	return build.CopyTree(s.obj, top, func(r io.Reader) error {
		return build.ExtractInRoot(dfd, "/", r, uid, gid)
	})
}

// copyIn copies the host path src (absolute), or the tar in when src is "-", to
// dst inside root, the tree of container name; spool is a dir for a copy of the
// tar while it is checked. It returns the size of the tar that moved.
func copyIn(root *os.File, name, src, dst string, in io.Reader, spool string, o *cpOptions) (int64, error) {
	return copyInChecked(root, name, src, dst, in, spool, o, func(string) error { return nil })
}

// copyInChecked is copyIn with check, which may refuse the destination's
// path in the container (its symlinks followed) before anything is copied.
func copyInChecked(root *os.File, name, src, dst string, in io.Reader, spool string, o *cpOptions, check func(path string) error) (int64, error) {
	d, err := containerDest(root, name, dst)
	if err != nil {
		return 0, err
	}
	if err := check(d.path); err != nil {
		return 0, err
	}
	uid, gid := 0, 0 // root's, as docker documents
	if o.archive {
		uid, gid = -1, -1
	}
	if src == "-" {
		if !d.isDir {
			return 0, fmt.Errorf("destination \"%s:%s\" must be a directory", name, dst)
		}
		return build.ExtractChecked(root, d.path, in, spool, uid, gid)
	}
	s, err := openSource(func(p string, flags int) (*os.File, error) {
		f, err := os.OpenFile(p, flags, 0)
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return f, err
	}, src, o.followLink, func(err error) error {
		return &os.PathError{Op: "lstat", Path: strings.TrimSuffix(src, "/."), Err: err}
	})
	if err != nil {
		return 0, err
	}
	defer s.obj.Close()
	dir, top, err := d.plan(s.isDir, s.contents, s.base)
	if err != nil {
		return 0, err
	}
	return build.CopyTree(s.obj, top, func(r io.Reader) error {
		return build.ExtractInRoot(root, dir, r, uid, gid)
	})
}

// containerDest reads DEST_PATH dst inside root, the tree of container name. A
// final symlink is followed inside root, as docker evaluates a dest symlink in
// the container. One that does not exist needs its parent dir; its path is
// then the parent's, symlinks followed, and its name.
func containerDest(root *os.File, name, dst string) (*cpDest, error) {
	p := path.Clean("/" + dst)
	d := &cpDest{path: p, assertsDir: assertsDir(dst)}
	f, err := build.OpenIn(root, p, unix.O_PATH)
	switch {
	case err == nil:
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return nil, fmt.Errorf("stat %s: %w", dst, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			d.isDir = true
		case unix.S_IFREG:
			if d.assertsDir { // "/tmp/file/": docker's "no such directory"
				return nil, errNoSuchDir
			}
		default:
			return nil, fmt.Errorf("destination \"%s:%s\" must be a directory or a regular file", name, dst)
		}
		d.exists = true
		if rp, ok := pathInRoot(root, f); ok {
			d.path = rp // through a symlink: where it leads
		}
	case errors.Is(err, unix.ENOENT):
		pf, err := build.OpenIn(root, path.Dir(p), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return nil, &noPathError{name, path.Dir(p)}
		}
		if rp, ok := pathInRoot(root, pf); ok {
			d.path = path.Join(rp, path.Base(p))
		}
		pf.Close()
	case errors.Is(err, unix.ENOTDIR):
		return nil, &noPathError{name, dst}
	default:
		// The real reason (file name too long, too many levels of
		// symlinks, permission denied), as docker gives it: "No such
		// container:path" sent the user looking for a dir that is there.
		var errno unix.Errno
		if errors.As(err, &errno) {
			err = errno
		}
		return nil, fmt.Errorf("%s:%s: %w", name, dst, err)
	}
	return d, nil
}

// pathInRoot is f's path inside root, read from /proc (f was opened in root).
func pathInRoot(root, f *os.File) (string, bool) {
	r, err1 := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", root.Fd()))
	p, err2 := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err1 != nil || err2 != nil || strings.HasSuffix(p, " (deleted)") {
		return "", false
	}
	if p == r {
		return "/", true
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(r, "/")+"/")
	return "/" + rel, ok
}

// cpRoot opens the merged tree of w for cp: the mountpoint of a mounted w (one
// mounted --read-only refuses write), else a mount of cp's own at a temp dir (a
// detached server, as mount starts), which release unmounts. While that mount lives, w stays
// locked: nothing else mounts, commits or removes it meanwhile. The caller
// closes root before release.
func cpRoot(ctx context.Context, g *globalOptions, w *workContainer, write bool) (root *os.File, release func() error, err error) {
	noop := func() error { return nil }
	st, unlock, err := lockAndLoad(ctx, w)
	if err != nil {
		return nil, noop, err
	}
	switch w.status(st) {
	case statusMounted:
		unlock()
		if write && st.ReadOnly {
			return nil, noop, fmt.Errorf("container %s is mounted read-only", w.name)
		}
		if rs := loadRunState(w); rs.alive() {
			// A running container: its own mount tree, so its binds, volumes
			// and tmpfs mounts are where docker cp finds them too.
			root, err := openProcRoot(rs)
			if err == nil || !errors.Is(err, errNotRunning) {
				return root, noop, err
			}
		}
		mp := st.Mountpoint
		if ss := queryStatus(ctx, w); ss != nil && ss.Mountpoint != "" {
			mp = ss.Mountpoint
		}
		if vols := cpVolumes(w, cpImage(g, w, st), ""); len(vols) > 0 {
			root, done, err := openRootWithVolumes(mp, vols)
			if err != nil {
				return nil, noop, err
			}
			return root, func() error { done(); return nil }, nil
		}
		root, err := openMountRoot(mp)
		return root, noop, err
	case statusDead: // mount would clear it too
		if err := clearDeadMount(st.Mountpoint, w.fsName()); err != nil {
			unlock()
			return nil, noop, err
		}
	}
	mp, umount, err := mountForCp(ctx, g, w, st)
	if err != nil {
		unlock()
		return nil, noop, err
	}
	done := func() {}
	release = func() error {
		done() // the volumes' namespace first: nothing else holds the mount then
		err := umount()
		unlock()
		return err
	}
	if vols := cpVolumes(w, cpImage(g, w, st), mp); len(vols) > 0 {
		root, done, err = openRootWithVolumes(mp, vols)
		if err != nil {
			done = func() {}
		}
	} else {
		root, err = openMountRoot(mp)
	}
	if err != nil {
		release()
		return nil, noop, err
	}
	return root, release, nil
}

// openProcRoot opens the root of rs's container as its processes see it
// (/proc/<pid>/root), checking afterwards that the pid still is its.
func openProcRoot(rs *runState) (*os.File, error) {
	p := fmt.Sprintf("/proc/%d/root", rs.Pid)
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil || !rs.alive() {
		if err == nil {
			unix.Close(fd)
		}
		return nil, errNotRunning
	}
	return os.NewFile(uintptr(fd), p), nil
}

// openMountRoot opens the root dir of the FUSE mount at mp, and refuses a plain
// dir: a container unmounted meanwhile leaves its empty mountpoint dir there.
func openMountRoot(mp string) (*os.File, error) {
	fd, err := unix.Open(mp, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open mount %s: %w", mp, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil || sfs.Type != unix.FUSE_SUPER_MAGIC {
		unix.Close(fd)
		return nil, fmt.Errorf("open mount %s: not mounted", mp)
	}
	return os.NewFile(uintptr(fd), mp), nil
}

// mountForCp mounts the unmounted w (st, locked by the caller) at a temp dir
// with a detached server, as mount --name does, and returns the mountpoint and
// a func that unmounts it and gives state.json back its mount options. The
// mount is read-write even for reading: a read-only union leaves the upper dir
// out (fs.Options), and so the container's own changes.
func mountForCp(ctx context.Context, g *globalOptions, w *workContainer, st *workState) (string, func() error, error) {
	s, err := openStore(g)
	if err != nil {
		return "", nil, err
	}
	release, err := s.Lease(ctx) // until state.json names the lowers
	if err != nil {
		return "", nil, err
	}
	defer release()
	var lowers []string
	if img, err := imageOfContainer(s, w, st); err == nil {
		if lowers, err = ensureLayers(ctx, g, s, img); err != nil {
			return "", nil, err
		}
	} else if lowers, err = lowersWithoutImage(st, err); err != nil {
		return "", nil, err
	}
	mp, err := prepareRunMountpoint(g.root, w.name)
	if err != nil {
		return "", nil, err
	}
	if err := w.resetScratch(); err != nil {
		return "", nil, err
	}
	readOnly, passthrough := st.ReadOnly, st.Passthrough
	restore := func() {
		st.ReadOnly, st.Passthrough = readOnly, passthrough
		os.Remove(mp)
		os.Remove(filepath.Dir(mp)) // the root's dir of temp mounts, once unused
	}
	st.Mountpoint, st.PID, st.Lowers, st.ReadOnly, st.Passthrough = mp, 0, lowers, false, false
	if err := w.save(st); err != nil {
		return "", nil, err
	}
	pid, err := startServer(ctx, g, w, true) // gone with this cp, however it ends
	if err != nil {
		st.Mountpoint = ""
		restore()
		w.save(st)
		return "", nil, err
	}
	st.PID = pid
	if err := w.save(st); err != nil {
		return "", nil, err
	}
	return mp, func() error {
		// A fresh context: an interrupted cp still unmounts.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st.ReadOnly, st.Passthrough = readOnly, passthrough
		err := unmountContainer(ctx, w, st, true) // nothing but cp uses this mount
		restore()
		return err
	}, nil
}
