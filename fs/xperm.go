package fs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/cow"
	"golang.org/x/sys/unix"
)

// Owner and mode overrides (fuse-overlayfs's xattr_permissions, Options.XattrPermissions).
//
// containers/storage with force_mask stores every layer file with the masked mode,
// owned by root, and keeps the real "uid:gid:mode" (mode octal; newer writers
// append ":type") in user.containers.override_stat, then mounts with
// xattr_permissions=2. fuse-overlayfs (utils.c override_mode, direct.c
// load_data_source, main.c write_permission_xattr and main) then:
//   - reads, per layer, the first of these xattrs that the layer's root dir
//     carries: security.fuseoverlayfs.override_stat, user.containers.override_stat,
//     user.fuseoverlayfs.override_stat; a layer whose root has none shows its
//     files as stored;
//   - reads the upper dir's from security.fuseoverlayfs.override_stat (1) or
//     user.fuseoverlayfs.override_stat (2), and writes chmod, chown and new
//     entries there instead of changing the file;
//   - overrides only directories and regular files: owner and permission bits,
//     the type is the file's own.
//
// layerfs does the same, with two differences. The upper is read from the
// written name, then from user.containers.override_stat (an upper written
// before); a copy-up writes the upper's names with the owner and mode the file
// showed (copyUpOverrides), as fuse-overlayfs writes its own at each copy-up,
// and user.fuseoverlayfs.* is never copied as such. And with 2 a change
// is written to user.containers.override_stat too, the one name
// containers/storage knows, so that what it commits from the upper dir under
// force_mask has the owner and mode the container gave. Without the option no
// layer has an override and none of this costs a syscall.
const (
	overrideUserXattr       = "user.fuseoverlayfs.override_stat"
	overridePrivilegedXattr = "security.fuseoverlayfs.override_stat"
	overrideContainersXattr = "user.containers.override_stat"
)

// privateXattr reports whether name is never shown through the mount, nor set
// or removed through it: layerfs's and overlay's own, and under
// xattr_permissions the override xattrs, which would otherwise let anyone who
// may write a file's xattrs make it show as root's and set-uid.
func (fsys *unionFS) privateXattr(name string) bool {
	if cow.IsPrivateXattr(name) {
		return true
	}
	return fsys.xperm != 0 && (name == overrideUserXattr || name == overridePrivilegedXattr || name == overrideContainersXattr)
}

// overrideWriteNames are the xattrs a change is written to under
// xattr_permissions=mode (nil: none, the change is made to the file).
func overrideWriteNames(mode int) []string {
	switch mode {
	case 1:
		return []string{overridePrivilegedXattr}
	case 2:
		return []string{overrideUserXattr, overrideContainersXattr}
	}
	return nil
}

// setOverrides chooses, under xattr_permissions=mode, the xattrs each layer's
// overrides are read from (see above). An upper dir whose root has no override
// gets the top lower root's, or 0:0:555, as from fuse-overlayfs. A no-op for
// mode 0.
func (s *stack) setOverrides(mode int) error {
	if mode == 0 {
		return nil
	}
	var buf [64]byte
	for _, l := range s.layers {
		if l.upper {
			l.override = append(overrideWriteNames(mode)[:1:1], overrideContainersXattr)
			continue
		}
		for _, name := range []string{overridePrivilegedXattr, overrideContainersXattr, overrideUserXattr} {
			if _, err := unix.Getxattr(procFd(l.fd), name, buf[:]); err == nil || errors.Is(err, unix.ERANGE) {
				l.override = []string{name}
				break
			}
		}
	}
	if !s.writable() {
		return nil
	}
	up := procFd(s.layers[0].fd)
	for _, name := range s.layers[0].override {
		if _, err := unix.Getxattr(up, name, buf[:]); err == nil || errors.Is(err, unix.ERANGE) {
			return nil
		}
	}
	v := []byte("0:0:555")
	for _, l := range s.layers[1:] {
		if l.override == nil {
			continue
		}
		if n, err := unix.Getxattr(procFd(l.fd), l.override[0], buf[:]); err == nil {
			v = append([]byte(nil), buf[:n]...)
			break
		}
	}
	for _, name := range overrideWriteNames(mode) {
		if err := unix.Setxattr(up, name, v, 0); err != nil {
			return fmt.Errorf("write %s to the upper dir: %w", name, err)
		}
	}
	return nil
}

