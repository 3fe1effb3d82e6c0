package build

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ErrNoSuchUser is returned when a USER names a user or group that the image's
// /etc/passwd or /etc/group does not have.
var ErrNoSuchUser = errors.New("no such user")

// ExecUser is who a container process runs as, resolved against the image's files.
type ExecUser struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
	Home     string   // from /etc/passwd; "/" when unknown
}

// LookupUser resolves docker's USER syntax (user, uid, user:group, uid:gid, and
// mixes) against passwd and group files of an image (either may be missing: nil).
// As in docker: a numeric uid need not exist; a user's primary group comes from
// passwd unless a group is given; supplementary groups are the user's memberships
// in group; an empty spec is root.
func LookupUser(spec string, passwd, group io.Reader) (ExecUser, error) {
	users := parseColonFile(passwd, 7)
	groups := parseColonFile(group, 4)
	u := ExecUser{Home: "/"}
	name, grp, hasGroup := strings.Cut(spec, ":")
	if name == "" {
		name = "0"
	}
	userName := ""
	found := false
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		u.UID = uint32(n)
		for _, e := range users {
			if e[2] == name {
				userName, found = e[0], true
				u.GID, u.Home = parseID(e[3]), e[5]
				break
			}
		}
	} else {
		for _, e := range users {
			if e[0] == name {
				userName, found = e[0], true
				u.UID, u.GID, u.Home = parseID(e[2]), parseID(e[3]), e[5]
				break
			}
		}
		if !found {
			return ExecUser{}, fmt.Errorf("unable to find user %s: %w: no matching entries in passwd file", name, ErrNoSuchUser)
		}
	}
	if u.Home == "" {
		u.Home = "/"
	}
	if hasGroup {
		if n, err := strconv.ParseUint(grp, 10, 32); err == nil {
			u.GID = uint32(n)
		} else {
			ok := false
			for _, e := range groups {
				if e[0] == grp {
					u.GID, ok = parseID(e[2]), true
					break
				}
			}
			if !ok {
				return ExecUser{}, fmt.Errorf("unable to find group %s: %w: no matching entries in group file", grp, ErrNoSuchUser)
			}
		}
		u.Groups = []uint32{u.GID}
		return u, nil
	}
	u.Groups = []uint32{u.GID}
	if found {
		for _, e := range groups {
			for _, m := range strings.Split(e[3], ",") {
				if gid := parseID(e[2]); m == userName && m != "" && gid != u.GID {
					u.Groups = append(u.Groups, gid)
				}
			}
		}
	}
	return u, nil
}

// LookupUserInRoot is LookupUser with the passwd and group files of a root dir.
func LookupUserInRoot(spec, root string) (ExecUser, error) {
	open := func(name string) io.Reader {
		f, err := openInRoot(root, name)
		if err != nil {
			return nil
		}
		defer f.Close()
		b, _ := io.ReadAll(io.LimitReader(f, 16<<20))
		return strings.NewReader(string(b))
	}
	return LookupUser(spec, open("/etc/passwd"), open("/etc/group"))
}

func parseID(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

// parseColonFile reads passwd/group style lines with at least n fields (missing
// fields are empty); comments and blank lines are skipped.
func parseColonFile(r io.Reader, n int) [][]string {
	if r == nil {
		return nil
	}
	var out [][]string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		for len(f) < n {
			f = append(f, "")
		}
		out = append(out, f)
	}
	return out
}

// openInRoot opens name (absolute inside root) for reading with every symlink
// resolved inside root.
func openInRoot(root, name string) (*os.File, error) {
	rfd, err := openRootDir(root)
	if err != nil {
		return nil, err
	}
	defer rfd.Close()
	return openat2InRoot(rfd, name, os.O_RDONLY)
}
