package bench

import (
	"testing"

	"github.com/layerfs/layerfs/bench/tree"
)

// A workload is one of run.sh's workloads in Go. write lists the lower paths it
// changes (nil: read-only); bytes is its data volume for MB/s, if any.
type workload struct {
	name  string
	write []string
	bytes func(spec tree.Spec) int64
	run   func(dir, lower string, spec tree.Spec) (string, error)
}

var workloads = []workload{
	{name: "walk", run: func(d, _ string, _ tree.Spec) (string, error) { return walk(d) }},
	{name: "tar", run: func(d, _ string, _ tree.Spec) (string, error) { return tarTree(d) }},
	{name: "grep", run: func(d, _ string, _ tree.Spec) (string, error) { return grep(d) }},
	{name: "cat", run: func(d, _ string, _ tree.Spec) (string, error) { return catBin(d) }},
	{name: "read", bytes: func(s tree.Spec) int64 { return s.BigSize },
		run: func(d, _ string, _ tree.Spec) (string, error) { return seqRead(d) }},
	{name: "write", write: []string{}, bytes: func(s tree.Spec) int64 { return s.BigSize },
		run: func(d, _ string, s tree.Spec) (string, error) { return seqWrite(d, s.BigSize) }},
	{name: "copyup", write: []string{"big/mid.bin"}, bytes: func(s tree.Spec) int64 { return s.MidSize },
		run: func(d, _ string, _ tree.Spec) (string, error) { return copyUp(d) }},
	{name: "untar", write: []string{},
		run: func(d, lower string, _ tree.Spec) (string, error) { return untar(d, lower+".tar") }},
	{name: "rm", write: []string{"tree"},
		run: func(d, _ string, _ tree.Spec) (string, error) { return removeTree(d) }},
}

// BenchmarkWarm runs each read-only workload on each target with the caches filled
// by a first, untimed pass in the same mount.
func BenchmarkWarm(b *testing.B) {
	lower := lowerFor(b, benchSpec)
	for _, w := range workloads {
		if w.write != nil {
			continue
		}
		for _, t := range targets {
			b.Run(w.name+"/"+t.name, func(b *testing.B) {
				dir, done := t.setup(b, lower, nil)
				b.Cleanup(done)
				if _, err := w.run(dir, lower, benchSpec); err != nil {
					b.Fatal(err)
				}
				if w.bytes != nil {
					b.SetBytes(w.bytes(benchSpec))
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := w.run(dir, lower, benchSpec); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMutate runs each changing workload on a fresh target per iteration
// (setup and teardown untimed).
func BenchmarkMutate(b *testing.B) {
	lower := lowerFor(b, benchSpec)
	for _, w := range workloads {
		if w.write == nil {
			continue
		}
		for _, t := range targets {
			b.Run(w.name+"/"+t.name, func(b *testing.B) {
				if w.bytes != nil {
					b.SetBytes(w.bytes(benchSpec))
				}
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					dir, done := t.setup(b, lower, w.write)
					if w.name == "rm" {
						if _, err := walk(dir); err != nil { // look the tree up first, as run.sh does
							done()
							b.Fatal(err)
						}
					}
					b.StartTimer()
					_, err := w.run(dir, lower, benchSpec)
					b.StopTimer()
					done()
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}

// TestWorkloadsAgree runs every workload once on every target over a small tree
// and checks they all give the native answer: it keeps the benchmarks honest and
// is quick enough for CI.
func TestWorkloadsAgree(t *testing.T) {
	lower := lowerFor(t, testSpec)
	before, err := tree.Digest(lower)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			var want string
			for _, tg := range targets {
				t.Run(tg.name, func(t *testing.T) {
					dir, done := tg.setup(t, lower, w.write)
					t.Cleanup(done)
					got, err := w.run(dir, lower, testSpec)
					if err != nil {
						t.Fatalf("%s on %s: %v", w.name, tg.name, err)
					}
					if tg.name == "native" {
						want = got
					} else if got != want {
						t.Errorf("%s on %s = %q, want %q (native)", w.name, tg.name, got, want)
					}
				})
			}
		})
	}
	// The lower tree must come out of all that untouched.
	if after, err := tree.Digest(lower); err != nil || after != before {
		t.Errorf("Digest(lower) after the workloads = %s, %v, want %s (unchanged)", after, err, before)
	}
}
