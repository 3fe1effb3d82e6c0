#!/usr/bin/env bash
# bench/run.sh: the same filesystem workloads on a native dir, kernel overlayfs,
# fuse-overlayfs and layerfs, over the same generated lower tree; prints medians and
# same-run ratios. Run as root from anywhere in the checkout. See bench/README.md.
#
#   bench/run.sh [--quick] [--reps N] [--workloads w1,w2] [--targets t1,t2]
#                [--data DIR] [--layerfs BIN] [--layerfs-b BIN] [--layerfs-mode auto|compat|helper]
#                [--prime N] [--scratch-on-disk] [--profile] [--list]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

all_workloads="walk-warm walk-cold walk-first tar-warm tar-cold tar-first grep-warm grep-cold grep-first cat-warm cat-cold cat-first read-warm read-cold read-first write copyup-warm copyup-cold untar rm compile"
all_targets="native overlay fuse-overlayfs layerfs layerfs-pt layerfs-b"
default_targets="native overlay fuse-overlayfs layerfs"
quick=0
reps=""
workloads=""
targets="$default_targets"
data=/var/tmp/layerfs-bench
layerfs_bin=""
layerfs_b_bin=""
layerfs_mode=auto
profile=0
scratch_tmpfs=1
prime=1

usage() {
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
	echo "workloads: $all_workloads"
	echo "targets:   $all_targets (default: $default_targets; layerfs-pt is layerfs"
	echo "           in passthrough mode (-o passthrough, or benchmount -passthrough); layerfs-b is"
	echo "           the --layerfs-b BIN binary in compat mode, for A/B runs of two builds)"
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--reps) reps=$2; shift ;;
	--workloads) workloads=${2//,/ }; shift ;;
	--targets) targets=${2//,/ }; shift ;;
	--data) data=$2; shift ;;
	--layerfs) layerfs_bin=$2; shift ;;
	--layerfs-b) layerfs_b_bin=$2; shift ;;
	--layerfs-mode) layerfs_mode=$2; shift ;;
	--profile) profile=1 ;;
	--scratch-on-disk) scratch_tmpfs=0 ;;
	--prime) prime=$2; shift ;;
	--list) usage; exit 0 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: needs root (kernel overlayfs mounts, drop_caches)" >&2
	exit 1
fi

if [ $quick = 1 ]; then
	: "${reps:=1}"
	lower=$data/lower-quick
	genflags=-quick
	: "${workloads:=$all_workloads}"
else
	: "${reps:=5}"
	lower=$data/lower
	genflags=
	: "${workloads:=$all_workloads}"
fi
for w in $workloads; do
	case " $all_workloads " in *" $w "*) ;; *) echo "run.sh: unknown workload $w" >&2; exit 2 ;; esac
done
for t in $targets; do
	case " $all_targets " in *" $t "*) ;; *) echo "run.sh: unknown target $t" >&2; exit 2 ;; esac
done
case " $targets " in *" layerfs-b "*)
	[ -x "$layerfs_b_bin" ] || { echo "run.sh: target layerfs-b needs --layerfs-b BIN" >&2; exit 2; } ;;
esac

scratch=$data/run
bin=$data/bin
mkdir -p "$bin" "$scratch"
if mountpoint -q "$scratch"; then
	echo "run.sh: $scratch is already a mountpoint (another run.sh?)" >&2
	exit 1
fi

# ---------------------------------------------------------------- cleanup

declare -a mounts=()   # every mountpoint this script mounted
declare -a helpers=()  # pids of benchmount helpers this script started

