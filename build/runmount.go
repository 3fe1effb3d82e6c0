package build

// RUN's flags: --mount (bind, cache, tmpfs, secret), --network and --security,
// as buildkit (docker's default builder) gives them. What they add to the step's
// container is not the step's change: the mountpoints the container lacked are
// taken out of its layer afterwards (RuntimePaths, as buildkit removes its mount
// stubs), and what is written to a cache, tmpfs or bind mount stays out of it.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"
)

// runMounts is what a RUN's flags add to its container.
type runMounts struct {
	binds    []Bind   // bind, cache and tmpfs mounts, parents before children
	secrets  []Secret // secret files
	env      []string // secrets given as environment variables (env=)
	noNet    bool     // --network=none
	insecure bool     // --security=insecure: every capability
	targets  []string // every mountpoint, for RuntimePaths
	key      string   // what the step's cache key adds
	cleanups []func()
	// setups make ready what the mounts need (copies, cache dirs and their
	// locks): run by setup once the step is not a cache hit.
	setups []func() error
	locked map[string]string // cache dir -> data dir, for caches this RUN holds
}

// setup runs the work that only a step that really runs needs.
func (m *runMounts) setup() error {
	for _, f := range m.setups {
		if err := f(); err != nil {
			return err
		}
	}
	m.setups = nil
	// Parents before children, so a mount inside another one lands in it (the
	// setups fill m.binds by index: sorted only now).
	sort.SliceStable(m.binds, func(i, j int) bool { return depth(m.binds[i].Target) < depth(m.binds[j].Target) })
	return nil
}

// close releases what prepareRunMounts took: cache locks, copies, mounts.
func (m *runMounts) close() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
	m.cleanups = nil
}

// prepareRunMounts reads a RUN's flags and works out the cache key they add;
// setup then makes what they mount ready. The caller must close the result.
func (b *builder) prepareRunMounts(ctx context.Context, c *instructions.RunCommand) (*runMounts, error) {
	m := &runMounts{}
	for _, f := range c.FlagsUsed {
		switch f {
		case "mount", "network", "security":
		default:
			return m, fmt.Errorf("RUN --%s is not supported", f)
		}
	}
	var key strings.Builder
	switch n := instructions.GetNetwork(c); n {
	case instructions.NetworkNone:
		m.noNet = true
		key.WriteString("network none\n")
	case instructions.NetworkDefault, instructions.NetworkHost, "":
		// The host's network, as every RUN has here.
	default:
		return m, fmt.Errorf("invalid network mode %q", n)
	}
	// --security=insecure: every capability, as buildkit, which wants the
	// build to allow it (docker build --allow security.insecure); sandbox is
	// the default set.
	if instructions.GetSecurity(c) == instructions.SecurityInsecure {
		if !b.o.AllowInsecure {
			return m, errors.New("RUN --security=insecure needs the build to allow it: --allow security.insecure")
		}
		m.insecure = true
		key.WriteString("security insecure\n")
	}
	if err := c.Expand(b.expand); err != nil { // parses --mount with ARGs expanded
		return m, err
	}
	mounts := instructions.GetMounts(c)
	wd := b.img.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	for _, mt := range mounts {
		target := mt.Target
		if target != "" && !path.IsAbs(target) {
			target = path.Join(wd, target) // as buildkit: relative to WORKDIR
		}
		if target != "" {
			target = path.Clean(target)
		}
		if target == "/" {
			return m, errors.New(`invalid mount target "/"`)
		}
		var err error
		switch mt.Type {
		case instructions.MountTypeBind:
			err = b.bindMount(ctx, m, mt, target, &key)
		case instructions.MountTypeCache:
			err = b.cacheMount(ctx, m, mt, target, &key)
		case instructions.MountTypeTmpfs:
			if target == "" {
				err = errors.New("tmpfs mount: target is required")
				break
			}
			m.binds = append(m.binds, Bind{Target: target, Tmpfs: true, Size: mt.SizeLimit, ReadOnly: mt.ReadOnly})
			fmt.Fprintf(&key, "tmpfs %q %d %v\n", target, mt.SizeLimit, mt.ReadOnly)
		case instructions.MountTypeSecret:
			err = b.secretMount(m, mt, target, &key)
		case instructions.MountTypeSSH:
			err = errors.New("--mount=type=ssh is not supported (no SSH agent forwarding)")
		default:
			err = fmt.Errorf("unsupported mount type %q", mt.Type)
		}
		if err != nil {
			return m, err
		}
	}
	if target := clashingTargets(m); target != "" {
		return m, fmt.Errorf("mount target %s is used twice", target)
	}
	for _, bd := range m.binds {
		m.targets = append(m.targets, bd.Target)
	}
	for _, s := range m.secrets {
		m.targets = append(m.targets, s.Target)
	}
	m.key = key.String()
	return m, nil
}