// overridable reports whether entries of mode's type take an override.
func overridable(mode uint32) bool {
	t := mode & unix.S_IFMT
	return t == unix.S_IFREG || t == unix.S_IFDIR
}

// overrideAt applies the layer's override, if any, to st, a stat of name in the
// layer's dir dfd (an O_PATH fd).
func (l *layer) overrideAt(st *unix.Stat_t, dfd int, name string) {
	if len(l.override) == 0 || !overridable(st.Mode) {
		return
	}
	l.overrideFrom(st, procFd(dfd)+"/"+name, false)
}

// overrideFd applies the layer's override, if any, to st, a stat of fd (O_PATH or
// not) of one of the layer's files.
func (l *layer) overrideFd(st *unix.Stat_t, fd int) {
	if len(l.override) == 0 || !overridable(st.Mode) {
		return
	}
	l.overrideFrom(st, procFd(fd), true)
}

// overrideFrom reads the override of the file at p: by the l* calls (a dir's fd
// link then a name, which is not followed), or (follow) by the plain ones, for
// an fd's /proc link.
func (l *layer) overrideFrom(st *unix.Stat_t, p string, follow bool) {
	var buf [64]byte
	for _, name := range l.override {
		var n int
		var err error
		if follow {
			n, err = unix.Getxattr(p, name, buf[:])
		} else {
			n, err = unix.Lgetxattr(p, name, buf[:])
		}
		if err != nil {
			continue
		}
		if uid, gid, mode, ok := parseOverride(buf[:n]); ok {
			st.Uid, st.Gid = uid, gid
			st.Mode = st.Mode&unix.S_IFMT | mode
			return
		}
	}
}

// parseOverride parses "uid:gid:mode[:...]" (ids decimal, mode octal; only its
// permission and set-id bits count).
func parseOverride(v []byte) (uid, gid, mode uint32, ok bool) {
	var f [3]uint64
	rest := string(v)
	for i := range f {
		field := rest
		if j := strings.IndexByte(rest, ':'); j >= 0 {
			field, rest = rest[:j], rest[j+1:]
		} else if i < 2 {
			return 0, 0, 0, false
		} else {
			rest = ""
		}
		base := 10
		if i == 2 {
			base = 8
		}
		n, err := strconv.ParseUint(field, base, 32)
		if err != nil {
			return 0, 0, 0, false
		}
		f[i] = n
	}
	return uint32(f[0]), uint32(f[1]), uint32(f[2]) & 0o7777, true
}

// overrideValue is an override xattr's value: "uid:gid:mode", mode's permission
// bits in octal.
func overrideValue(uid, gid, mode uint32) []byte {
	return []byte(strconv.FormatUint(uint64(uid), 10) + ":" + strconv.FormatUint(uint64(gid), 10) + ":" + strconv.FormatUint(uint64(mode&0o7777), 8))
}

// copyUpOverrides adds to xattrs, those a copy-up sets on its copy, the upper's
// overrides with the owner and mode e shows (its layer's override, or as
// stored): the copy keeps what the file showed, whichever override its layer
// used, and an override xattr a layer without overrides carried stays inert.
func (fsys *unionFS) copyUpOverrides(xattrs map[string][]byte, e *entry) {
	if len(fsys.overrideNames) == 0 || !overridable(e.st.Mode) {
		return
	}
	v := overrideValue(e.st.Uid, e.st.Gid, e.st.Mode)
	for _, name := range fsys.overrideNames {
		xattrs[name] = v
	}
}

// writeOverride records uid, gid (as stored) and mode's permission bits as the
// override of the upper file at p (an fd's /proc link, followed).
func (fsys *unionFS) writeOverride(p string, uid, gid, mode uint32) error {
	v := overrideValue(uid, gid, mode)
	for _, name := range fsys.overrideNames {
		if err := unix.Setxattr(p, name, v, 0); err != nil {
			return err
		}
	}
	return nil
}