cleanup() {
	local i m p
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
		m=${mounts[$i]}
		if mountpoint -q "$m" 2>/dev/null; then
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
	for p in "${helpers[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Upper dirs and native writable copies live on a private tmpfs by default: on a
# shared machine, other tenants' fsyncs stall ext4's journal for seconds, which
# swamps the filesystem overhead being measured (--scratch-on-disk to measure it
# anyway). The lower tree stays on disk.
if [ $scratch_tmpfs = 1 ]; then
	mounts+=("$scratch")
	mount -t tmpfs -o size=6g,mode=0755 layerfs-bench "$scratch"
fi

# ---------------------------------------------------------------- build and data

log() { printf '%s\n' "$*" >&2; }

log "building gentree, benchmount and layerfs from $repo"
(cd "$repo" && go build -o "$bin/gentree" ./bench/cmd/gentree &&
	go build -o "$bin/benchmount" ./bench/cmd/benchmount)
if [ -z "$layerfs_bin" ]; then
	(cd "$repo" && go build -o "$bin/layerfs" .)
	layerfs_bin=$bin/layerfs
fi

log "lower tree: $lower"
"$bin/gentree" $genflags "$lower"
untar_tar=$lower.untar.tar
if [ ! -s "$untar_tar" ] || [ "$untar_tar" -ot "$lower/.benchtree-done" ]; then
	tar -C "$lower" -cf "$untar_tar.tmp" tree && mv "$untar_tar.tmp" "$untar_tar"
fi
bigsize=$(stat -c %s "$lower/big/big.bin")
nfiles=$(find "$lower/tree" -type f | wc -l)
nbin=$(find "$lower/bin" -type f | wc -l)

# ---------------------------------------------------------------- layerfs mode

# compat: `layerfs -o lowerdir=...,upperdir=...,workdir=... MNT` daemonises once the
# mount is live (the fuse-overlayfs command line). helper: bench/cmd/benchmount,
# which calls fs.Mount in the foreground; used until the compat mode exists.
probe_compat() {
	local d=$scratch/probe
	rm -rf "$d" && mkdir -p "$d"/{l,u,w,m} && echo x >"$d/l/f"
	mounts+=("$d/m")
	if timeout 20 "$layerfs_bin" -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" >/dev/null 2>&1 &&
		mountpoint -q "$d/m" && [ "$(cat "$d/m/f" 2>/dev/null)" = x ]; then
		umount "$d/m"
		return 0
	fi
	mountpoint -q "$d/m" && umount "$d/m"
	return 1
}
case " $targets " in *" layerfs "* | *" layerfs-pt "*)
	if [ $profile = 1 ]; then
		layerfs_mode=helper
	elif [ "$layerfs_mode" = auto ]; then
		if probe_compat; then layerfs_mode=compat; else layerfs_mode=helper; fi
	fi
	log "layerfs mode: $layerfs_mode"
	;;
esac

# ---------------------------------------------------------------- targets

# start_helper MNT DIR [FLAGS...]: bench/cmd/benchmount in the background, until
# MNT is a mountpoint. In --profile mode it also counts ops and profiles the CPU.
start_helper() {
	local mnt=$1 d=$2 i
	shift 2
	local extra=("$@")
	if [ $profile = 1 ]; then
		extra+=(-ops "$profdir/$cur_workload.ops" -cpuprofile "$profdir/$cur_workload.pprof")
	fi
	"$bin/benchmount" "${extra[@]}" -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$mnt" 2>>"$scratch/benchmount.log" &
	helper_pid=$!
	helpers+=("$helper_pid")
	for i in $(seq 200); do
		mountpoint -q "$mnt" && return 0
		kill -0 "$helper_pid" 2>/dev/null || { log "benchmount exited"; return 1; }
		sleep 0.05
	done
	log "layerfs mount did not come up"
	return 1
}

