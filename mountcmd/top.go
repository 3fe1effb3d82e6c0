package mountcmd

// top: docker top, the processes of a running container. As docker does, it
// runs the host's ps (ARGS, default -ef) and keeps the rows of the processes
// in the container's pid namespace.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func init() { addVerb(newTopCommand) }

func newTopCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Long: `Show the processes of a container that runs (run, run -d), as docker top does:
the host's ps with the given options (default -ef), its rows of the container's
processes only. PIDs are the host's.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := findContainer(g.root, args[0])
			if err != nil {
				return errors.New(userError(err))
			}
			rs := loadRunState(w)
			if !rs.alive() {
				return fmt.Errorf("container %s is not running", w.name)
			}
			pids, err := pidsInNamespace(rs.Pid)
			if err != nil {
				return err
			}
			psArgs := args[1:]
			if len(psArgs) == 0 {
				psArgs = []string{"-ef"}
			}
			out, err := exec.Command("ps", psArgs...).Output()
			if err != nil {
				return fmt.Errorf("ps %s: %w", strings.Join(psArgs, " "), err)
			}
			rows, err := filterPsRows(out, pids)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(rows)
			return err
		},
	}
	cmd.Flags().SetInterspersed(false) // ps's options follow the container
	return cmd
}

// pidsInNamespace lists the host pids of the processes in pid1's pid namespace.
func pidsInNamespace(pid1 int) (map[int]bool, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid1))
	if err != nil {
		return nil, fmt.Errorf("container's pid namespace: %w", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	pids := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && l == ns {
			pids[pid] = true
		}
	}
	return pids, nil
}

// filterPsRows keeps ps's header and the rows whose PID column is in pids.
func filterPsRows(out []byte, pids map[int]bool) ([]byte, error) {
	lines := bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n"))
	if len(lines) == 0 {
		return nil, errors.New("ps printed nothing")
	}
	col := -1
	for i, f := range strings.Fields(string(lines[0])) {
		if f == "PID" {
			col = i
		}
	}
	if col < 0 {
		return nil, errors.New("ps's output has no PID column (give ps options that show it)")
	}
	var b bytes.Buffer
	b.Write(lines[0])
	b.WriteByte('\n')
	for _, l := range lines[1:] {
		f := strings.Fields(string(l))
		if len(f) <= col {
			continue
		}
		if pid, err := strconv.Atoi(f[col]); err == nil && pids[pid] {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}
