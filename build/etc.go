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
// host's, as docker gives a container on the host network) and /etc/hostname
// into dir, and returns the binds that put them in place. What the container
// writes to them stays in dir, out of its upper dir, as in docker.
func EtcFiles(dir, hostname string, extraHosts ...string) ([]Bind, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("container etc files: %w", err)
	}
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		hosts = []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	for _, h := range extraHosts { // docker's --add-host HOST:IP (or HOST=IP)
		name, ip, ok := strings.Cut(h, "=")
		if !ok {
			name, ip, _ = strings.Cut(h, ":")
		}
		hosts = append(hosts, []byte(ip+"\t"+name+"\n")...)
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
// when still empty, as buildkit removes its mount stubs.
func NoteRuntimePaths(rootfs, upper string, extra ...string) *RuntimePaths {
	r := &RuntimePaths{upper: upper, before: map[string]unix.Stat_t{}}
	r.paths = append(r.paths, runtimePaths...)
	for _, e := range extra {
		rel := strings.TrimPrefix(path.Clean("/"+e), "/")
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
	rfd, err := openRootDir(rootfs)
	if err != nil {
		return r
	}
	defer rfd.Close()
	for _, p := range r.paths {
		if st, ok := statInRoot(rfd, p); ok {
			r.before[p] = st
		} else {
			r.missing = append(r.missing, p)
		}
		if _, err := os.Lstat(filepath.Join(upper, p)); errors.Is(err, os.ErrNotExist) {
			r.noUpper = append(r.noUpper, p)
		}
	}
	return r
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
// mountpoints that are still empty: files and dirs the rootfs lacked, and dirs
// that were only copied up to hold them. Children go before parents.
func (r *RuntimePaths) Undo() {
	in := func(list []string, p string) bool { return slices.Contains(list, p) }
	for i := len(r.paths) - 1; i >= 0; i-- {
		p := r.paths[i]
		if !in(r.missing, p) && !in(r.noUpper, p) {
			continue
		}
		full := filepath.Join(r.upper, p)
		fi, err := os.Lstat(full)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(full, &st) != nil {
			continue
		}
		switch {
		case fi.Mode().IsRegular() && fi.Size() == 0 && in(r.missing, p):
			os.Remove(full)
		case fi.IsDir() && in(r.missing, p):
			os.Remove(full) // only if empty
		case fi.IsDir():
			// A dir copied up only to hold our files: drop it if the container did
			// not change its owner or mode.
			if b, ok := r.before[p]; ok && b.Mode == st.Mode && b.Uid == st.Uid && b.Gid == st.Gid {
				os.Remove(full) // only if empty
			}
		}
	}
}
