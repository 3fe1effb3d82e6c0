package cow

import (
	"flag"
	"os"
	"testing"
)

// TestMain lowers go test's minimisation of new fuzz inputs (-fuzzminimizetime,
// 60s by default) to 200 runs unless the flag is given. The fuzz engine minimises
// every input that adds coverage before it reports it, and each run of an Apply
// target costs a few milliseconds of syscalls: with the default, a fuzz run spent
// nearly all its time minimising tars and its status line said 0 execs/sec.
// Failing inputs are minimised within the same limit.
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
