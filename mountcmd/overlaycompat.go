package mountcmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/layerfs/layerfs/cow"
	lfs "github.com/layerfs/layerfs/fs"
)

// The fuse-overlayfs-compatible mode lets podman and buildah use layerfs as their
// mount_program: called as "fuse-overlayfs" (through a link of that name) or with
// fuse-overlayfs style arguments, layerfs mounts lowerdir (top first) + upperdir
// with the overlay whiteout encoding, and daemonises once the mount is live.

func init() { preRunHooks = append(preRunHooks, overlayCompatHook) }

// overlayCompatVersion is what --version claims; podman parses
// "fuse-overlayfs: version X".
const overlayCompatVersion = "1.10"

// overlayDaemonEnv marks the re-executed child; its value is the fd of the pipe
// on which the child reports "ready" or an error.
const overlayDaemonEnv = "LAYERFS_OVERLAY_DAEMON_FD"

// overlayArgs are the parsed fuse-overlayfs arguments.
type overlayArgs struct {
	lowers      []string
	upper       string
	work        string
	mountpoint  string
	readOnly    bool
	passthrough bool           // -o passthrough: fs.Options.Passthrough
	noACL       bool           // -o noacl: fs.Options.NoACL
	xattrPerms  int            // -o xattr_permissions=N: fs.Options.XattrPermissions
	noXattrs    bool           // -o noxattrs=1: fs.Options.NoXattrs
	ignored     []string       // options taken but not honoured, warned about on stderr
	flags       []string       // kernel mount flags (fs.Options.Flags), fuse-overlayfs's defaults first
	ids         *lfs.IDMapping // uidmapping=, gidmapping=, squash_*: nil if none
	foreground  bool
	debug       bool
	version     bool
	help        bool
}

// absolute makes o's paths absolute and resolves their symlinks, as the kernel
// resolves them from the working directory ("link/.." is the link target's
// parent): go-fuse cleans a mountpoint as text (filepath.Clean), which made
// "link/../mnt" ./mnt. A path that does not resolve is only made absolute, for
// the mount to name in its error.
func (o *overlayArgs) absolute() {
	paths := []*string{&o.upper, &o.work, &o.mountpoint}
	for i := range o.lowers {
		paths = append(paths, &o.lowers[i])
	}
	for _, p := range paths {
		if *p == "" {
			continue
		}
		r, err := filepath.EvalSymlinks(*p)
		if err != nil {
			r = *p // (relative, it still names the caller's, not /'s)
		}
		if abs, err := filepath.Abs(r); err == nil {
			*p = abs
		}
	}
}

// looksLikeOverlayArgs reports whether args (without argv[0]) are fuse-overlayfs
// style: a -o option list holding lowerdir= before any other argument that is
// no option (the mountpoint comes last), as containers/storage calls its
// mount_program. A verb's own -o (`save -o lowerdir=x.tar IMAGE`, `--root R
// save ...`) is not.
func looksLikeOverlayArgs(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o":
			if i+1 < len(args) && strings.Contains(args[i+1], "lowerdir=") {
				return true
			}
			i++
		case strings.HasPrefix(a, "-o") && strings.Contains(a, "lowerdir="):
			return true
		case !strings.HasPrefix(a, "-"):
			return false
		}
	}
	return false
}

// splitOptions splits a -o list at commas outside double quotes (SELinux contexts
// such as context="a:b:c1,c2" hold commas) and not escaped as "\," (a comma in
// a path, as libfuse and kernel overlayfs take it; other escapes, such as
// lowerdir's "\:", are left for the option's own parser).
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, escaped := false, false
	for i, r := range s {
		switch {
		case escaped:
			escaped = false
			cur.WriteRune(r)
		case r == '\\' && strings.HasPrefix(s[i+1:], ","):
			escaped = true
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, cur.String())
}

