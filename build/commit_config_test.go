package build

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func parentImage(layers int) dockerspec.DockerOCIImage {
	t0 := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	img := dockerspec.DockerOCIImage{Config: parentConfig()}
	img.Created = &t0
	img.Architecture, img.OS = "amd64", "linux"
	img.RootFS.Type = "layers"
	for i := 0; i < layers; i++ {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, digest.FromString(strings.Repeat("x", i+1)))
		img.History = append(img.History, ocispec.History{Created: &t0, CreatedBy: "ADD file"})
	}
	return img
}

func TestChildImage(t *testing.T) {
	parent := parentImage(2)
	when := time.Date(2026, 11, 22, 19, 0, 0, 0, time.UTC)
	d := digest.FromString("layer")
	img, err := ChildImage(parent, d, CommitOptions{
		Author:  "Chenwj<cwj@cwj.com>",
		Comment: "add page",
		Created: when,
		Changes: []string{`CMD ["/bin/httpd","-f","-h","/data/html"]`},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := img.RootFS.DiffIDs; len(got) != 3 || got[2] != d {
		t.Errorf("DiffIDs = %v, want the parent's + %s", got, d)
	}
	if len(img.History) != 3 {
		t.Fatalf("History has %d entries, want 3", len(img.History))
	}
	h := img.History[2]
	want := ocispec.History{Created: &when, CreatedBy: "sh", Author: "Chenwj<cwj@cwj.com>", Comment: "add page"}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("history entry = %+v, want %+v", h, want)
	}
	if img.Author != "Chenwj<cwj@cwj.com>" || !img.Created.Equal(when) {
		t.Errorf("Author, Created = %q, %v", img.Author, img.Created)
	}
	if !reflect.DeepEqual(img.Config.Cmd, []string{"/bin/httpd", "-f", "-h", "/data/html"}) {
		t.Errorf("Cmd = %q", img.Config.Cmd)
	}
	if !reflect.DeepEqual(parent, parentImage(2)) {
		t.Errorf("parent modified: %+v", parent)
	}
	// The docker extension fields reach the JSON under "config".
	img, err = ChildImage(parent, d, CommitOptions{Changes: []string{"ONBUILD RUN true"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(img)
	var raw struct {
		Config struct{ OnBuild []string } `json:"config"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || len(raw.Config.OnBuild) != 1 {
		t.Errorf("config JSON %s lacks OnBuild (%v)", b, err)
	}
}

func TestChildImageEmptyLayer(t *testing.T) {
	img, err := ChildImage(parentImage(1), "", CommitOptions{CreatedBy: "/bin/sh -c make"})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.RootFS.DiffIDs) != 1 {
		t.Errorf("DiffIDs = %v, want the parent's only", img.RootFS.DiffIDs)
	}
	last := img.History[len(img.History)-1]
	if !last.EmptyLayer || last.CreatedBy != "/bin/sh -c make" {
		t.Errorf("history entry = %+v, want empty_layer with created_by", last)
	}
}

func TestChildImageDepth(t *testing.T) {
	if _, err := ChildImage(parentImage(MaxLayers-1), digest.FromString("a"), CommitOptions{}); err != nil {
		t.Errorf("ChildImage to %d layers = %v", MaxLayers, err)
	}
	if _, err := ChildImage(parentImage(MaxLayers), digest.FromString("a"), CommitOptions{}); !errors.Is(err, ErrTooManyLayers) {
		t.Errorf("ChildImage past %d layers = %v, want ErrTooManyLayers", MaxLayers, err)
	}
	if _, err := ChildImage(parentImage(MaxLayers), "", CommitOptions{}); err != nil {
		t.Errorf("empty-layer commit on a %d-layer image = %v", MaxLayers, err)
	}
	for n, warn := range map[int]bool{99: false, 100: true, 127: true, 128: false} {
		if got := DepthWarning(n) != ""; got != warn {
			t.Errorf("DepthWarning(%d) = %q", n, DepthWarning(n))
		}
	}
}

func TestSquashImage(t *testing.T) {
	parent := parentImage(MaxLayers)
	d := digest.FromString("flat")
	img, err := SquashImage(parent, d, CommitOptions{Changes: []string{"USER 1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(img.RootFS.DiffIDs, []digest.Digest{d}) {
		t.Errorf("DiffIDs = %v, want [%s]", img.RootFS.DiffIDs, d)
	}
	nonEmpty := 0
	for _, h := range img.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != 1 || img.History[len(img.History)-1].EmptyLayer {
		t.Errorf("history has %d non-empty entries, want only the last", nonEmpty)
	}
	if img.Config.User != "1" {
		t.Errorf("User = %q", img.Config.User)
	}
	if parent.History[0].EmptyLayer {
		t.Errorf("parent history modified")
	}
}

// TestChildImageDockerMerge: docker commit merges the changed config with the
// container's (moby daemon/commit.go merge), which refills an empty CMD and a
// healthcheck's unset options.
func TestChildImageDockerMerge(t *testing.T) {
	parent := parentImage(1)
	parent.Config.Entrypoint = []string{"/entry"}
	parent.Config.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD", "old"}, Interval: time.Minute, Retries: 7}
	tests := []struct {
		change string
		check  func(c dockerspec.DockerOCIImageConfig) bool
	}{
		{`ENTRYPOINT []`, func(c dockerspec.DockerOCIImageConfig) bool {
			return c.Entrypoint != nil && len(c.Entrypoint) == 0 && reflect.DeepEqual(c.Cmd, []string{"sh"})
		}},
		{`ENTRYPOINT ["/app"]`, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Entrypoint, []string{"/app"}) && c.Cmd == nil
		}},
		{`CMD []`, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Entrypoint, []string{"/entry"}) && len(c.Cmd) == 0
		}},
		{`HEALTHCHECK --timeout=3s CMD ["new"]`, func(c dockerspec.DockerOCIImageConfig) bool {
			h := c.Healthcheck
			return reflect.DeepEqual(h.Test, []string{"CMD", "new"}) && h.Interval == time.Minute && h.Timeout == 3*time.Second && h.Retries == 7
		}},
	}
	for _, tt := range tests {
		img, err := ChildImage(parent, "", CommitOptions{Changes: []string{tt.change}})
		if err != nil {
			t.Fatalf("%s: %v", tt.change, err)
		}
		if !tt.check(img.Config) {
			t.Errorf("-c %q: Entrypoint %q, Cmd %q, Healthcheck %+v", tt.change, img.Config.Entrypoint, img.Config.Cmd, img.Config.Healthcheck)
		}
	}
	// With no entrypoint, CMD [] is refilled from the container's config, as in docker.
	plain := parentImage(1)
	img, err := SquashImage(plain, digest.FromString("l"), CommitOptions{Changes: []string{`CMD []`}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(img.Config.Cmd, []string{"sh"}) {
		t.Errorf("-c 'CMD []' without entrypoint: Cmd %q, want the container's [sh]", img.Config.Cmd)
	}
}

// TestChildImageMergeKeepsUser: a USER change that expands to nothing keeps the
// container's user after docker's merge, as docker commit does; it does not make an
// image that runs as root.
func TestChildImageMergeKeepsUser(t *testing.T) {
	parent := parentImage(1)
	parent.Config.User = "app"
	for _, change := range []string{`USER ""`, `USER $UNSET`} {
		img, err := ChildImage(parent, "", CommitOptions{Changes: []string{change}})
		if err != nil {
			t.Fatalf("ChildImage(-c %q): %v", change, err)
		}
		if img.Config.User != "app" {
			t.Errorf("ChildImage(-c %q).Config.User = %q, want the container's %q", change, img.Config.User, "app")
		}
	}
	img, err := ChildImage(parent, "", CommitOptions{Changes: []string{`USER 1000`}})
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.User != "1000" {
		t.Errorf("ChildImage(-c 'USER 1000').Config.User = %q, want 1000", img.Config.User)
	}
}
