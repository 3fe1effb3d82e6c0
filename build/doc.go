// Package build runs commands in mounted images and builds images from Dockerfiles,
// without a daemon: it composes the union filesystem (fs), layer dirs (cow) and the
// image store (blobstore), as mountcmd does, and never imports mountcmd.
//
// # Containers (runtime.go, init.go, rootfs.go, exec.go)
//
// Start runs a ProcessSpec in new mount, pid, uts and ipc namespaces (the host's
// network and user namespace): the binary re-executes itself as InitCommand, which
// bind-mounts the rootfs onto itself, mounts a fresh /proc, a tmpfs /dev with
// null, zero, full, random, urandom, tty, devpts (ptmx) and shm, a read-only /sys
// and the binds, pivots into the rootfs, sets the hostname, and execs the command
// as the configured user, so the command is pid 1 (docker's default). With
// ProcessSpec.Init, layerfs's init stays pid 1, forwards signals and reaps (docker
// --init). Exit codes are docker's: the command's, 128+N for signal N, 125 setup,
// 126 not executable, 127 not found. Exec enters a running container.
// The command gets docker's default capabilities (caps.go; all with
// --privileged), docker's read-only and masked /proc paths, nodev mounts; but
// there are no cgroups, seccomp or user namespace, and the host's network
// unless NoNetwork: isolation is for builds and workflows, not for hostile code.
//
// # Builds (builder.go, steps.go, copy.go, context.go, cache.go)
//
// Build follows docker's classic builder (see builder.go): one layer per RUN,
// COPY, ADD or WORKDIR that changes files, an empty_layer history entry for every
// other instruction, docker's output, and a cache that gives an unchanged rebuild
// the same image ID. Config instructions go through ConfigEditor (changes.go), the
// code behind commit -c. Of a multi-stage Dockerfile, the stages the target
// needs are built in order (reach.go, as buildkit); FROM <stage> continues one,
// with its ARGs, COPY --from=<stage, index or image> mounts its
// layers read-only and copies from them with paths resolved inside that root.
//
// # Paths inside images
//
// Every path the package creates inside a rootfs (mountpoints, binds, COPY and
// ADD targets, WORKDIR) is resolved with openat2(RESOLVE_IN_ROOT) and *at calls:
// an image's symlinks (absolute ones too) and ".." never lead outside it.
//
// # Concurrency
//
// Containers and builds are independent of each other; any number may run at
// once. Build holds a store Lease for its whole run so gc keeps the layers it
// writes until the image names them; cache entries are replaced atomically.
package build