// splitLowers splits lowerdir at colons, honouring "\:" escapes.
func splitLowers(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case s[i] == ':':
			if cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func parseOverlayArgs(args []string) (*overlayArgs, error) {
	o := &overlayArgs{}
	var opts []string
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o":
			if i+1 >= len(args) {
				return nil, errors.New("-o needs an argument")
			}
			i++
			opts = append(opts, splitOptions(args[i])...)
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, splitOptions(a[2:])...)
		case a == "-f":
			o.foreground = true
		case a == "-d" || a == "--debug":
			o.debug, o.foreground = true, true
		case a == "-s":
		case a == "-V" || a == "--version":
			o.version = true
		case a == "-h" || a == "--help":
			o.help = true
		case strings.HasPrefix(a, "-"):
			// fuse-overlayfs ignores unknown arguments too
		default:
			pos = append(pos, a)
		}
	}
	for _, kv := range opts {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "lowerdir":
			o.lowers = splitLowers(v)
		case "upperdir":
			o.upper = v
		case "workdir":
			o.work = v
		case "ro":
			o.readOnly = true
		case "rw":
			o.readOnly = false
		case "passthrough":
			// layerfs's own: per-open FUSE passthrough (big files at disk speed,
			// a round trip per open) instead of the page-cache mode.
			o.passthrough = true
		case "debug":
			o.debug, o.foreground = true, true
		case "noacl":
			o.noACL = true
		case "uidmapping", "gidmapping", "squash_to_uid", "squash_to_gid", "squash_to_root":
			// podman and buildah hand a container's user namespace mapping to
			// their mount_program instead of chowning the image's layers.
			if err := o.parseIDOption(k, v); err != nil {
				return nil, err
			}
		case "suid", "nosuid", "dev", "nodev", "exec", "noexec", "noatime", "atime", "relatime", "strictatime":
			// The kernel's flags for the mount, honoured (a later one wins).
			o.flags = append(o.flags, k)
		case "xattr_permissions":
			// containers/storage adds xattr_permissions=2 with force_mask:
			// owners and modes live in override xattrs (fs/xperm.go).
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 2 {
				return nil, fmt.Errorf("invalid value for xattr_permissions: %s", v)
			}
			o.xattrPerms = n
		case "noxattrs":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("invalid value for noxattrs: %s", v)
			}
			o.noXattrs = n != 0
		case "static_nlink":
			// fuse-overlayfs's "directories report nlink 1": not done here.
			// Said, as fuse-overlayfs says of what it does not know.
			o.ignored = append(o.ignored, kv)
		default:
			// volatile, fsync=, context=, ...: accepted and ignored.
		}
	}
	if o.version || o.help {
		return o, nil
	}
	if len(pos) != 1 {
		return nil, fmt.Errorf("expected exactly one mountpoint, got %d arguments", len(pos))
	}
	o.mountpoint = pos[0]
	if len(o.lowers) == 0 {
		return nil, errors.New("no lowerdir specified")
	}
	if o.upper == "" {
		o.readOnly = true
	} else if o.work == "" && !o.readOnly {
		return nil, errors.New("workdir not specified")
	}
	return o, nil
}

// parseIDOption adds an owner option to o.ids: "uidmapping=0:100000:65536" (stored
// id, shown id, count; more triples after further colons), "squash_to_uid=N",
// "squash_to_gid=N", "squash_to_root" (both 0), as fuse-overlayfs reads them.
func (o *overlayArgs) parseIDOption(k, v string) error {
	if o.ids == nil {
		o.ids = &lfs.IDMapping{}
	}
	num := func(s string) (uint32, error) {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("invalid %s specified: %s", k, v)
		}
		return uint32(n), nil
	}
	switch k {
	case "squash_to_root":
		var zero uint32
		o.ids.SquashUID, o.ids.SquashGID = &zero, &zero
	case "squash_to_uid", "squash_to_gid":
		n, err := num(v)
		if err != nil {
			return err
		}
		if k == "squash_to_uid" {
			o.ids.SquashUID = &n
		} else {
			o.ids.SquashGID = &n
		}
	default:
		// Empty fields are skipped: containers/storage writes
		// "uidmapping=:0:100000:65536", with a leading colon.
		f := strings.FieldsFunc(v, func(r rune) bool { return r == ':' })
		if len(f)%3 != 0 {
			return fmt.Errorf("invalid mapping specified: %s", v)
		}
		var ranges []lfs.IDRange
		for i := 0; i < len(f); i += 3 {
			var r [3]uint32
			for j := range r {
				n, err := strconv.ParseUint(f[i+j], 10, 32)
				if err != nil {
					return fmt.Errorf("invalid mapping specified: %s", v)
				}
				r[j] = uint32(n)
			}
			ranges = append(ranges, lfs.IDRange{Stored: r[0], Shown: r[1], Size: r[2]})
		}
		if k == "uidmapping" {
			o.ids.UIDs = ranges
		} else {
			o.ids.GIDs = ranges
		}
	}
	return nil
}

