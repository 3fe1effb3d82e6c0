package mountcmd

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/layerfs/layerfs/blobstore"
)

// pruneFilter is image prune's --filter: docker's until=, label= and label!=.
type pruneFilter struct {
	until     time.Time // zero: no limit
	labels    []string  // KEY or KEY=VALUE the image must have
	notLabels []string  // KEY or KEY=VALUE the image must not have
}

func parsePruneFilters(fs []string, now time.Time) (*pruneFilter, error) {
	f := &pruneFilter{}
	for _, s := range fs {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("bad format of filter (expected name=value)")
		}
		switch strings.ToLower(k) {
		case "until":
			if !f.until.IsZero() {
				return nil, fmt.Errorf("more than one until filter specified")
			}
			t, err := parseTimestamp(v, now)
			if err != nil {
				return nil, fmt.Errorf("invalid filter 'until=%s': %w", v, err)
			}
			f.until = t
		case "label":
			f.labels = append(f.labels, v)
		case "label!":
			f.notLabels = append(f.notLabels, v)
		default:
			return nil, fmt.Errorf("invalid filter '%s'", k)
		}
	}
	return f, nil
}

// keep tells whether prune may remove img as far as the filters go: created
// before until (an image with no creation time never is, as in docker), with
// every label= label, and not with every label!= label (docker's MatchKVList:
// label!=a with label!=b keeps only what has both a and b).
func (f *pruneFilter) keep(img *blobstore.Image) bool {
	return f.keepObject(img.Created(), img.Config.Config.Labels)
}

// keepObject is keep for anything with a creation time and labels (an image,
// a working container).
func (f *pruneFilter) keepObject(created time.Time, labels map[string]string) bool {
	if !f.until.IsZero() && (created.IsZero() || created.After(f.until)) {
		return false
	}
	has := func(l string) bool {
		k, v, hasV := strings.Cut(l, "=")
		got, ok := labels[k]
		return ok && (!hasV || got == v)
	}
	for _, l := range f.labels {
		if !has(l) {
			return false
		}
	}
	if len(f.notLabels) == 0 {
		return true
	}
	for _, l := range f.notLabels {
		if !has(l) {
			return true
		}
	}
	return false
}

// parseTimestamp is docker's until= value: a Go duration before now ("24h"), a
// Unix time ("1700000000", "1700000000.5"), or an RFC 3339 date or date-time,
// local time when it names no zone ("2024-01-02", "2024-01-02T15:04:05").
func parseTimestamp(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); v != "0" && err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02T15", "2006-01-02", "2006-01-02Z07:00"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	if sec, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(sec, 0) && !math.IsNaN(sec) {
		whole, frac := math.Modf(sec)
		return time.Unix(int64(whole), int64(frac*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("not a duration, Unix time or RFC 3339 date")
}