# setup_target T NEEDS: makes a fresh instance of target T and sets $M to a dir
# whose tree/, src/ and big/ show the lower tree. For native, NEEDS (a list of
# lower subpaths) says what to copy into a fresh writable dir; with NEEDS "ro" the
# lower itself is used.
M=""
helper_pid=""
setup_target() {
	local t=$1 needs=$2 d=$scratch/$1
	if mountpoint -q "$d/mnt" 2>/dev/null; then umount "$d/mnt"; fi
	rm -rf "$d"
	mkdir -p "$d"/{upper,work,mnt}
	M=$d/mnt
	case $t in
	native)
		if [ "$needs" = ro ]; then
			M=$lower
		else
			local p
			for p in $needs; do
				mkdir -p "$M/$(dirname "$p")"
				cp -a "$lower/$p" "$M/$p"
			done
		fi
		;;
	overlay)
		mounts+=("$M")
		mount -t overlay overlay -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$M"
		;;
	fuse-overlayfs)
		mounts+=("$M")
		fuse-overlayfs -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$M" 2>>"$scratch/fuse-overlayfs.log"
		;;
	layerfs)
		mounts+=("$M")
		if [ "$layerfs_mode" = compat ]; then
			"$layerfs_bin" -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$M"
		else
			start_helper "$M" "$d"
		fi
		;;
	layerfs-pt)
		mounts+=("$M")
		if [ "$layerfs_mode" = compat ]; then
			"$layerfs_bin" -o "passthrough,lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$M"
		else
			start_helper "$M" "$d" -passthrough
		fi
		;;
	layerfs-b)
		mounts+=("$M")
		"$layerfs_b_bin" -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$M"
		;;
	esac
}

teardown_target() {
	local t=$1 d=$scratch/$1
	if [ "$t" != native ]; then
		sync
		umount "$d/mnt"
		if [ -n "$helper_pid" ]; then
			wait "$helper_pid" 2>/dev/null || true
			helper_pid=""
		fi
		if [ "$t" = fuse-overlayfs ]; then
			# the daemon exits after the unmount; give it a moment
			for _ in 1 2 3 4 5 6 7 8 9 10; do pgrep -f "fuse-overlayfs .*$d/mnt" >/dev/null || break; sleep 0.1; done
		fi
	fi
	rm -rf "$d"
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# ---------------------------------------------------------------- workloads

# Each workload has: needs (what native copies; "ro" = read the lower in place),
# prep (untimed, after mount), run (timed). Warm workloads run once untimed first.
needs_of() {
	case $1 in
	walk-* | tar-* | grep-* | cat-* | read-*) echo ro ;;
	write | untar) echo "" ;;
	copyup-*) echo big/mid.bin ;;
	rm) echo tree ;;
	compile) echo src ;;
	esac
}

run_walk() { find "$M/tree" -printf '%s %m %u %T@\n' >/dev/null; }
run_tar() { tar -C "$M" -cf - tree | cat >/dev/null; }
run_grep() { grep -r -c "$needle" "$M/tree" >/dev/null; }
run_cat() { find "$M/bin" -type f -print0 | xargs -0 cat >/dev/null; }
run_read() { dd if="$M/big/big.bin" of=/dev/null bs=1M status=none; }
run_write() { dd if=/dev/zero of="$M/out.bin" bs=1M count=$((bigsize >> 20)) status=none; }
run_copyup() { printf x >>"$M/big/mid.bin"; }
run_untar() { mkdir "$M/x" && tar -C "$M/x" -xf "$untar_tar"; }
run_rm() { rm -rf "$M/tree"; }
run_compile() { make -C "$M/src" -s -j2 >/dev/null; }
needle=LAYERFS_NEEDLE