func overlayCompatHook(ctx context.Context, args []string, stdout, stderr io.Writer) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	if filepath.Base(args[0]) != "fuse-overlayfs" && !looksLikeOverlayArgs(args[1:]) {
		return 0, false
	}
	o, err := parseOverlayArgs(args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "fuse-overlayfs: %v\n", err)
		return 1, true
	}
	if os.Getenv(overlayDaemonEnv) == "" {
		for _, a := range o.ignored {
			fmt.Fprintf(stderr, "unknown argument ignored: %s\n", a)
		}
	}
	switch {
	case o.version:
		fmt.Fprintf(stdout, "fuse-overlayfs: version %s\nlayerfs version %s\n", overlayCompatVersion, Version)
		return 0, true
	case o.help:
		fmt.Fprintf(stdout, "usage: fuse-overlayfs [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,ro] MOUNTPOINT\n(layerfs %s in fuse-overlayfs-compatible mode)\n", Version)
		return 0, true
	}
	if o.foreground {
		return serveOverlay(ctx, o, nil, stderr), true
	}
	if fdStr := os.Getenv(overlayDaemonEnv); fdStr != "" {
		var fd int
		if _, err := fmt.Sscan(fdStr, &fd); err != nil {
			fmt.Fprintf(stderr, "fuse-overlayfs: bad %s: %v\n", overlayDaemonEnv, err)
			return 1, true
		}
		return serveOverlay(ctx, o, os.NewFile(uintptr(fd), "ready"), stderr), true
	}
	return daemonise(args, stderr), true
}

// daemonise re-executes layerfs detached, and returns once the child reports the
// mount live (0) or failed (1).
func daemonise(args []string, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "fuse-overlayfs: %v\n", err)
		return 1
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "fuse-overlayfs: %v\n", err)
		return 1
	}
	defer devnull.Close()
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        args,
		Env:         append(os.Environ(), overlayDaemonEnv+"=3"),
		Stdin:       devnull,
		Stdout:      devnull,
		Stderr:      devnull,
		ExtraFiles:  []*os.File{w},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "fuse-overlayfs: start daemon: %v\n", err)
		return 1
	}
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if line == "ready\n" {
		_ = cmd.Process.Release()
		return 0
	}
	_ = cmd.Wait()
	msg := strings.TrimSpace(line)
	if msg == "" {
		msg = fmt.Sprintf("daemon exited before the mount was ready (%v)", err)
	}
	fmt.Fprintf(stderr, "fuse-overlayfs: %s\n", msg)
	return 1
}

// serveOverlay mounts and serves until unmounted. ready, if set, receives "ready"
// or the error, then is closed.
func serveOverlay(ctx context.Context, o *overlayArgs, ready *os.File, stderr io.Writer) int {
	ignoreSIGPIPE()
	report := func(msg string) {
		if ready != nil {
			fmt.Fprintln(ready, msg)
			ready.Close()
		}
	}
	o.absolute()
	if ready != nil {
		// A daemon leaves the caller's working directory, as fuse-overlayfs's
		// (libfuse's fuse_daemonize): kept, it made that filesystem busy for
		// as long as the mount lived. (Its paths are absolute by now.)
		_ = os.Chdir("/")
	}
	m, err := lfs.Mount(o.mountpoint, lfs.Options{
		Lowers:           o.lowers,
		Upper:            o.upper,
		Work:             o.work,
		Format:           cow.FormatOverlay,
		ReadOnly:         o.readOnly,
		Passthrough:      o.passthrough,
		IDs:              o.ids,
		NoACL:            o.noACL,
		XattrPermissions: o.xattrPerms,
		NoXattrs:         o.noXattrs,
		Debug:            o.debug,
		FsName:           "fuse-overlayfs",
		// fuse-overlayfs's defaults (suid, nodev, noatime: a container's setuid
		// programs work), then what the caller asked for.
		Flags: append([]string{"suid", "nodev", "noatime"}, o.flags...),
	})
	if err != nil {
		report(err.Error())
		fmt.Fprintf(stderr, "fuse-overlayfs: %v\n", err)
		return 1
	}
	report("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
		case <-ctx.Done():
		case <-done:
			return
		}
		_ = m.Unmount()
	}()
	m.Wait()
	close(done)
	return 0
}
