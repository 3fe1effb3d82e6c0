package mountcmd

import (
	"bufio"
	"os"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Mountpoint string
	FSType     string
	Source     string
	Dev        string // MAJOR:MINOR, the mount's st_dev (statting a dead FUSE mount hangs)
}

// readMounts parses /proc/self/mountinfo (proc(5)); an unreadable table is empty.
func readMounts() []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		e := mountEntry{Mountpoint: unescapeMount(fields[4]), Dev: fields[2]}
		for i := 5; i < len(fields); i++ {
			if fields[i] == "-" && i+2 < len(fields) {
				e.FSType = fields[i+1]
				e.Source = unescapeMount(fields[i+2])
				break
			}
		}
		out = append(out, e)
	}
	return out
}

// unescapeMount undoes the kernel's octal escapes (\040 for space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// findMount returns the topmost mount at exactly mountpoint.
func findMount(mountpoint string) (mountEntry, bool) {
	var found mountEntry
	ok := false
	for _, e := range readMounts() {
		if e.Mountpoint == mountpoint {
			found, ok = e, true // later lines are mounted on top
		}
	}
	return found, ok
}

// isMountpoint reports whether something is mounted at mountpoint.
func isMountpoint(mountpoint string) bool {
	_, ok := findMount(mountpoint)
	return ok
}

// isOurMount reports whether a FUSE mount with the given source is at mountpoint.
func isOurMount(mountpoint, source string) bool {
	for _, e := range readMounts() {
		if e.Mountpoint == mountpoint && e.Source == source && strings.HasPrefix(e.FSType, "fuse") {
			return true
		}
	}
	return false
}
