// Package bench holds layerfs's filesystem benchmarks: Go benchmarks of the core
// workloads through an in-process fs.Mount (fs_bench_test.go), and run.sh, which
// runs the same workloads on a native dir, kernel overlayfs, fuse-overlayfs and the
// layerfs binary side by side. See README.md for how to run them and the figures.
//
// Benchmarks are never timed assertions: `go test ./bench/` only checks that every
// workload gives the same answer on every target, quickly.
package bench
