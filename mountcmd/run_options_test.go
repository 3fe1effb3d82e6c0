package mountcmd

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/build"
)

// TestParseTmpfsAndMounts: docker's --tmpfs and --mount syntaxes, and what each
// refuses with the flag's value named.
func TestParseTmpfsAndMounts(t *testing.T) {
	dir := t.TempDir()
	tm, err := parseTmpfs([]string{"/a", "/b/:size=1m,ro,mode=700,exec,uid=1000"})
	if err != nil {
		t.Fatal(err)
	}
	def := []string{"nosuid", "nodev", "noexec"}
	want := []build.Bind{{Target: "/a", Tmpfs: true, Options: def},
		{Target: "/b", Tmpfs: true, ReadOnly: true, Size: 1 << 20, Mode: 0o700, Options: append(def, "exec", "uid=1000")}}
	if !reflect.DeepEqual(tm, want) {
		t.Errorf("parseTmpfs = %+v, want %+v", tm, want)
	}
	for i, wantFlags := range []uintptr{unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_RDONLY} {
		flags, data, err := build.TmpfsOptions(tm[i])
		if err != nil || flags != wantFlags {
			t.Errorf("TmpfsOptions(%s) = %#x %q %v, want flags %#x", tm[i].Target, flags, data, err, wantFlags)
		}
		if i == 1 && data != "size=1048576,mode=700,uid=1000" {
			t.Errorf("TmpfsOptions(/b) data = %q", data)
		}
	}
	ms, err := parseMounts([]string{
		"type=bind,source=" + dir + ",target=/in,readonly",
		"type=bind,src=" + dir + ",dst=/rw,ro=false",
		`"type=tmpfs","destination=/t","tmpfs-size=64k"`,
	})
	if err != nil {
		t.Fatal(err)
	}
	wantM := []build.Bind{{Source: dir, Target: "/in", ReadOnly: true}, {Source: dir, Target: "/rw"},
		{Target: "/t", Tmpfs: true, Size: 64 << 10, Options: []string{"nosuid", "nodev", "noexec"}}}
	if !reflect.DeepEqual(ms, wantM) {
		t.Errorf("parseMounts = %+v, want %+v", ms, wantM)
	}
	for _, bad := range []string{"rel", "/x:size=lots", "/x:mode=999", "/x:colour=red", "/x:uid=me"} {
		if _, err := parseTmpfs([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("parseTmpfs(%q) = %v", bad, err)
		}
	}
	for _, bad := range []string{
		"type=bind,source=" + filepath.Join(dir, "missing") + ",target=/x",
		"type=bind,target=/x",
		"type=volume,source=v,target=/x",
		"target=/x",
		"type=tmpfs,source=/s,target=/x",
		"type=tmpfs,target=rel",
		"type=bind,source=" + dir + ",target=/x,tmpfs-size=1m",
		"type=bind,source=" + dir + ",target=/x,readonly=maybe",
		"type=bind,source=" + dir + ",target=/x,colour=red",
	} {
		if _, err := parseMounts([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("parseMounts(%q) = %v", bad, err)
		}
	}
}

// TestRunOptionsCheck: --add-host's host-gateway is the loopback address (the
// host's network), bad values of run's other flags are refused.
func TestRunOptionsCheck(t *testing.T) {
	o := &runOptions{addHosts: []string{"gw:host-gateway", "a=1.2.3.4", "v6:::1"}}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []*runOptions{{init: true, privileged: true}, {init: true, capAdd: []string{"ALL"}}} {
		if err := ok.check(); err != nil {
			t.Errorf("check(%+v) = %v", *ok, err)
		}
	}
	if got := strings.Join(o.addHosts, " "); got != "gw:127.0.0.1 a=1.2.3.4 v6:::1" {
		t.Errorf("add-hosts after check = %q", got)
	}
	for _, bad := range []*runOptions{
		{network: "mynet"},
		{addHosts: []string{"nohost"}},
		{addHosts: []string{"h:notanip"}},
		{labels: []string{"=v"}},
		{stopSignal: "SIGNOPE"},
		{stopTimeout: optionalInt{v: -5, set: true}},
		{restart: "always"},
		{init: true, capAdd: []string{"ALL"}, capDrop: []string{"SYS_ADMIN"}},
		{ulimits: []string{"nofile=x"}},
		{shmSize: "lots"},
		{platform: "linux/s390x-nope"},
	} {
		if err := bad.check(); err == nil {
			t.Errorf("check(%+v) accepted", *bad)
		}
	}
	// --init with CAP_SYS_PTRACE: refused only where the init cannot cut its
	// capabilities to the container's (a cgo-linked binary, as this test's may be).
	ptrace := &runOptions{init: true, capAdd: []string{"SYS_PTRACE"}}
	if err := ptrace.check(); (err == nil) != build.CanCapAllThreads() {
		t.Errorf("check(--init --cap-add SYS_PTRACE) = %v with CanCapAllThreads %v", err, build.CanCapAllThreads())
	}
}

// TestSavedRunRoundTrip: every option run -d hands its monitor (and start
// replays) comes back as it went.
func TestSavedRunRoundTrip(t *testing.T) {
	o := &runOptions{interactive: true, tty: true, env: []string{"A=1"}, workdir: "/w", user: "u", volumes: []string{"/h:/c:ro"},
		entrypoint: "e", entrypointSet: true, hostname: "h", init: true, rm: true, network: "none", tmpfs: []string{"/t"}, devices: []string{"/dev/null:/dev/n:rw"},
		mounts: []string{"type=tmpfs,target=/m"}, addHosts: []string{"a:1.2.3.4"}, labels: []string{"k=v"},
		stopSignal: "USR1", stopTimeout: optionalInt{v: -1, set: true}, readOnly: true}
	sr := o.saved()
	back := sr.options("")
	if !reflect.DeepEqual(back, o) {
		t.Errorf("round trip:\n got %+v\nwant %+v", *back, *o)
	}
}
