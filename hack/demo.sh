#!/usr/bin/env bash
# The main job on the built-in sample image: build layerfs, make the sample image
# (a busybox rootfs from Debian's busybox-static plus hack/sample/), mount it, edit it
# with ordinary tools, commit, list, save; then build hack/demo-build's Dockerfile on
# it, run the result, change a container and commit it. Runs in a throwaway store unless
# LAYERFS_ROOT is set. Needs root (FUSE mounts with allow_other, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

if ! command -v busybox >/dev/null || ! command -v fusermount3 >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static fuse3 >/dev/null
fi

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/layerfs-demo.XXXXXX")
export LAYERFS_ROOT="${LAYERFS_ROOT:-$work/root}"
mnt="$work/mnt"
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then ./layerfs umount "$mnt" || fusermount3 -u "$mnt" || true; fi
}
trap cleanup EXIT

step env CGO_ENABLED=0 go build -o layerfs .

# The sample image: busybox-static and its applet links, plus hack/sample's files.
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,root,var/www}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for a in $("$rootfs/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
cp -r hack/sample/. "$rootfs/"
tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$rootfs" -cf "$work/sample.tar" .

step ./layerfs import -c 'CMD ["/bin/sh"]' -m "layerfs sample" "$work/sample.tar" layerfs/sample:1
step ./layerfs images
step ./layerfs mount --name demo layerfs/sample:1 "$mnt"
step cat "$mnt/etc/motd"
step sed -i 's/Hello/Hello again/' "$mnt/etc/motd"
step mkdir -p "$mnt/data/html"
step cp "$mnt/var/www/index.html" "$mnt/data/html/index.html"
step rm "$mnt/bin/vi"
step chroot "$mnt" /bin/sh -c 'echo "built in a chroot on $(uname -s)" > /root/note; cat /etc/motd'
step ./layerfs diff demo
step ./layerfs commit -a "Demo <demo@example.com>" -m "edit motd, add html" -c 'CMD ["/bin/httpd","-f","-h","/data/html"]' demo layerfs/sample:2
step ./layerfs umount "$mnt"
step ./layerfs images
step ./layerfs history layerfs/sample:2
step ./layerfs save -o "$work/sample-2.tar" layerfs/sample:2
step ls -l "$work/sample-2.tar"

# Images from a Dockerfile, and containers, without a daemon or kernel overlay.
step ./layerfs build -t layerfs/web:1 hack/demo-build
step ./layerfs run --rm layerfs/web:1
step ./layerfs build -t layerfs/web:1 hack/demo-build
step ./layerfs run --name web1 layerfs/web:1 sh -c 'echo "<p>edited in a container</p>" >> /home/www/notes.html'
step ./layerfs diff web1
step ./layerfs inspect --format '{{.State.Status}} {{.State.ExitCode}} {{json .GraphDriver.Data}}' web1
step ./layerfs ps -a
step ./layerfs commit -c 'CMD ["cat","/home/www/notes.html"]' web1 layerfs/web:2
step ./layerfs run --rm layerfs/web:2
step ./layerfs rm web1
step ./layerfs images
printf '\nDone. Store: %s, saved image: %s (rm -rf %s when done with them)\n' "$LAYERFS_ROOT" "$work/sample-2.tar" "$work"
