// Command benchmount mounts layerfs's union filesystem in the foreground by calling
// fs.Mount directly, with fuse-overlayfs's option syntax, for bench/run.sh and for
// profiling the server:
//
//	benchmount [-ops FILE] [-trace FILE] [-cpuprofile FILE] [-memprofile FILE] [-passthrough] [-oci] -o lowerdir=A:B,upperdir=U,workdir=W MNT
//
// It serves until MNT is unmounted (umount MNT, or SIGINT/SIGTERM). With -ops it
// turns on go-fuse's debug log and, at exit, writes a count of FUSE requests by
// opcode to FILE (the log itself is discarded); -trace keeps the whole log in FILE,
// to read the requests one workload sends in order. With -cpuprofile it writes a pprof
// CPU profile of the server for its whole life. With -memprofile FILE, each SIGUSR1 writes
// a heap profile of the server (after a GC) to FILE.1, FILE.2, ..., to see what the nodes
// and listings of a walk keep (go tool pprof -sample_index=inuse_space).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/layerfs/layerfs/cow"
	"github.com/layerfs/layerfs/fs"
)

func main() {
	opt := flag.String("o", "", "lowerdir=A:B[,upperdir=U,workdir=W]")
	ops := flag.String("ops", "", "count FUSE requests by opcode into this file")
	trace := flag.String("trace", "", "write go-fuse's debug log (every request and reply) to this file")
	cpu := flag.String("cpuprofile", "", "write a CPU profile of the server here")
	mem := flag.String("memprofile", "", "on each SIGUSR1, write a heap profile to this file's name plus .1, .2, ...")
	oci := flag.Bool("oci", false, "write OCI whiteouts instead of overlay ones")
	pt := flag.Bool("passthrough", false, "per-open FUSE passthrough (fs.Options.Passthrough) instead of no-open mode")
	flag.Parse()
	if flag.NArg() != 1 || *opt == "" {
		fmt.Fprintln(os.Stderr, "usage: benchmount [-ops FILE] [-trace FILE] [-cpuprofile FILE] [-memprofile FILE] -o lowerdir=A:B,upperdir=U,workdir=W MNT")
		os.Exit(2)
	}
	if *mem != "" {
		go heapOnSignal(*mem)
	}
	if err := run(flag.Arg(0), *opt, *ops, *trace, *cpu, *oci, *pt); err != nil {
		fmt.Fprintf(os.Stderr, "benchmount: %v\n", err)
		os.Exit(1)
	}
}

func run(mnt, opt, opsFile, traceFile, cpuFile string, oci, passthrough bool) error {
	o := fs.Options{Format: cow.FormatOverlay, FsName: "layerfs-bench", Passthrough: passthrough}
	if oci {
		o.Format = cow.FormatOCI
	}
	for _, kv := range strings.Split(opt, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "lowerdir":
			o.Lowers = strings.Split(v, ":")
		case "upperdir":
			o.Upper = v
		case "workdir":
			o.Work = v
		}
	}
	o.ReadOnly = o.Upper == ""
	var counter *opCounter
	var logTo []io.Writer
	if opsFile != "" {
		counter = &opCounter{n: map[string]int{}}
		logTo = append(logTo, counter)
	}
	if traceFile != "" {
		f, err := os.Create(traceFile)
		if err != nil {
			return err
		}
		defer f.Close()
		logTo = append(logTo, f)
	}
	if len(logTo) > 0 {
		log.SetOutput(io.MultiWriter(logTo...))
		log.SetFlags(log.LstdFlags | log.Lmicroseconds)
		o.Debug = true
	}
	if cpuFile != "" {
		f, err := os.Create(cpuFile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	m, err := fs.Mount(mnt, o)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		if err := m.Unmount(); err != nil {
			fmt.Fprintf(os.Stderr, "benchmount: %v\n", err)
		}
	}()
	m.Wait()
	if counter != nil {
		return os.WriteFile(opsFile, counter.report(), 0o644)
	}
	return nil
}

// heapOnSignal writes a heap profile to prefix.N at the Nth SIGUSR1.
func heapOnSignal(prefix string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	for i := 1; ; i++ {
		<-sig
		runtime.GC()
		f, err := os.Create(fmt.Sprintf("%s.%d", prefix, i))
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchmount: %v\n", err)
			continue
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "benchmount: %v\n", err)
		}
		f.Close()
	}
}

// opCounter counts go-fuse debug lines "rx N: OPCODE ..." by opcode; forgets are
// logged as "doBatchForget: rx ... FORGET".
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

var _ io.Writer = (*opCounter)(nil)

func (c *opCounter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		i := bytes.Index(line, []byte("rx "))
		if i < 0 {
			continue
		}
		rest := line[i+3:]
		j := bytes.Index(rest, []byte(": "))
		if j < 0 {
			continue
		}
		f := bytes.Fields(rest[j+2:])
		if len(f) == 0 {
			continue
		}
		c.mu.Lock()
		c.n[string(f[0])]++
		c.mu.Unlock()
	}
	return len(p), nil
}

func (c *opCounter) report() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	type kv struct {
		k string
		v int
	}
	var all []kv
	total := 0
	for k, v := range c.n {
		all = append(all, kv{k, v})
		total += v
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var b bytes.Buffer
	for _, e := range all {
		fmt.Fprintf(&b, "%-14s %d\n", e.k, e.v)
	}
	fmt.Fprintf(&b, "%-14s %d\n", "TOTAL", total)
	return b.Bytes()
}
