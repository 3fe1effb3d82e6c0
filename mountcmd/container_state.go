package mountcmd

// What a container did last, for inspect, wait and ps: its ID (docker's 64 hex
// digits, fixed at create) and the exit of the last command run ran in it
// (work/<name>/exit.json, written by the monitor once the command is gone and
// before run.json goes, so whoever sees run.json gone finds the exit there).

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// containerID is the container's ID: the one create gave it, or for a container
// made before IDs were kept, one derived from its name and creation time (stable,
// as an ID must be).
func containerID(st *workState) string {
	if st.ID != "" {
		return st.ID
	}
	h := sha256.Sum256([]byte(st.Name + "\x00" + st.Created.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h[:])
}

// exitRecord is exit.json: how the last command run ran in the container ended.
type exitRecord struct {
	ExitCode int       `json:"exitCode"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Error is why the command could not run or be waited for ("" if it ran).
	Error string `json:"error,omitempty"`
	// NeverStarted: the command could not start, in this run and every one
	// before (docker's state stays created).
	NeverStarted bool `json:"neverStarted,omitempty"`
}

func exitRecordPath(w *workContainer) string { return filepath.Join(w.Dir(), "exit.json") }

// saveExit records how a run ended; best effort (the run's own exit status is
// what its caller gets either way).
func saveExit(w *workContainer, rec exitRecord) {
	if b, err := json.Marshal(rec); err == nil {
		writeFileAtomic(exitRecordPath(w), b, 0o600)
	}
}

// loadExit reads exit.json; nil if the container never finished a run.
func loadExit(w *workContainer) *exitRecord {
	return readJSONFile[exitRecord](exitRecordPath(w))
}

// readJSONFile reads a JSON file into a new T; nil if it is missing or bad.
func readJSONFile[T any](path string) *T {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	v := new(T)
	if json.Unmarshal(b, v) != nil {
		return nil
	}
	return v
}

// loadRunState reads run.json whether or not its pid still lives; nil if there is
// none (runningContainer is the check that the command runs).
func loadRunState(w *workContainer) *runState {
	return readJSONFile[runState](runStatePath(w))
}

// alive reports whether rs's pid 1 is still the process run started, and not
// a zombie (one a killed run left is reaped a moment later: rm took it for a
// running container).
func (rs *runState) alive() bool {
	if rs == nil || rs.Pid <= 0 {
		return false
	}
	state, start := procStat(rs.Pid)
	return start == rs.StartTime && state != 'Z' && state != 'X'
}

// errNotRunning is a container whose command does not run (kill, wait).
var errNotRunning = errors.New("is not running")

// ranBefore reports whether run ever ran w: an exit recorded, or the etc files
// a run makes (a container that ran before exits were kept has those only).
func ranBefore(w *workContainer) bool {
	if rec := loadExit(w); rec != nil {
		return !rec.NeverStarted
	}
	_, err := os.Stat(filepath.Join(w.Dir(), "etc"))
	return err == nil
}
