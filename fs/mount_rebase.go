package fs

import (
	"fmt"
	"os"
)

// RebasePaused is Rebase for a caller that holds the write barrier (between Pause
// and Resume), as commit --rebase does: pause, read the upper dir, store the layer,
// swap the stack, resume. Writers held by the pause then land in the new upper.
// (Calling Rebase there would deadlock, and resuming first would let the held
// writes into the old upper that commit is about to discard.)
//
// Added by the mount helper as an additive file; the fs owner may fold it into
// mount.go as Rebase = barrier.Lock + RebasePaused + barrier.Unlock.
func (m *MountPoint) RebasePaused(lowers []string, upper string) error {
	old := m.fs.stack.Load()
	work := ""
	if old.work >= 0 {
		work = fmt.Sprintf("/proc/self/fd/%d", old.work)
		if p, err := os.Readlink(work); err == nil {
			work = p
		}
	}
	s, err := openStack(lowers, upper, work, old.format)
	if err != nil {
		return fmt.Errorf("rebase: %w", err)
	}
	m.fs.stack.Store(s)
	m.fs.epoch.Add(1)
	m.fs.changes.Add(1)
	m.fs.taintOpen(m.fs.root.EmbeddedInode())
	go m.fs.invalidate(m.fs.root.EmbeddedInode())
	m.fs.retired = append(m.fs.retired, old)
	return nil
}
