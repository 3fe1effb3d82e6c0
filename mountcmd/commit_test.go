package mountcmd

import (
	"errors"
	"testing"
	"time"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/build"
)

func TestCommitPlan(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	o := &commitOptions{compression: "zstd", changes: []string{`CMD ["x"]`}, sourceDateEpoch: "1700000000"}
	p, err := o.plan([]string{"c1", "Team/App:1"})
	if err == nil {
		t.Fatalf("plan with an upper-case repository = %+v, want an error", p)
	}
	p, err = o.plan([]string{"c1", "team/app:1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.comp != blobstore.Zstd || p.ref != "docker.io/team/app:1" {
		t.Errorf("plan = %+v", p)
	}
	if want := time.Unix(1700000000, 0).UTC(); p.epoch == nil || !p.epoch.Equal(want) || !p.created.Equal(want) {
		t.Errorf("epoch, created = %v, %v; want %v", p.epoch, p.created, want)
	}

	for _, bad := range []commitOptions{
		{compression: "lz4"},
		{compression: "gzip", changes: []string{"RUN true"}},
		{compression: "gzip", sourceDateEpoch: "yesterday"},
		{compression: "gzip", sourceDateEpoch: "-1"},
	} {
		if _, err := bad.plan([]string{"c1"}); err == nil {
			t.Errorf("plan(%+v) = nil error", bad)
		}
	}
	bad := commitOptions{compression: "gzip", changes: []string{"FROM x"}}
	if _, err := bad.plan([]string{"c1"}); !errors.Is(err, build.ErrInvalidChange) {
		t.Errorf("plan(FROM) = %v, want ErrInvalidChange", err)
	}

	t.Setenv("SOURCE_DATE_EPOCH", "86400")
	p, err = (&commitOptions{compression: "none"}).plan([]string{"c1"})
	if err != nil || p.epoch == nil || p.epoch.Unix() != 86400 || p.ref != "" {
		t.Errorf("plan with $SOURCE_DATE_EPOCH = %+v, %v", p, err)
	}
}
