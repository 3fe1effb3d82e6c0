package blobstore

import (
	"flag"
	"os"
	"testing"
)

// TestMain lowers go test's minimisation of new fuzz inputs (-fuzzminimizetime,
// 60s by default) to 200 runs unless the flag is given. The fuzz engine minimises
// every input that adds coverage before it reports it, and a run of FuzzLoad
// makes a store and loads twice: with the default, a fuzz run spends most of its
// time minimising archives. Failing inputs are minimised within the same limit.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if !set {
		if err := flag.Set("test.fuzzminimizetime", "200x"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
