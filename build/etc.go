package build

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// EtcFiles writes a container's /etc/hosts and /etc/resolv.conf (copies of the
// host's, as docker gives a container on the host network; hosts with the
// extra hosts and a line for hostname) and /etc/hostname into dir, and returns
// the binds that put them in place, writable (run --read-only makes them
// read-only, as docker does). What the container
// writes to them stays in dir, out of its upper dir, as in docker.
func EtcFiles(dir, hostname string, extraHosts ...string) ([]Bind, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("container etc files: %w", err)
	}
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		hosts = []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	if len(hosts) > 0 && hosts[len(hosts)-1] != '\n' {
		hosts = append(hosts, '\n')
	}
	for _, h := range extraHosts { // docker's --add-host HOST:IP (or HOST=IP)
		name, ip, ok := strings.Cut(h, "=")
		if !ok {
			name, ip, _ = strings.Cut(h, ":")
		}
		hosts = append(hosts, []byte(ip+"\t"+name+"\n")...)
	}
	// The hostname resolves, as in docker, where /etc/hosts has the
	// container's address for it on a bridge network and the host network
	// means the host's own name, which the host's copy has. Here the network
	// is the host's but the name the container's: loopback stands for it, as
	// in buildkit's RUN (hostname -i, Java's getLocalHost, sudo need it).
	if hostname != "" && !hostsNames(hosts, hostname) {
		names := hostname
		if short, _, ok := strings.Cut(hostname, "."); ok && short != "" {
			names += " " + short // docker's: the FQDN, then the bare name
		}
		hosts = append(hosts, []byte("127.0.0.1\t"+names+"\n")...)
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = nil
	}
	files := []struct {
		name string
		data []byte
	}{{"hosts", hosts}, {"resolv.conf", resolv}, {"hostname", []byte(hostname + "\n")}}
	var binds []Bind
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("container etc files: %w", err)
		}
		binds = append(binds, Bind{Source: p, Target: "/etc/" + f.name})
	}
	return binds, nil
}

// hostsNames reports whether the hosts file data has an entry for name.
func hostsNames(data []byte, name string) bool {
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) > 1 && slices.Contains(f[1:], name) {
			return true
		}
	}
	return false
}

// runtimePaths are what the runtime may create in a rootfs that lacks them, to
// mount over (parents before children).
var runtimePaths = []string{"proc", "dev", "sys", "etc", "etc/hosts", "etc/resolv.conf", "etc/hostname"}

// RuntimePaths remembers which mountpoints a container's rootfs lacked before it
// ran, so that Undo can take them out of the upper dir afterwards: like docker's
// init layer, they are not the container's changes.
type RuntimePaths struct {
	upper   string
	paths   []string // runtimePaths and the extra mountpoints with their parents
	missing []string // in the merged rootfs
	noUpper []string // absent from the upper dir (not copied up yet)
	before  map[string]unix.Stat_t
}

// NoteRuntimePaths looks at the mounted rootfs and its upper dir before a run.
// extra are more mountpoints the run adds (absolute paths in the container, as
// RUN --mount targets): they and the parents made for them are taken out too,
// when still empty, as buildkit removes its mount stubs. Every path is followed
// through the image's symlinks first, inside the rootfs, as the runtime follows
// them to make its mountpoints (a target under /var/run makes /run/...).
func NoteRuntimePaths(rootfs, upper string, extra ...string) *RuntimePaths {
	r := &RuntimePaths{upper: upper, before: map[string]unix.Stat_t{}}
	rfd, err := openRootDir(rootfs)
	if err != nil {
		return r
	}
	defer rfd.Close()
	for _, e := range append(append([]string(nil), runtimePaths...), extra...) {
		rel := resolveInRoot(rfd, e)
		if rel == "" {
			continue
		}
		var chain []string
		for p := rel; p != "."; p = path.Dir(p) {
			chain = append(chain, p)
		}
		for i := len(chain) - 1; i >= 0; i-- { // parents first
			if !slices.Contains(r.paths, chain[i]) {
				r.paths = append(r.paths, chain[i])
			}
		}
	}
	ufd, err := openRootDir(upper)
	if err != nil {
		return r
	}
	defer ufd.Close()
	for _, p := range r.paths {
		if st, ok := statInRoot(rfd, p); ok {
			r.before[p] = st
		} else {
			r.missing = append(r.missing, p)
		}
		if _, _, err := lstatBeneath(ufd, p); errors.Is(err, unix.ENOENT) {
			r.noUpper = append(r.noUpper, p)
		}
	}
	return r
}

// resolveInRoot is p (absolute in the root) with the symlinks on its way
// followed inside the root, as openat2 RESOLVE_IN_ROOT follows them; components
// that do not exist are kept as they are. The result is relative ("" for /).
func resolveInRoot(rfd *os.File, p string) string {
	todo := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	var done []string
	for links := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := strings.Join(append(done[:len(done):len(done)], c), "/")
		if st, ok := statInRoot(rfd, cur); ok && st.Mode&unix.S_IFMT == unix.S_IFLNK && links < 40 {
			links++
			if t, err := readlinkInRoot(rfd, cur); err == nil {
				if strings.HasPrefix(t, "/") {
					done = nil
				}
				todo = append(strings.Split(t, "/"), todo...)
				continue
			}
		}
		done = append(done, c)
	}
	return strings.Join(done, "/")
}

// readlinkInRoot reads the symlink p (relative) in the root.
func readlinkInRoot(rfd *os.File, p string) (string, error) {
	d, err := openat2InRoot(rfd, path.Dir("/"+p), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return "", err
	}
	defer d.Close()
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(int(d.Fd()), path.Base(p), buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// lstatBeneath lstats p (relative) under the dir dfd without following any
// symlink on the way, and returns its parent dir, open, for acting on it.
func lstatBeneath(dfd *os.File, p string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(dfd.Fd()), path.Dir(p), how)
	if err != nil {
		return nil, st, err
	}
	d := os.NewFile(uintptr(fd), p)
	if err := unix.Fstatat(fd, path.Base(p), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		d.Close()
		return nil, st, err
	}
	return d, st, nil
}

// statInRoot lstats p in root (its last component not followed).
func statInRoot(rfd *os.File, p string) (unix.Stat_t, bool) {
	var st unix.Stat_t
	d, err := openat2InRoot(rfd, path.Dir("/"+p), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return st, false
	}
	defer d.Close()
	return st, unix.Fstatat(int(d.Fd()), path.Base(p), &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// Undo removes from the upper dir (not mounted any more) the runtime's
// mountpoints that are still empty: what Stubs gives, children before parents.
// Best effort: what it cannot remove stays.
func (r *RuntimePaths) Undo() { r.UndoIn(r.upper) }