func depth(p string) int { return strings.Count(path.Clean(p), "/") }

// clashingTargets returns a target two mounts share, or "".
func clashingTargets(m *runMounts) string {
	seen := map[string]bool{}
	for _, bd := range m.binds {
		if seen[bd.Target] {
			return bd.Target
		}
		seen[bd.Target] = true
	}
	for _, s := range m.secrets {
		if seen[s.Target] {
			return s.Target
		}
		seen[s.Target] = true
	}
	return ""
}

// bindMount is --mount=type=bind: a path of the context, or of a stage or
// image (from=), read-only unless rw (then writes go to a copy, thrown away).
// The step's cache key covers the source's content, as COPY's does.
func (b *builder) bindMount(ctx context.Context, m *runMounts, mt *instructions.Mount, target string, key *strings.Builder) error {
	if target == "" {
		return errors.New("bind mount: target is required")
	}
	if target == "/" {
		return errors.New("bind mount: cannot mount over /")
	}
	bc, fromKey := b.ctxDir, ""
	if mt.From != "" {
		src, id, unmount, err := b.mountFrom(ctx, mt.From)
		if err != nil {
			return fmt.Errorf("bind mount from=%s: %w", mt.From, err)
		}
		m.cleanups = append(m.cleanups, unmount)
		bc, fromKey = src, "from "+id.String()
	}
	source := mt.Source
	if source == "" {
		source = "/"
	}
	if strings.ContainsAny(source, "*?[") {
		return fmt.Errorf("bind mount: source %q: wildcards are not allowed", source)
	}
	srcs, err := bc.resolve(source)
	if err != nil {
		return fmt.Errorf("bind mount %s: %w", source, err)
	}
	if len(srcs) != 1 {
		return fmt.Errorf("bind mount %s: not found", source)
	}
	hash, err := bc.hashSources(srcs)
	if err != nil {
		return fmt.Errorf("bind mount %s: %w", source, err)
	}
	fmt.Fprintf(key, "bind %s %q %q %s %v\n", fromKey, source, target, hash, mt.ReadOnly)
	src := srcs[0]
	if mt.ReadOnly && bc.pm == nil {
		// Nothing of it is excluded: the path itself, read-only.
		m.binds = append(m.binds, Bind{Source: src.abs, Target: target, ReadOnly: true})
		return nil
	}
	// A copy: writable ones must not reach the context, and .dockerignore'd
	// files must not be seen. It goes below the scratch dir's top, where its
	// lock file is.
	dest := "/data"
	if !src.fi.IsDir() {
		dest = "/data/" + path.Base(src.rel)
		if src.rel == "." {
			dest = "/data/file"
		}
	}
	i := len(m.binds)
	m.binds = append(m.binds, Bind{Target: target, ReadOnly: mt.ReadOnly}) // Source: below
	m.setups = append(m.setups, func() error {
		dir, release, err := newScratchDir(b.tmpRoot, "bind-")
		if err != nil {
			return err
		}
		m.cleanups = append(m.cleanups, func() { os.RemoveAll(dir); release() })
		cp, err := newCopier(dir, "", nil)
		if err != nil {
			return err
		}
		defer cp.close()
		cp.keepOwners = mt.From != ""
		if err := cp.copyAll(bc, srcs, nil, nil, dest, false, false); err != nil {
			return fmt.Errorf("bind mount %s: %w", source, err)
		}
		m.binds[i].Source = filepath.Join(dir, filepath.FromSlash(dest))
		return nil
	})
	return nil
}

// cacheMountsDir holds RUN --mount=type=cache dirs: <StateDir>/build-mounts/<id
// hash>/data, kept across builds as buildkit keeps them (`layerfs gc` leaves
// them; remove the dir to empty them).
func (b *builder) cacheMountsDir() string { return CacheMountsDir(b.o.StateDir) }

