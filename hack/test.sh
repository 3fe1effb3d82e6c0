#!/usr/bin/env bash
# Runs every layerfs test: installs the oracle tools it needs (as root, from Debian's
# packages), then `go test ./...` with real FUSE mounts. LAYERFS_TEST_FUSE=1 (the
# default here) makes a missing /dev/fuse a failure rather than a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

# tool:package pairs the tests use as oracles or fixtures.
wanted="fusermount3:fuse3 skopeo:skopeo umoci:umoci busybox:busybox-static fuse-overlayfs:fuse-overlayfs pigz:pigz zstd:zstd getfattr:attr docker-registry:docker-registry htpasswd:apache2-utils podman:podman runc:runc xz:xz-utils bzip2:bzip2 buildah:buildah strace:strace git:git keyctl:keyutils"
missing=()
for pair in $wanted; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing (run as root to install): ${missing[*]}" >&2
  fi
fi

export LAYERFS_TEST_FUSE="${LAYERFS_TEST_FUSE:-1}"
go vet ./...
go test -count=1 -timeout 30m "$@" ./...
