package mountcmd

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procDying tells a killed process that has not ended (a zombie main thread,
// or SIGKILL pending) from one that runs: umount aborts the former's FUSE
// connection (abortIfDying), never the latter's.
func TestProcDying(t *testing.T) {
	run := exec.Command("sleep", "30")
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Process.Kill(); run.Wait() })
	if procDying(run.Process.Pid) {
		t.Errorf("a running sleep is dying")
	}
	if procDying(1 << 30) {
		t.Errorf("a missing pid is dying")
	}
	done := exec.Command("true")
	if err := done.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { done.Wait() })
	status := "/proc/" + strconv.Itoa(done.Process.Pid) + "/status"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(status); strings.Contains(string(b), "State:\tZ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("true did not become a zombie")
		}
	}
	if !procDying(done.Process.Pid) {
		t.Errorf("a zombie is not dying")
	}
}