// cacheMount is --mount=type=cache: a dir kept across builds, named by id
// (default: the target), made with mode/uid/gid (0755, root) the first time.
// sharing=locked lets one RUN at a time use it; private gives a RUN that finds
// it in use a fresh dir of its own, dropped afterwards.
func (b *builder) cacheMount(ctx context.Context, m *runMounts, mt *instructions.Mount, target string, key *strings.Builder) error {
	if target == "" {
		return errors.New("cache mount: target is required")
	}
	id := mt.CacheID
	if id == "" {
		id = target
	}
	// from= (and source=, a dir in it) seeds a new cache, which is then one of
	// its own for that stage's content, as buildkit bases the cache on it.
	var seed *buildContext
	var seedSrcs []source
	dirID := id
	if mt.From != "" {
		bc, fid, unmount, err := b.mountFrom(ctx, mt.From)
		if err != nil {
			return fmt.Errorf("cache mount %s: %w", id, err)
		}
		m.cleanups = append(m.cleanups, unmount)
		source := mt.Source
		if source == "" {
			source = "/"
		}
		if seedSrcs, err = bc.resolve(source); err != nil || len(seedSrcs) != 1 || !seedSrcs[0].fi.IsDir() {
			return fmt.Errorf("cache mount %s: source %s is not a directory in %s", id, source, mt.From)
		}
		seed = bc
		dirID = id + "\x00from " + fid.String() + " " + path.Clean("/"+source)
		if v, ok := b.namedContext(mt.From); ok && !strings.HasPrefix(v, "docker-image://") {
			// A dir named by --build-context: its content, not its path, picks
			// the cache (an image's ID already stands for its content).
			h, err := bc.hashSources(seedSrcs)
			if err != nil {
				return fmt.Errorf("cache mount %s: %w", id, err)
			}
			dirID += " " + h
		}
	} else if mt.Source != "" {
		return errors.New("cache mount: source= needs from=")
	}
	mode, uid, gid := os.FileMode(0o755), 0, 0
	if mt.Mode != nil {
		mode = os.FileMode(*mt.Mode & 0o7777)
	}
	if mt.UID != nil {
		uid = int(*mt.UID)
	}
	if mt.GID != nil {
		gid = int(*mt.GID)
	}
	sharing := mt.CacheSharing
	if sharing == "" {
		sharing = instructions.MountSharingShared
	}
	fmt.Fprintf(key, "cache %q %q %o %d %d %s %v\n", dirID, target, mode, uid, gid, sharing, mt.ReadOnly)
	sum := sha256.Sum256([]byte(dirID))
	top := filepath.Join(b.cacheMountsDir(), hex.EncodeToString(sum[:16]))
	i := len(m.binds)
	m.binds = append(m.binds, Bind{Target: target, ReadOnly: mt.ReadOnly}) // Source: below
	m.setups = append(m.setups, func() error {
		data, err := b.cacheData(ctx, m, top, id, sharing)
		if err != nil {
			return fmt.Errorf("cache mount %s: %w", id, err)
		}
		if err := makeCacheDir(data, mode, uid, gid, seed, seedSrcs); err != nil {
			return fmt.Errorf("cache mount %s: %w", id, err)
		}
		m.binds[i].Source = data
		return nil
	})
	return nil
}

// cacheData locks the cache dir top for this RUN and returns the dir to mount.
// Every user holds the cache's lock (shared: shared; locked and private:
// exclusive), so that builder prune removes only caches nobody uses; a RUN
// that mounts one cache twice takes it once.
func (b *builder) cacheData(ctx context.Context, m *runMounts, top, id string, sharing instructions.ShareMode) (string, error) {
	if data, ok := m.locked[top]; ok {
		return data, nil
	}
	data := filepath.Join(top, "data")
	how := unix.LOCK_SH
	switch sharing {
	case instructions.MountSharingLocked:
		how = unix.LOCK_EX
	case instructions.MountSharingPrivate:
		how = unix.LOCK_EX | unix.LOCK_NB
	}
	lock, err := lockCacheMount(ctx, top, how)
	switch {
	case err == nil:
		m.cleanups = append(m.cleanups, func() { lock.Close() })
		if _, err := os.Stat(filepath.Join(top, "id")); err != nil { // for builder prune's list
			os.WriteFile(filepath.Join(top, "id"), []byte(id+"\n"), 0o600)
		}
	case sharing == instructions.MountSharingPrivate && errors.Is(err, unix.EWOULDBLOCK):
		// In use: a fresh dir of this RUN's own, dropped afterwards.
		dir, release, err := newScratchDir(b.tmpRoot, "cache-")
		if err != nil {
			return "", err
		}
		m.cleanups = append(m.cleanups, func() { os.RemoveAll(dir); release() })
		data = filepath.Join(dir, "data")
	default:
		return "", err
	}
	if m.locked == nil {
		m.locked = map[string]string{}
	}
	m.locked[top] = data
	return data, nil
}

