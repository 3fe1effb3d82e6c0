package integration

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBashCompletionNames: with bash-completion and `source <(layerfs
// completion bash)`, TAB after a verb offers the store's names, as docker's
// does: rmi the images by repo:tag, run --network its modes, and stop nothing
// when no container runs. The script's completion function is called as
// readline would, with the line typed so far.
func TestBashCompletionNames(t *testing.T) {
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bash-completion is not installed in CI; hack/test.sh must install it")
		}
		t.Skip("bash-completion is not installed")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("x"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mustRun(t, "import", "-q", tarPath, "busybox")
	mustRun(t, "tag", "busybox", "my/app:v1")

	script := `source ` + bashCompletion + `
source <(layerfs completion bash)
comp() {
	COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
	read -ra COMP_WORDS <<<"$COMP_LINE"
	[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]}-1))
	COMPREPLY=()
	__start_layerfs layerfs "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
	echo "$1|${COMPREPLY[*]}"
}
comp "layerfs rmi "
comp "layerfs image rm my"
comp "layerfs run --network "
comp "layerfs stop we"
`
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(layerfsBin)+":"+os.Getenv("PATH"), "LAYERFS_ROOT="+rootFor(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	want := []string{
		"layerfs rmi |busybox:latest my/app:v1",
		"layerfs image rm my|my/app:v1",
		"layerfs run --network |host none",
		"layerfs stop we|",
	}
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("bash completion:\n got %q\nwant %q", got, want)
	}
}
