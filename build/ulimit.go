package build

import (
	"fmt"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	"golang.org/x/sys/unix"
)

// ulimitResources are docker's --ulimit names.
var ulimitResources = map[string]int{
	"core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE,
	"locks": unix.RLIMIT_LOCKS, "memlock": unix.RLIMIT_MEMLOCK, "msgqueue": unix.RLIMIT_MSGQUEUE,
	"nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "rss": unix.RLIMIT_RSS,
	"rtprio": unix.RLIMIT_RTPRIO, "rttime": unix.RLIMIT_RTTIME, "sigpending": unix.RLIMIT_SIGPENDING,
	"stack": unix.RLIMIT_STACK, "as": unix.RLIMIT_AS,
}

// ParseUlimit parses docker's --ulimit NAME=SOFT[:HARD] (-1 is unlimited).
func ParseUlimit(s string) (Ulimit, error) {
	u, err := units.ParseUlimit(s)
	if err != nil {
		return Ulimit{}, fmt.Errorf("invalid --ulimit %q: %w", s, err)
	}
	if _, ok := ulimitResources[u.Name]; !ok {
		return Ulimit{}, fmt.Errorf("invalid --ulimit %q: unknown resource %q", s, u.Name)
	}
	return Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard}, nil
}

// String is the --ulimit value that gives u.
func (u Ulimit) String() string {
	return u.Name + "=" + strconv.FormatInt(u.Soft, 10) + ":" + strconv.FormatInt(u.Hard, 10)
}

// setUlimits applies limits to this process (the command inherits them at exec).
func setUlimits(limits []Ulimit) error {
	for _, l := range limits {
		res, ok := ulimitResources[strings.ToLower(l.Name)]
		if !ok {
			return fmt.Errorf("ulimit %s: unknown resource", l.Name)
		}
		rl := unix.Rlimit{Cur: rlim(l.Soft), Max: rlim(l.Hard)}
		if err := unix.Setrlimit(res, &rl); err != nil {
			return fmt.Errorf("ulimit %s: %w", l, err)
		}
	}
	return nil
}

func rlim(v int64) uint64 {
	if v < 0 {
		return unix.RLIM_INFINITY
	}
	return uint64(v)
}
