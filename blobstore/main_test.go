package blobstore

import (
	"flag"
	"os"
	"testing"

	"github.com/layerfs/layerfs/internal/testenv"
)

func TestMain(m *testing.M) {
	flag.Parse()
	testenv.CapFuzzMinimize() // (a fuzz run minimised instead of fuzzing)
	os.Exit(m.Run())
}
