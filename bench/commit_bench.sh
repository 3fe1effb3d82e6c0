#!/usr/bin/env bash
# Commit benchmarks (issue 4): layerfs commit throughput for gzip, zstd and none
# against `tar | pigz`, `tar | zstd -T0`, plain `tar` and `umoci repack` on the same
# upper dir, interleaved, REPS times; and the time of a one-file commit on a small and
# on a large image (it must not grow with the image). Prints a markdown report.
#
#   sudo bench/commit_bench.sh            # REPS=5 by default
#   REPS=7 SRC="/usr/local/go /usr/lib/gcc" bench/commit_bench.sh > out.md
#
# Needs root (FUSE mounts with allow_other), pigz, zstd, umoci, python3. Uses a work
# dir under /var/tmp (a disk, like the store), removed at the end.
set -euo pipefail

REPS=${REPS:-5}
SRC=${SRC:-"/usr/local/go /usr/lib/gcc /usr/lib/python3.11"}
here=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /var/tmp/layerfs-commit-bench.XXXXXX)
BIN=$W/layerfs
ROOT=$W/root
L() { "$BIN" --root "$ROOT" "$@"; }
cleanup() {
	for m in "$W"/mnt-*; do
		[ -d "$m" ] && mountpoint -q "$m" && { L umount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m" || true; }
	done
	rm -rf "$W"
}
trap cleanup EXIT
for t in pigz zstd umoci python3 busybox; do
	command -v "$t" >/dev/null || { echo "commit_bench: $t not found" >&2; exit 1; }
done

(cd "$here" && go build -o "$BIN" .)
export SOURCE_DATE_EPOCH=

# Base image: busybox.
mkdir -p "$W/rootfs/bin" "$W/rootfs/etc" "$W/rootfs/tmp"
cp "$(command -v busybox)" "$W/rootfs/bin/busybox"
ln -s busybox "$W/rootfs/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' >"$W/rootfs/etc/passwd"
tar -C "$W/rootfs" -cf "$W/base.tar" .
L import "$W/base.tar" base:1 >/dev/null

# The upper: a copy of $SRC written through a mount.
L mount --name big base:1 "$W/mnt-big" >/dev/null
mkdir -p "$W/mnt-big/data"
for s in $SRC; do [ -d "$s" ] && cp -a "$s" "$W/mnt-big/data/"; done
L umount "$W/mnt-big" >/dev/null
UPPER=$ROOT/work/big/upper
BYTES=$(du -sb "$UPPER" | cut -f1)
FILES=$(find "$UPPER" | wc -l)

# umoci's bundle: the base image unpacked, plus the same data.
cp -a "$ROOT/store" "$W/umoci-layout"
umoci unpack --image "$W/umoci-layout:docker.io/library/base:1" "$W/bundle" >/dev/null
cp -a "$UPPER/data" "$W/bundle/rootfs/"

sync
now() { date +%s.%N; }
results=$W/results.tsv
: >"$results"
timeit() { # name cmd...
	local name=$1 t0 t1
	shift
	t0=$(now)
	"$@" >/dev/null 2>&1 || { echo "commit_bench: $name failed" >&2; exit 1; }
	t1=$(now)
	awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s\t%.4f\n", n, b - a }' >>"$results"
}
for rep in $(seq "$REPS"); do
	timeit "layerfs commit gzip" L commit --compression gzip big
	timeit "tar | pigz" sh -c "tar -C '$UPPER' -cf - . | pigz > '$W/out.gz'"
	timeit "umoci repack (gzip)" umoci repack --image "$W/umoci-layout:rep$rep" "$W/bundle"
	timeit "layerfs commit zstd" L commit --compression zstd big
	timeit "tar | zstd -T0" sh -c "tar -C '$UPPER' -cf - . | zstd -q -T0 > '$W/out.zst'"
	timeit "layerfs commit none" L commit --compression none big
	timeit "tar" sh -c "tar -C '$UPPER' -cf - . > '$W/out.tar'"
	[ "$rep" = "$REPS" ] || rm -f "$W/out.gz" "$W/out.zst" "$W/out.tar"
done
# Compressed sizes: ours (the top layer of each commit) and the tools'.
sizes() { # image-id
	python3 - "$ROOT/store" "$1" <<'PY'
import json, sys, os
store, cid = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(store, "blobs", "sha256", d.split(":")[1])
for m in json.load(open(os.path.join(store, "index.json")))["manifests"]:
    man = json.load(open(blob(m["digest"])))
    if man["config"]["digest"] == cid:
        print(man["layers"][-1]["size"]); break
PY
}
SIZE_GZ=$(sizes "$(L commit --compression gzip big)")
SIZE_ZST=$(sizes "$(L commit --compression zstd big)")
SIZE_PIGZ=$(stat -c %s "$W/out.gz")
SIZE_ZSTD=$(stat -c %s "$W/out.zst")

# One-file commits: the same 1 MB change on the small base image and on a large one
# (the data above as a layer), mounted, with --pause.
L commit --compression none big big:1 >/dev/null
L mount --name small1 base:1 "$W/mnt-small" >/dev/null
L mount --name large1 big:1 "$W/mnt-large" >/dev/null
for rep in $(seq "$REPS"); do
	for c in small large; do
		head -c 1000000 /dev/urandom >"$W/mnt-$c/one-file"
		timeit "one-file commit, $c image" L commit "${c}1"
	done
done
LARGE_FILES=$(find "$W/mnt-large" -xdev | wc -l)
L umount "$W/mnt-small" >/dev/null
L umount "$W/mnt-large" >/dev/null

python3 - "$results" "$BYTES" "$FILES" "$REPS" "$LARGE_FILES" "$SIZE_GZ" "$SIZE_PIGZ" "$SIZE_ZST" "$SIZE_ZSTD" <<'EOF'
import statistics, sys
path = sys.argv[1]
nbytes, files, reps, large_files, s_gz, s_pigz, s_zst, s_zstd = map(int, sys.argv[2:10])
times = {}
for line in open(path):
    name, t = line.rstrip("\n").split("\t")
    times.setdefault(name, []).append(float(t))
med = {k: statistics.median(v) for k, v in times.items()}
md = lambda s: s.replace("|", "\\|")
mb = nbytes / 1e6
print(f"Upper dir: {mb:.0f} MB in {files} entries; {reps} interleaved repetitions; median wall time.\n")
print("| run | median s | min s | max s | MB/s of upper |")
print("|---|---:|---:|---:|---:|")
for k in ["layerfs commit gzip", "tar | pigz", "umoci repack (gzip)", "layerfs commit zstd", "tar | zstd -T0", "layerfs commit none", "tar"]:
    v = times[k]
    print(f"| {md(k)} | {med[k]:.2f} | {min(v):.2f} | {max(v):.2f} | {mb/med[k]:.0f} |")
def ratio(a, b):
    return med[b] / med[a]
print()
print("| target (same run) | ratio | target | met |")
print("|---|---:|---:|---|")
for a, b, want in [("layerfs commit gzip", "tar | pigz", 2.0), ("layerfs commit gzip", "umoci repack (gzip)", 3.0), ("layerfs commit zstd", "tar | zstd -T0", 0.5)]:
    r = ratio(a, b)
    print(f"| {md(a)} vs {md(b)} | {r:.2f}x | >= {want}x | {'yes' if r >= want else 'NO'} |")
print()
print(f"Compressed size: layerfs gzip {s_gz/1e6:.1f} MB vs pigz (level 6) {s_pigz/1e6:.1f} MB; layerfs zstd {s_zst/1e6:.1f} MB vs zstd -T0 (level 3) {s_zstd/1e6:.1f} MB.")
print()
print(f"One-file commit (1 MB file, mounted, --pause), small image vs large image ({large_files} entries):\n")
print("| run | median s | min s | max s |")
print("|---|---:|---:|---:|")
for k in ["one-file commit, small image", "one-file commit, large image"]:
    v = times[k]
    print(f"| {k} | {med[k]:.3f} | {min(v):.3f} | {max(v):.3f} |")
print(f"\nlarge / small: {med['one-file commit, large image'] / med['one-file commit, small image']:.2f}x")
EOF
