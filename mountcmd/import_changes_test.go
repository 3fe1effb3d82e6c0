package mountcmd

import (
	"reflect"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestApplyChanges(t *testing.T) {
	var cfg ocispec.ImageConfig
	err := applyChanges(&cfg, []string{
		`CMD ["/bin/httpd","-f","-h","/data/html"]`,
		`ENTRYPOINT /docker-entrypoint.sh`,
		`ENV A=1 B="two words"`,
		`ENV LEGACY some value`,
		`ENV A=3`,
		`LABEL maintainer="NGINX Docker Maintainers <docker-maint@nginx.com>"`,
		`EXPOSE 80 53/udp`,
		`VOLUME ["/data"]`,
		`USER nobody`,
		`WORKDIR /srv`,
		`STOPSIGNAL SIGQUIT`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := ocispec.ImageConfig{
		Cmd:          []string{"/bin/httpd", "-f", "-h", "/data/html"},
		Entrypoint:   []string{"/bin/sh", "-c", "/docker-entrypoint.sh"},
		Env:          []string{"A=3", "B=two words", "LEGACY=some value"},
		Labels:       map[string]string{"maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		Volumes:      map[string]struct{}{"/data": {}},
		User:         "nobody", WorkingDir: "/srv", StopSignal: "SIGQUIT",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("applyChanges =\n%+v\nwant\n%+v", cfg, want)
	}
	for _, bad := range []string{"RUN echo hi", `LABEL "unterminated`, "LABEL novalue"} {
		if err := applyChanges(&ocispec.ImageConfig{}, []string{bad}); err == nil {
			t.Errorf("applyChanges(%q) = nil, want an error", bad)
		}
	}
}

func TestCreatedSinceAndSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1220000: "1.22MB", 16000000: "16MB", 142560184: "143MB", 7800: "7.8kB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
	if got := createdSince(nowUTC().Add(-3 * 3600e9)); got != "3 hours ago" {
		t.Errorf("createdSince(3h) = %q", got)
	}
}
