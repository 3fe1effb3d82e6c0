package mountcmd

// ps's --filter, -n and -l, as docker ps has them.

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/layerfs/layerfs/blobstore"
)

// psFilter is ps's --filter: docker's name=, id=, status=, ancestor=, before=,
// since= and label=. Filters of one key are alternatives, but every label= must
// hold (as docker's); different keys must all hold.
type psFilter struct {
	names, ids, statuses, ancestors, before, since, labels []string
	exited                                                 []int // exit codes
}

// psStatuses are the values status= takes: ps's own and docker's state words.
// restarting and removing are docker's too: no container here is ever in
// them (no restart policies, rm is at once), so they match none.
var psStatuses = []string{statusMounted, statusPaused, statusDead, statusUnmounted, "running", "exited", "created", "restarting", "removing"}

func parsePsFilters(args []string) (*psFilter, error) {
	f := &psFilter{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("bad format of filter (expected name=value): %s", a)
		}
		switch strings.ToLower(k) {
		case "name":
			if _, err := regexp.Compile(v); err != nil {
				return nil, fmt.Errorf("invalid filter 'name=%s': %w", v, err)
			}
			f.names = append(f.names, v)
		case "id":
			f.ids = append(f.ids, v)
		case "status":
			if !contains(psStatuses, v) {
				return nil, fmt.Errorf("invalid filter 'status=%s': want one of %s", v, strings.Join(psStatuses, ", "))
			}
			f.statuses = append(f.statuses, v)
		case "exited":
			code, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("invalid filter 'exited=%s': want an exit code", v)
			}
			f.exited = append(f.exited, code)
		case "ancestor":
			f.ancestors = append(f.ancestors, v)
		case "before":
			f.before = append(f.before, v)
		case "since":
			f.since = append(f.since, v)
		case "label":
			f.labels = append(f.labels, v)
		default:
			return nil, fmt.Errorf("invalid filter '%s'", k)
		}
	}
	return f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// apply keeps the rows every filter lets through; imgs resolve ancestor= (an
// image ref or ID: the containers made from that image).
func (f *psFilter) apply(rows []psRow, imgs []*blobstore.Image) ([]psRow, error) {
	if f == nil {
		return rows, nil
	}
	var ancestorIDs []string
	for _, a := range f.ancestors {
		if img, err := blobstore.ResolveIn(imgs, a); err == nil {
			ancestorIDs = append(ancestorIDs, img.ID.String())
		}
	}
	created := func(names []string) ([]psRow, error) {
		var out []psRow
		for _, n := range names {
			r, err := psRowNamed(rows, n)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}
	before, err := created(f.before)
	if err != nil {
		return nil, err
	}
	since, err := created(f.since)
	if err != nil {
		return nil, err
	}
	var out []psRow
	for _, r := range rows {
		ok := anyOf(f.names, func(v string) bool {
			re := regexp.MustCompile(v) // docker's names start with "/"
			return re.MatchString(r.Name) || re.MatchString("/"+r.Name)
		}) &&
			anyOf(f.ids, func(v string) bool { return strings.HasPrefix(r.ID, v) }) &&
			anyOf(f.statuses, func(v string) bool { return v == r.Mount || v == r.dockerState }) &&
			anyOf(f.exited, func(c int) bool { return r.dockerState == "exited" && r.exitCode == c }) &&
			(len(f.ancestors) == 0 || contains(ancestorIDs, r.ImageID)) &&
			allOf(before, func(b psRow) bool { return r.Created.Before(b.Created) }) &&
			allOf(since, func(s psRow) bool { return r.Created.After(s.Created) }) &&
			hasLabels(r.labels, f.labels)
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// anyOf: no values, or one of them matches.
func anyOf[T any](values []T, match func(T) bool) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		if match(v) {
			return true
		}
	}
	return false
}

func allOf(rows []psRow, match func(psRow) bool) bool {
	for _, r := range rows {
		if !match(r) {
			return false
		}
	}
	return true
}

// lastCreated keeps the n containers created last, newest first (docker ps -n).
func lastCreated(rows []psRow, n int) []psRow {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Created.After(rows[j].Created) })
	if n < len(rows) {
		rows = rows[:n]
	}
	return rows
}

// hasLabels: every filter, KEY or KEY=VALUE, holds for labels.
func hasLabels(labels map[string]string, filters []string) bool {
	for _, f := range filters {
		k, v, withValue := strings.Cut(f, "=")
		got, ok := labels[k]
		if !ok || (withValue && got != v) {
			return false
		}
	}
	return true
}

// psRowNamed is the row n names, as findContainer looks up: the name first
// (with or without docker's "/"), else the one ID n is a prefix of; a prefix
// several IDs share is refused.
func psRowNamed(rows []psRow, n string) (psRow, error) {
	for _, r := range rows {
		if r.Name == strings.TrimPrefix(n, "/") {
			return r, nil
		}
	}
	var hit *psRow
	for i, r := range rows {
		if isHexString(n) && strings.HasPrefix(r.ID, n) {
			if hit != nil {
				return psRow{}, fmt.Errorf("%w: %s", errAmbiguousID, n)
			}
			hit = &rows[i]
		}
	}
	if hit == nil {
		return psRow{}, fmt.Errorf("%w: %s", errNoSuchContainer, n)
	}
	return *hit, nil
}

// asksState reports whether f selects by status=: docker ps then lists
// stopped containers without -a (moby's foldFilter; exited= does not).
func (f *psFilter) asksState() bool {
	return f != nil && len(f.statuses) > 0
}
