#!/usr/bin/env bash
# hack/update-go-fuse.sh [VERSION]: rebuild third_party/go-fuse, the copy of go-fuse
# that layerfs builds with (go.mod's replace), from go-fuse's module VERSION (default:
# the one go.mod requires) and the patches in third_party/go-fuse-*.patch. Only the
# packages layerfs imports are kept, without their tests. See third_party/README.md.
#
# hack/update-go-fuse.sh --diff: print how third_party/go-fuse differs from the module
# (after editing it: the patches, all in one; split it by file into the patch files).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=update
if [ "${1:-}" = --diff ]; then
	mode=diff
	shift
fi
mod=github.com/hanwen/go-fuse/v2
ver=${1:-$(go mod edit -json | sed -n "/\"Path\": \"${mod//\//\\/}\"/{n;s/.*\"Version\": \"\(.*\)\".*/\1/p;}" | head -1)}
[ -n "$ver" ] || { echo "update-go-fuse: no version of $mod in go.mod" >&2; exit 1; }
src=$(GOFLAGS=-mod=mod go mod download -json "$mod@$ver" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "update-go-fuse: go mod download $mod@$ver gave no dir" >&2; exit 1; }
pkgs="fuse fs internal internal/fallocate internal/utimens internal/ioctl internal/openat internal/renameat internal/xattr splice posixtest"
dst=third_party/go-fuse
# copy_pkgs DIR: the kept packages' Go files, without tests, from the module into DIR.
copy_pkgs() {
	for p in $pkgs; do
		mkdir -p "$1/$p"
		for f in "$src/$p"/*.go; do
			case $f in *_test.go) continue ;; esac
			cp "$f" "$1/$p/"
		done
	done
}
if [ $mode = diff ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	copy_pkgs "$tmp/a"
	cp -r "$dst" "$tmp/b"
	rm -f "$tmp/b/go.mod" "$tmp/b/LICENSE" "$tmp/b/VERSION"
	(cd "$tmp" && diff -ruN a b) | sed 's#^\(---\|+++\) \([^	]*\)	.*#\1 \2#' || true
	exit 0
fi
rm -rf "$dst.new"
copy_pkgs "$dst.new"
cp "$src/LICENSE" "$dst.new/"
# Only golang.org/x/sys is imported by the packages kept.
sys=$(sed -n 's#^\tgolang.org/x/sys \(v[^ ]*\).*#\1#p' "$src/go.mod")
printf 'module %s\n\ngo 1.21\n\nrequire golang.org/x/sys %s\n' "$mod" "$sys" > "$dst.new/go.mod"
for p in third_party/go-fuse-*.patch; do
	patch -s -p1 --no-backup-if-mismatch -d "$dst.new" < "$p"
done
echo "$mod $ver" > "$dst.new/VERSION"
rm -rf "$dst"
mv "$dst.new" "$dst"
gofmt -l "$dst"
echo "third_party/go-fuse: $mod $ver with $(ls third_party/go-fuse-*.patch | wc -l) patch(es)"