// lockCacheMount creates the cache dir top if needed and returns its lock file,
// flocked as how asks. A lock taken on a cache that builder prune removed
// meanwhile (the file no longer at its path) is taken again on a new one.
func lockCacheMount(ctx context.Context, top string, how int) (*os.File, error) {
	for {
		if err := os.MkdirAll(top, 0o700); err != nil {
			return nil, err
		}
		p := filepath.Join(top, "lock")
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			continue // builder prune removed top after our MkdirAll
		}
		if err != nil {
			return nil, err
		}
		if err := flockCtx(ctx, f, how); err != nil {
			f.Close()
			return nil, err
		}
		a, err1 := f.Stat()
		b, err2 := os.Stat(p)
		if err1 == nil && err2 == nil && os.SameFile(a, b) {
			return f, nil
		}
		f.Close()
	}
}

// flockCtx is flock(2) that a cancelled build stops waiting on (^C while
// another build holds a sharing=locked cache).
func flockCtx(ctx context.Context, f *os.File, how int) error {
	if how&unix.LOCK_NB != 0 {
		return flockRetry(f, how)
	}
	for {
		err := flockRetry(f, how|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CacheMountsDir is where RUN --mount=type=cache dirs live under a store's
// state dir.
func CacheMountsDir(stateDir string) string { return filepath.Join(stateDir, "build-mounts") }

// makeCacheDir creates a cache mount's dir, owned and moded as asked and holding
// a copy of seedSrcs (a dir of seed) if given, unless it exists: then it is left
// as the RUNs before left it.
func makeCacheDir(dir string, mode os.FileMode, uid, gid int, seed *buildContext, seedSrcs []source) error {
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".new-")
	if err != nil {
		return err
	}
	if seed != nil {
		cp, err := newCopier(tmp, "", nil)
		if err != nil {
			os.RemoveAll(tmp)
			return err
		}
		cp.keepOwners = true
		err = cp.copyAll(seed, seedSrcs, nil, nil, "/", false, false)
		cp.close()
		if err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Lstat(dir); serr == nil {
			return nil // another build made it first
		}
		return err
	}
	return nil
}

// secretMount is --mount=type=secret: a --secret given to the build, as a file
// (default /run/secrets/<id>, mode 0400, root's) or an environment variable
// (env=). A missing secret is an error if required, else the mount is skipped.
// Secrets are not in the cache key (buildkit's neither): a changed secret does
// not rerun a step.
func (b *builder) secretMount(m *runMounts, mt *instructions.Mount, target string, key *strings.Builder) error {
	id := mt.CacheID
	if id == "" {
		if mt.Source != "" {
			id = mt.Source
		} else if mt.Target != "" {
			id = path.Base(mt.Target)
		}
	}
	if id == "" {
		return errors.New("secret mount: id or target is required")
	}
	fmt.Fprintf(key, "secret %q %q\n", id, target)
	data, ok := b.o.Secrets[id]
	if !ok {
		if mt.Required {
			return fmt.Errorf("secret %s: not provided (build --secret id=%s,src=FILE)", id, id)
		}
		return nil
	}
	if mt.Env != nil {
		name := *mt.Env
		if name == "" {
			name = id
		}
		m.env = append(m.env, name+"="+string(data))
		if mt.Target == "" {
			return nil // only the variable
		}
	}
	if target == "" {
		target = "/run/secrets/" + path.Base(id) // as buildkit
	}
	s := Secret{Target: target, Data: data, Mode: 0o400}
	if mt.Mode != nil {
		s.Mode = uint32(*mt.Mode & 0o7777)
	}
	if mt.UID != nil {
		s.UID = int(*mt.UID)
	}
	if mt.GID != nil {
		s.GID = int(*mt.GID)
	}
	m.secrets = append(m.secrets, s)
	return nil
}