// upperOverrideAt applies the upper's override, if any, to e, the entry name
// in the upper dir dfd stated as stored (a hard link's reply).
func (fsys *unionFS) upperOverrideAt(e *entry, dfd int, name string) {
	if l := fsys.upperLayer(); l != nil && l.override != nil {
		st := e.st.full()
		l.overrideAt(&st, dfd, name)
		e.st = attrsOf(&st)
	}
}

// upperLayer returns the current stack's upper layer (nil when read-only).
func (fsys *unionFS) upperLayer() *layer {
	s := fsys.stack.Load()
	if !s.writable() {
		return nil
	}
	return s.layers[0]
}

// overrideSetattr applies a SETATTR's mode and owner, if it has either, to the
// override of the upper file open as fd (O_PATH or not; a directory or regular
// file) instead of to the file: what chmod and chown do under
// xattr_permissions. A chown of a regular file clears its set-id bits as the
// kernel's does (S_ISGID when the group may execute). It reports whether the
// SETATTR had a mode or owner.
func (fsys *unionFS) overrideSetattr(fd int, in *fuse.SetAttrIn) (bool, error) {
	m, hasMode := in.GetMode()
	su, sg, hasOwner := setattrOwner(in)
	if !hasMode && !hasOwner {
		return false, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return true, err
	}
	if l := fsys.upperLayer(); l != nil {
		l.overrideFd(&st, fd)
	}
	if hasOwner {
		su, sg = fsys.ids.stored(su, sg)
		if su != -1 {
			st.Uid = uint32(su)
		}
		if sg != -1 {
			st.Gid = uint32(sg)
		}
		if !hasMode && st.Mode&unix.S_IFMT == unix.S_IFREG {
			st.Mode &^= unix.S_ISUID
			if st.Mode&unix.S_IXGRP != 0 {
				st.Mode &^= unix.S_ISGID
			}
		}
	}
	if hasMode {
		st.Mode = st.Mode&unix.S_IFMT | m&0o7777
	}
	return true, fsys.writeOverride(procFd(fd), st.Uid, st.Gid, st.Mode)
}

// overrideNew gives the new upper entry name in dir dfd, whose stat is st, an
// override with the caller's owner (the group a setgid parent's, as shown) and
// its mode, and applies it to st: a regular file or directory made through the
// mount under xattr_permissions. ids shifts the caller's ids.
func (fsys *unionFS) overrideNew(ctx context.Context, dfd int, name string, st *unix.Stat_t) error {
	if len(fsys.overrideNames) == 0 || !overridable(st.Mode) {
		return nil
	}
	uid, gid := st.Uid, st.Gid
	if caller, ok := fuse.FromContext(ctx); ok {
		u, g := fsys.ids.stored(int(caller.Uid), int(caller.Gid))
		uid, gid = uint32(u), uint32(g)
	}
	var pst unix.Stat_t
	if unix.Fstat(dfd, &pst) == nil {
		if l := fsys.upperLayer(); l != nil {
			l.overrideFd(&pst, dfd)
		}
		if pst.Mode&unix.S_ISGID != 0 {
			// as the kernel does in a set-gid dir: its group, and a new
			// dir set-gid too (the upper parent's own mode is masked)
			gid = pst.Gid
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				st.Mode |= unix.S_ISGID
			}
		}
	}
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := fsys.writeOverride(procFd(fd), uid, gid, st.Mode); err != nil {
		return err
	}
	st.Uid, st.Gid = uid, gid
	return nil
}

// overrideUnlinked applies to st, a stat of fd, the file of n whose name is gone
// (of the upper dir, or else of the layer n last resolved to), that layer's
// override.
func (n *node) overrideUnlinked(st *unix.Stat_t, fd int, upper bool) {
	var l *layer
	if upper {
		l = n.fs.upperLayer()
	} else {
		n.mu.Lock()
		if n.ent != nil && n.entS != nil {
			l = n.entS.layers[n.ent.layers[0]]
		}
		n.mu.Unlock()
	}
	if l != nil {
		l.overrideFd(st, fd)
	}
}
