// Command gentree writes the benchmarks' deterministic lower tree (package
// bench/tree) into a directory, unless a complete one is already there.
//
//	gentree [-quick] [-files N] DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/layerfs/layerfs/bench/tree"
)

func main() {
	quick := flag.Bool("quick", false, "generate the small --quick tree")
	files := flag.Int("files", 0, "override the number of text files")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: gentree [-quick] [-files N] DIR")
		os.Exit(2)
	}
	spec := tree.Default
	if *quick {
		spec = tree.Quick
	}
	if *files > 0 {
		spec.Files = *files
	}
	dir := flag.Arg(0)
	if tree.Ready(dir, spec) {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "gentree: %v\n", err)
		os.Exit(1)
	}
	if err := tree.Generate(dir, spec); err != nil {
		fmt.Fprintf(os.Stderr, "gentree: %v\n", err)
		os.Exit(1)
	}
}
