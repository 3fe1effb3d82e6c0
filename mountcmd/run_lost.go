package mountcmd

// Runs whose exit was never recorded. A run (or run -d's monitor) killed
// with SIGKILL takes its command with it (the runtime's PDEATHSIG is
// SIGKILL) but leaves no exit.json, only a run.json whose processes are
// gone; a container that ran under a version before exit.json (e66fbc5,
// 339c05e) has neither. Neither is a clean "exited 0": the first is exited
// with 137 (docker's code for a command killed by SIGKILL), recorded by the
// next ps, inspect, wait or start that sees it, which also removes a --rm
// container, as docker's daemon would have once the command ended; the
// second has no known code (-1, with State.Error saying so).

import (
	"os"
	"time"
)

// lostRunError is State.Error of a run whose monitor was killed.
const lostRunError = "the run was killed before it recorded its exit status: its command was killed with it (SIGKILL)"

// unknownExitError is State.Error of a container that ran before exits were kept.
const unknownExitError = "no exit status recorded: the container ran before layerfs kept them"

// unknownExitCode is the ExitCode shown when none is known (never a
// command's: exit statuses are 0-255), so that no exited=N filter takes it.
const unknownExitCode = -1

// monitorGone reports whether the process that ran rs (run, or run -d's
// monitor) is gone. A run.json of an older version does not name it: then
// its mount server, which ends with it (and is up until the monitor has
// recorded the exit).
func (rs *runState) monitorGone(w *workContainer) bool {
	if rs.Monitor > 0 {
		state, start := procStat(rs.Monitor)
		return start != rs.MonitorStart || state == 'Z' || state == 'X'
	}
	return !w.serverAlive()
}

// lostRun is the exit of rs's run if its monitor died without recording it
// (rec is exit.json): nil if the command runs, the monitor still lives, or
// the exit is recorded.
func lostRun(w *workContainer, rs *runState, rec *exitRecord) *exitRecord {
	if rs == nil || !rs.monitorGone(w) {
		return nil
	}
	// With its monitor gone, the command dies too (PDEATHSIG); one of a
	// run.json that names no monitor may live on.
	if rs.alive() && (rs.Monitor <= 0 || !rs.dies(dyingWait)) {
		return nil
	}
	if rec != nil && !rec.Started.Before(rs.Started) {
		return nil // recorded; run.json goes next
	}
	// Finished when seen, as docker's daemon stamps the containers it finds
	// dead when it starts again; settling keeps the first stamp.
	return &exitRecord{ExitCode: 137, Started: rs.Started, Finished: time.Now().UTC(), Error: lostRunError}
}

// dyingWait bounds how long lostRun waits for the command of a run whose
// monitor is gone: the kernel kills it (PDEATHSIG), but on a loaded machine
// it may still be there a moment after its monitor and mount server, and a
// command that wants its name then met it running (a Conflict for a run
// --rm killed with its monitor).
const dyingWait = 3 * time.Second

// dies reports whether rs's command is gone within d.
func (rs *runState) dies(d time.Duration) bool {
	for deadline := time.Now().Add(d); rs.alive(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// noExitRecorded reports whether w ran (its etc files are there) before
// exit.json was kept: no exit.json and no run.json.
func noExitRecorded(w *workContainer, rs *runState, rec *exitRecord) bool {
	return rec == nil && rs == nil && ranBefore(w)
}

// settleLostRun records the exit of w's run whose monitor died (lostRun),
// drops its run.json and removes the container if run had --rm (unless a
// restart is under way). Under the container's lock, and skipped while
// another command holds it; only for an unmounted container (a start mounts
// it before it writes its own run.json). It returns the exit it recorded
// (nil if none: the one who reads it, as wait, needs it when the container
// is gone with its exit.json) and whether w was removed.
func settleLostRun(w *workContainer) (rec *exitRecord, removed bool) {
	if lostRun(w, loadRunState(w), loadExit(w)) == nil {
		return nil, false
	}
	unlock, ok, err := tryLockContainer(w)
	if err != nil || !ok {
		return nil, false
	}
	defer unlock()
	st, err := w.load()
	if err != nil || w.status(st) != statusUnmounted {
		return nil, false
	}
	rec = lostRun(w, loadRunState(w), loadExit(w))
	if rec == nil {
		return nil, false
	}
	saveExit(w, *rec)
	os.Remove(runStatePath(w))
	if sr := loadSavedRun(w); sr != nil && sr.Rm {
		if _, err := os.Stat(restartingPath(w)); err == nil {
			return rec, false
		}
		return rec, w.remove() == nil
	}
	return rec, false
}

// nameTaken reports whether w's name is taken: w is there and is neither a
// run --rm killed with its monitor (settled now, which removes it, as
// docker's daemon would have once its command died) nor what a create killed
// early left (removeIfAbandoned).
func (w *workContainer) nameTaken() bool {
	for deadline := time.Now().Add(settleWait); ; time.Sleep(20 * time.Millisecond) {
		if !w.exists() {
			return false
		}
		if _, removed := settleLostRun(w); removed {
			return false
		}
		// Another command (a wait, a ps) may be settling it right now, and
		// hold its lock: the retried run of a CI job killed with its
		// monitor got Conflict for a container gone a moment later.
		if time.Now().After(deadline) || !w.deadRmLocked() {
			// The one that held the lock may have removed it meanwhile
			// (state.json goes first, its saved run after).
			if !w.exists() {
				return false
			}
			break
		}
	}
	return !w.removeIfAbandoned()
}

// settleWait bounds how long nameTaken waits for another command to finish
// removing a dead run --rm container.
const settleWait = 5 * time.Second

// deadRmLocked reports whether w is a run --rm container whose command is not
// running while another command holds its lock: one that will be gone once
// that command has settled it.
func (w *workContainer) deadRmLocked() bool {
	sr := loadSavedRun(w)
	if sr == nil || !sr.Rm {
		return false
	}
	// A command whose monitor is gone is dying (PDEATHSIG), not running.
	if rs := loadRunState(w); rs.alive() && (rs.Monitor <= 0 || !rs.monitorGone(w)) {
		return false
	}
	unlock, ok, err := tryLockContainer(w)
	if err != nil {
		return false
	}
	if ok {
		unlock()
		return false
	}
	return true
}
