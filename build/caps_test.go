package build

import (
	"strings"
	"testing"
)

// TestRunCaps: docker run's --privileged, --cap-drop and --cap-add over the
// default set (docker's), in docker's order and spellings.
func TestRunCaps(t *testing.T) {
	def, err := RunCaps(false, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(def) != 14 || !strings.Contains(strings.Join(def, " "), "CAP_MKNOD") {
		t.Errorf("default run caps = %v", def)
	}
	for _, tc := range []struct {
		priv      bool
		add, drop []string
		want      string
	}{
		{true, nil, []string{"ALL"}, "ALL"},
		{false, []string{"net_bind_service"}, []string{"all"}, "CAP_NET_BIND_SERVICE"},
		{false, []string{"ALL"}, nil, "ALL"},
		{false, []string{"ALL"}, []string{"ALL"}, "ALL"},
		{false, []string{"CAP_MKNOD"}, []string{"ALL"}, "CAP_MKNOD"},
		{false, nil, []string{"ALL"}, ""},
		{false, []string{"SYS_ADMIN"}, []string{"CHOWN", "KILL", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "NET_RAW", "SYS_CHROOT", "SETFCAP"},
			"CAP_AUDIT_WRITE CAP_MKNOD CAP_SYS_ADMIN"},
	} {
		got, err := RunCaps(tc.priv, tc.add, tc.drop)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("RunCaps(%v, %v, %v) = %v, want %s", tc.priv, tc.add, tc.drop, got, tc.want)
		}
	}
	if _, err := RunCaps(false, []string{"CAP_NOPE"}, nil); err == nil {
		t.Errorf("an unknown capability was accepted")
	}
	for name, n := range capNames {
		if n < 0 || n > 63 || name != strings.ToUpper(name) {
			t.Errorf("capNames[%s] = %d", name, n)
		}
	}
}

// TestRunCapsAddAllMinusDrops: --cap-add ALL --cap-drop X is every capability
// but X, as docker's.
func TestRunCapsAddAllMinusDrops(t *testing.T) {
	got, err := RunCaps(false, []string{"ALL"}, []string{"SYS_ADMIN", "sys_module"})
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Join(got, " ")
	if len(got) != len(capNames)-2 || strings.Contains(s, "SYS_ADMIN") || strings.Contains(s, "SYS_MODULE") || !strings.Contains(s, "CAP_NET_ADMIN") {
		t.Errorf("--cap-add ALL --cap-drop SYS_ADMIN,SYS_MODULE = %v", got)
	}
}
