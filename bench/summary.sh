#!/usr/bin/env bash
# bench/summary.sh CSV [TARGETS] [WORKLOADS]: the median seconds per workload and
# target of a run.sh results file, and same-run ratios (of medians), as a markdown
# table. TARGETS and WORKLOADS (space-separated) pick and order the rows/columns.
set -euo pipefail
csv=$1
targets=${2:-native overlay fuse-overlayfs layerfs}
workloads=${3:-$(awk -F, 'NR>1 && !seen[$2]++ {printf "%s ", $2}' "$csv")}
awk -F, -v targets="$targets" -v workloads="$workloads" '
NR == 1 { next }
{ k = $2 SUBSEP $3; n[k]++; v[k, n[k]] = $4 + 0; reps[$2] = n[k] > reps[$2] ? n[k] : reps[$2] }
function median(k,   m, i, j, a, t) {
	m = n[k]
	if (m == 0) return -1
	for (i = 1; i <= m; i++) a[i] = v[k, i]
	for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
function spread(k,   m, i, lo, hi) {
	m = n[k]; lo = hi = v[k, 1]
	for (i = 2; i <= m; i++) { if (v[k, i] < lo) lo = v[k, i]; if (v[k, i] > hi) hi = v[k, i] }
	return lo > 0 ? hi / lo : 0
}
# A ratio to a median under a millisecond (native copy-up: an append) means nothing.
function ratio(a, b) { return (a > 0 && b >= 0.001) ? sprintf("%.2f", a / b) : "-" }
function short(t) { return t == "fuse-overlayfs" ? "fuse-ovl" : (t == "overlay" ? "ovl" : t) }
END {
	nt = split(targets, T, " "); nw = split(workloads, W, " ")
	has["native"] = has["overlay"] = has["fuse-overlayfs"] = has["layerfs"] = 0
	for (i = 1; i <= nt; i++) has[T[i]] = 1
	hdr = "| workload | reps |"; sep = "|---|---:|"
	for (i = 1; i <= nt; i++) { hdr = hdr " " T[i] " s |"; sep = sep "---:|" }
	if (has["native"]) for (i = 1; i <= nt; i++) if (T[i] != "native") { hdr = hdr " " short(T[i]) "/native |"; sep = sep "---:|" }
	for (i = 1; i <= nt; i++) if (T[i] ~ /^layerfs/) {
		if (has["overlay"]) { hdr = hdr " **" T[i] "/ovl** |"; sep = sep "---:|" }
		if (has["fuse-overlayfs"]) { hdr = hdr " **" T[i] "/fuse-ovl** |"; sep = sep "---:|" }
	}
	ab = has["layerfs"] && has["layerfs-b"]
	if (ab) { hdr = hdr " **layerfs-b/layerfs** |"; sep = sep "---:|" }
	print hdr; print sep
	for (j = 1; j <= nw; j++) {
		w = W[j]; line = "| " w " | " reps[w] " |"
		for (i = 1; i <= nt; i++) { md[T[i]] = median(w SUBSEP T[i]); line = line " " (md[T[i]] < 0 ? "-" : sprintf("%.3f", md[T[i]])) " |" }
		if (has["native"]) for (i = 1; i <= nt; i++) if (T[i] != "native") line = line " " ratio(md[T[i]], md["native"]) " |"
		for (i = 1; i <= nt; i++) if (T[i] ~ /^layerfs/) {
			if (has["overlay"]) line = line " **" ratio(md[T[i]], md["overlay"]) "** |"
			if (has["fuse-overlayfs"]) line = line " **" ratio(md[T[i]], md["fuse-overlayfs"]) "** |"
		}
		if (ab) line = line " **" ratio(md["layerfs-b"], md["layerfs"]) "** |"
		print line
	}
	print ""
	print "Spread (max/min over the repetitions):"
	print ""
	hdr = "| workload |"; sep = "|---|"
	for (i = 1; i <= nt; i++) { hdr = hdr " " T[i] " |"; sep = sep "---:|" }
	print hdr; print sep
	for (j = 1; j <= nw; j++) {
		w = W[j]; line = "| " w " |"
		for (i = 1; i <= nt; i++) line = line " " (n[w SUBSEP T[i]] ? sprintf("%.2f", spread(w SUBSEP T[i])) : "-") " |"
		print line
	}
}' "$csv"
