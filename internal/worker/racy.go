package worker

import (
	"sync"
	"time"

	"github.com/georep/georep/internal/fileid"
	"golang.org/x/sys/unix"
)

// Racy files. write(2) updates a file's mtime and ctime before it copies
// its data, so a sync that reads the file while such a write is still in
// flight sends old content under the new mtime, and a later size+mtime
// quick check would never notice. Two defences:
//   - a file whose ctime moved while it was read is a failure of this pass,
//     so the next pass reads it again (no sync exits 0 with it);
//   - a file whose ctime was within racyWindow of the moment it was read is
//     suspect: the one-shot sync records it, and its next run sends it
//     again (as a delta, which costs checksums when nothing changed). Like
//     git's racy-index rule, but kept on the primary, so the replica's
//     mtime stays the true one.

// racyWindow is how long after a change a read of the file is not trusted.
const racyWindow = time.Second

// racy reports whether a file with this ctime, read at now, is suspect.
func racy(ctime unix.Timespec, now time.Time) bool {
	return now.Sub(time.Unix(ctime.Sec, ctime.Nsec)) < racyWindow
}

// changedWhileRead reports whether the file changed between two fstats
// taken before and after it was read.
func changedWhileRead(before, after *unix.Stat_t) bool {
	return before.Ctim != after.Ctim || before.Mtim != after.Mtim || before.Size != after.Size || before.Ino != after.Ino
}

// suspects collects the IDs read while suspect.
type suspects struct {
	mu  sync.Mutex
	ids map[fileid.ID]bool
}

func (s *suspects) add(id fileid.ID) {
	s.mu.Lock()
	if s.ids == nil {
		s.ids = map[fileid.ID]bool{}
	}
	s.ids[id] = true
	s.mu.Unlock()
}

// Suspects lists the files this session read within racyWindow of their
// last change: a later sync should send them again (Config.Suspects).
func (s *Session) Suspects() []fileid.ID {
	s.suspect.mu.Lock()
	defer s.suspect.mu.Unlock()
	out := make([]fileid.ID, 0, len(s.suspect.ids))
	for id := range s.suspect.ids {
		out = append(out, id)
	}
	return out
}