# measure W T: one timed run of workload W on target T; sets $elapsed (seconds).
# (Not run in a subshell, so the cleanup lists see every mount it makes.)
elapsed=""
measure() {
	local w=$1 t=$2 base=${1%-warm} t0 t1
	base=${base%-cold}
	base=${base%-first}
	setup_target "$t" "$(needs_of "$w")"
	case $w in
	*-warm)
		# --prime N untimed passes first (default 1: the timed pass is the second;
		# FUSE mounts still revalidate attributes the first pass's reads invalidated)
		for _ in $(seq "$prime"); do
			case $base in
			copyup) cat "$M/big/mid.bin" >/dev/null ;;
			*) "run_$base" ;;
			esac
		done
		;;
	*-cold) drop_caches ;;
	*-first)
		# The same command on the lower itself, untimed: the layers' pages and
		# inodes are cached and the fresh mount's are not, as for a new container
		# over layers another one just read. Through overlayfs this is warm.
		local m=$M
		M=$lower
		"run_$base"
		M=$m
		;;
	rm) find "$M/tree" >/dev/null ;;
	write | untar | compile) sync ;;
	esac
	t0=${EPOCHREALTIME/./}
	"run_$base"
	t1=${EPOCHREALTIME/./}
	teardown_target "$t"
	elapsed=$(printf '%d.%06d' $(((t1 - t0) / 1000000)) $(((t1 - t0) % 1000000)))
}

# ---------------------------------------------------------------- profile mode

if [ $profile = 1 ]; then
	profdir=$data/profile
	rm -rf "$profdir" && mkdir -p "$profdir"
	ptarget=layerfs
	case " $targets " in *" layerfs-pt "*) ptarget=layerfs-pt ;; esac
	log "profiling $ptarget"
	for w in $workloads; do
		cur_workload=$w
		measure "$w" "$ptarget"
		log "profile $w: ${elapsed}s (debug logging on: not a benchmark figure)"
	done
	for w in $workloads; do
		echo "== $w: FUSE requests by opcode"
		cat "$profdir/$w.ops"
	done
	echo "CPU profiles: $profdir/<workload>.pprof (go tool pprof -top $bin/benchmount FILE)"
	exit 0
fi

# ---------------------------------------------------------------- main loop

stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv=$data/results-$stamp.csv
echo "rep,workload,target,seconds" >"$csv"
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "layerfs: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown) (mode: $layerfs_mode)"
	echo "kernel: $(uname -r); $(nproc) CPUs; $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
	echo "fuse-overlayfs: $(fuse-overlayfs --version 2>/dev/null | grep -m1 fuse-overlayfs)"
	echo "tree: $nfiles files under tree/, $nbin under bin/, big.bin $((bigsize >> 20)) MiB; scratch on $( [ $scratch_tmpfs = 1 ] && echo tmpfs || echo disk)"
	echo "reps: $reps; warm passes primed: $prime; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"${csv%.csv}.meta"
read -r -a tarr <<<"$targets"
nt=${#tarr[@]}
log "reps=$reps targets=[$targets] workloads=[$workloads] files=$nfiles big=$((bigsize >> 20))MiB"
log "raw results: $csv"
if [ $((reps % nt)) -ne 0 ]; then
	log "note: $reps reps over $nt targets: positions in the order are not balanced (use a multiple of $nt)"
fi
start=$SECONDS
for rep in $(seq "$reps"); do
	wi=0
	for w in $workloads; do
		wi=$((wi + 1))
		for k in $(seq 0 $((nt - 1))); do
			# Rotate the target order by one per rep (and per workload), so each
			# target runs first, second, ... equally often when reps is a multiple
			# of the target count. (A running count of workloads instead of wi
			# shifted the order by the workload count plus one per rep, which
			# visits every order only when that is coprime with the target count:
			# one workload and two targets always ran A then B. Position matters:
			# in an A/A run of read-cold, the first of the pair was 2x slower in 3
			# of 5 reps.)
			t=${tarr[$(((k + wi + rep) % nt))]}
			cur_workload=$w
			measure "$w" "$t"
			echo "$rep,$w,$t,$elapsed" >>"$csv"
			log "$(printf 'rep %d/%d  %-12s %-15s %9.3fs' "$rep" "$reps" "$w" "$t" "$elapsed")"
		done
	done
done
log "elapsed: $((SECONDS - start))s"

# ---------------------------------------------------------------- summary

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"${csv%.csv}.meta"
{
	sed 's/^/    /' "${csv%.csv}.meta"
	echo
	"$here/summary.sh" "$csv" "$targets" "$workloads"
} | tee "${csv%.csv}.md"
