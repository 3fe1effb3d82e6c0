package build

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func parentConfig() dockerspec.DockerOCIImageConfig {
	return dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{
		Env:        []string{"PATH=/usr/bin:/bin", "HOME=/root"},
		Cmd:        []string{"sh"},
		WorkingDir: "/srv",
		Labels:     map[string]string{"keep": "me"},
	}}
}

func TestApplyChanges(t *testing.T) {
	tests := []struct {
		name    string
		changes []string
		edit    func(c *dockerspec.DockerOCIImageConfig) // expected edit of parentConfig()
	}{
		{"none", nil, func(c *dockerspec.DockerOCIImageConfig) {}},
		{"cmd json (tutorial)", []string{`CMD ["/bin/httpd","-f","-h","/data/html"]`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Cmd = []string{"/bin/httpd", "-f", "-h", "/data/html"}
		}},
		{"cmd shell form", []string{`CMD echo "hi  there" $HOME`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Cmd = []string{"/bin/sh", "-c", `echo "hi  there" $HOME`}
		}},
		{"cmd lowercase keyword", []string{`cmd ["a"]`}, func(c *dockerspec.DockerOCIImageConfig) { c.Cmd = []string{"a"} }},
		{"cmd empty json", []string{`CMD []`}, func(c *dockerspec.DockerOCIImageConfig) { c.Cmd = []string{} }},
		{"entrypoint clears inherited cmd", []string{`ENTRYPOINT ["/app"]`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Entrypoint = []string{"/app"}
			c.Cmd = nil
		}},
		{"cmd then entrypoint keeps cmd", []string{`CMD ["--help"]`, `ENTRYPOINT /app -v`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Entrypoint = []string{"/bin/sh", "-c", "/app -v"}
			c.Cmd = []string{"--help"}
		}},
		{"entrypoint empty", []string{`ENTRYPOINT []`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Entrypoint = []string{}
			c.Cmd = nil
		}},
		{"env forms and expansion", []string{`ENV A=1 B="two words"`, `ENV C $A-${B}`, `ENV PATH=/opt/bin:$PATH`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Env = []string{"PATH=/opt/bin:/usr/bin:/bin", "HOME=/root", "A=1", "B=two words", "C=1-two words"}
		}},
		{"values joined with newlines, as docker does", []string{`ENV A=1 \`, `B=2`, "LABEL x=1\nLABEL y=2"}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Env = append(c.Env, "A=1", "B=2")
			c.Labels["x"], c.Labels["y"] = "1", "2"
		}},
		{"env in one instruction sees old values", []string{`ENV HOME=/x OLD=$HOME`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Env = []string{"PATH=/usr/bin:/bin", "HOME=/x", "OLD=/root"}
		}},
		{"label", []string{`LABEL a=b "c d"="e f"`, `LABEL keep=changed home=$HOME`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Labels = map[string]string{"keep": "changed", "a": "b", "c d": "e f", "home": "/root"}
		}},
		{"expose", []string{`EXPOSE 80 53/udp`, `EXPOSE 8000-8002/TCP 9/sctp`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.ExposedPorts = map[string]struct{}{"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}, "9/sctp": {}}
		}},
		{"expose a variable of several ports", []string{`ENV PORTS="80 443/udp"`, `EXPOSE $PORTS 8080`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Env = append(c.Env, "PORTS=80 443/udp")
			c.ExposedPorts = map[string]struct{}{"80/tcp": {}, "443/udp": {}, "8080/tcp": {}}
		}},
		{"user", []string{`USER nobody:nogroup`}, func(c *dockerspec.DockerOCIImageConfig) { c.User = "nobody:nogroup" }},
		{"volume json and shell", []string{`VOLUME ["/data", "/logs"]`, `VOLUME /a /b`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Volumes = map[string]struct{}{"/data": {}, "/logs": {}, "/a": {}, "/b": {}}
		}},
		{"workdir relative and absolute", []string{`WORKDIR app`, `WORKDIR ../lib/./x`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.WorkingDir = "/srv/lib/x"
		}},
		{"workdir absolute with var", []string{`WORKDIR $HOME//sub/`}, func(c *dockerspec.DockerOCIImageConfig) { c.WorkingDir = "/root/sub" }},
		{"stopsignal", []string{`STOPSIGNAL SIGQUIT`}, func(c *dockerspec.DockerOCIImageConfig) { c.StopSignal = "SIGQUIT" }},
		{"stopsignal number and short", []string{`STOPSIGNAL 9`, `STOPSIGNAL term`}, func(c *dockerspec.DockerOCIImageConfig) { c.StopSignal = "term" }},
		{"stopsignal rtmin", []string{`STOPSIGNAL SIGRTMIN+3`}, func(c *dockerspec.DockerOCIImageConfig) { c.StopSignal = "SIGRTMIN+3" }},
		{"onbuild", []string{`ONBUILD RUN echo $HOME`, `onbuild COPY . /app`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.OnBuild = []string{"RUN echo $HOME", "COPY . /app"}
		}},
		{"healthcheck", []string{`HEALTHCHECK --interval=5s --retries=2 CMD curl -f http://localhost/`}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD-SHELL", "curl -f http://localhost/"}, Interval: 5 * time.Second, Retries: 2}
		}},
		{"several instructions in one value", []string{"ENV X=1\nUSER 1000"}, func(c *dockerspec.DockerOCIImageConfig) {
			c.Env = append(c.Env, "X=1")
			c.User = "1000"
		}},
		{"line continuation", []string{"CMD [\"a\", \\\n \"b\"]"}, func(c *dockerspec.DockerOCIImageConfig) { c.Cmd = []string{"a", "b"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parentConfig()
			want := parentConfig()
			tt.edit(&want)
			if err := ApplyChanges(&got, tt.changes); err != nil {
				t.Fatalf("ApplyChanges(%q) = %v", tt.changes, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ApplyChanges(%q):\n got %+v\nwant %+v", tt.changes, got, want)
			}
		})
	}
}

func TestApplyChangesShellFromConfig(t *testing.T) {
	c := parentConfig()
	c.Shell = []string{"/bin/bash", "-eu", "-c"}
	if err := ApplyChanges(&c, []string{"CMD make all"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/bash", "-eu", "-c", "make all"}; !reflect.DeepEqual(c.Cmd, want) {
		t.Errorf("Cmd = %q, want %q", c.Cmd, want)
	}
}

func TestApplyChangesErrors(t *testing.T) {
	bad := [][]string{
		{`RUN echo hi`},
		{`FROM busybox`},
		{`COPY a b`},
		{`ADD a b`},
		{`ARG X`},
		{`SHELL ["/bin/bash", "-c"]`},
		{`MAINTAINER me`},
		{`BOGUS x`},
		{`USER`},
		{`WORKDIR`},
		{`EXPOSE`},
		{`EXPOSE 80/xyz`},
		{`EXPOSE 70000`},
		{`EXPOSE 90-80`},
		{`EXPOSE abc`},
		{`STOPSIGNAL SIGBOGUS`},
		{`STOPSIGNAL 0`},
		{`STOPSIGNAL`},
		{`ENV`},
		{`LABEL`},
		{`VOLUME ""`},
		{`ONBUILD ONBUILD RUN x`},
		{`ONBUILD FROM x`},
		{`HEALTHCHECK FOO`},
		{`HEALTHCHECK --interval=nope CMD x`},
		{`CMD ["ok"]`, `RUN x`}, // a later bad change leaves cfg untouched
	}
	for _, changes := range bad {
		c := parentConfig()
		err := ApplyChanges(&c, changes)
		if !errors.Is(err, ErrInvalidChange) {
			t.Errorf("ApplyChanges(%q) = %v, want ErrInvalidChange", changes, err)
			continue
		}
		if !reflect.DeepEqual(c, parentConfig()) {
			t.Errorf("ApplyChanges(%q) changed the config on error: %+v", changes, c)
		}
	}
}

func TestApplyChangesErrorMessage(t *testing.T) {
	c := parentConfig()
	err := ApplyChanges(&c, []string{"RUN echo"})
	if got, want := err.Error(), `invalid change "RUN echo": RUN is not a valid change command`; got != want {
		t.Errorf("ApplyChanges(RUN) = %q, want %q", got, want)
	}
	// The values are parsed joined; a blank one is not blamed for another's error.
	err = ApplyChanges(&c, []string{"", "# note", "ENV A"})
	if err == nil || !strings.Contains(err.Error(), `"ENV A"`) {
		t.Errorf("ApplyChanges(\"\", \"# note\", \"ENV A\") = %v, want the error to name \"ENV A\"", err)
	}
}

func TestApplyChangesDoesNotAlias(t *testing.T) {
	parent := parentConfig()
	child := CopyConfig(parent)
	if err := ApplyChanges(&child, []string{"ENV HOME=/changed", "LABEL keep=no"}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parent, parentConfig()) {
		t.Errorf("parent changed through the child: %+v", parent)
	}
}

func TestApplyChangesOCI(t *testing.T) {
	c := ocispec.ImageConfig{Cmd: []string{"sh"}}
	if err := ApplyChangesOCI(&c, []string{`CMD ["x"]`, "USER 1"}); err != nil {
		t.Fatal(err)
	}
	if c.User != "1" || !reflect.DeepEqual(c.Cmd, []string{"x"}) {
		t.Errorf("ApplyChangesOCI = %+v", c)
	}
	if err := ApplyChangesOCI(&c, []string{"ONBUILD RUN x"}); !errors.Is(err, ErrInvalidChange) {
		t.Errorf("ApplyChangesOCI(ONBUILD) = %v, want ErrInvalidChange", err)
	}
}

func TestConfigEditorRefusesBuildSteps(t *testing.T) {
	res, err := parser.Parse(strings.NewReader("RUN echo $V\nUSER $V"))
	if err != nil {
		t.Fatal(err)
	}
	c := parentConfig()
	ed := &ConfigEditor{Config: &c, BuildArgs: []string{"V=arg"}}
	run, err := instructions.ParseCommand(res.AST.Children[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := ed.Dispatch(run); !errors.Is(err, ErrNotConfigInstruction) {
		t.Errorf("Dispatch(RUN) = %v, want ErrNotConfigInstruction", err)
	}
	user, err := instructions.ParseCommand(res.AST.Children[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := ed.Dispatch(user); err != nil {
		t.Fatal(err)
	}
	if c.User != "arg" {
		t.Errorf("User = %q, want the build arg's value", c.User)
	}
}
