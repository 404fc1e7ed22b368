package continuous

import (
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/status"
	"github.com/georep/georep/internal/worker"
)

// Work is what a job has to do: entry operations, files whose content is
// sent, and their bytes.
type Work struct {
	Entries int
	Files   int
	Bytes   int64
}

// Remaining is the work of a job before it is applied.
func Remaining(job *worker.Job) Work {
	w := Work{Entries: len(job.Plan.Ops), Files: len(job.Plan.NewFiles) + len(job.Data)}
	for _, nf := range job.Plan.NewFiles {
		w.Bytes += nf.Entry.Size
	}
	for _, d := range job.Data {
		w.Bytes += d.Entry.Size
	}
	return w
}

// lagSeconds is the LAG at now of the oldest change not yet on the
// secondary (0: none pending).
func lagSeconds(now, oldest int64) float64 {
	if oldest <= 0 || now <= oldest {
		return 0
	}
	return time.Duration(now - oldest).Seconds()
}

// crawlOrigin is the LAG's origin during a crawl: the stime (everything
// after it may be missing), the oldest pending changelog if older, and for
// a first sync (no stime) the moment the session started.
func (r *runner) crawlOrigin(oldestPending int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.st.Stime
	if o <= 0 {
		o = r.started.UnixNano()
	}
	if oldestPending > 0 && oldestPending < o {
		o = oldestPending
	}
	return o
}

// onProgress takes the worker's progress during a job's data transfer:
// the synced counters grow as files arrive, and the remaining work and
// the ETA follow.
func (r *runner) onProgress(p worker.Progress) {
	now := time.Now()
	r.mu.Lock()
	r.rate.Add(now, p.Settled)
	rate := r.rate.Rate()
	r.mu.Unlock()
	r.update(func(s *Status) {
		s.FilesSynced, s.BytesSynced = r.baseFiles+int64(p.Files), r.baseBytes+p.Settled
		s.RemainingEntries = 0 // entry operations come before the data
		s.RemainingFiles = max(p.TotalFiles-p.Files, 0)
		s.RemainingBytes = max(p.TotalBytes-p.Settled, 0)
		s.RateBytes = rate
		s.ETASeconds = status.ETA(s.RemainingBytes, rate).Seconds()
	})
}

// notePausedLag keeps the LAG true while paused: its origin is the start
// of the oldest changelog waiting (read once per changelog).
func (r *runner) notePausedLag() {
	files, err := changelog.List(r.clDir)
	if err != nil || len(files) == 0 {
		return
	}
	first := files[0]
	if first.Seq != r.pausedSeq || r.pausedStart == 0 {
		h, _, _, err := changelog.ReadFile(first.Path)
		if err != nil {
			return
		}
		r.pausedSeq, r.pausedStart = first.Seq, h.Start
	}
	r.mu.Lock()
	if r.oldest == 0 || r.pausedStart < r.oldest {
		r.oldest = r.pausedStart
	}
	r.st.PendingChangelogs = len(files)
	r.mu.Unlock()
}

// applied counts a job applied (its stime recorded) that began at start:
// its duration, and the lag of its oldest change.
func (r *runner) applied(start time.Time) {
	now := time.Now()
	r.update(func(s *Status) {
		s.Applied++
		s.LastApplySeconds = now.Sub(start).Seconds()
		s.LastApplyLagSeconds = -1
		if r.oldest > 0 {
			s.LastApplyLagSeconds = lagSeconds(now.UnixNano(), r.oldest)
		}
	})
}

// crawlStime is the stime a crawl compares ctimes with: 0 while the
// metadata options widened, so every file's metadata is re-sent.
func (r *runner) crawlStime() int64 {
	if r.metaFull {
		return 0
	}
	return r.st.Stime
}

// metaSynced records, after a crawl was committed, the metadata options
// it carried.
func (r *runner) metaSynced() {
	if err := worker.WriteMetaOptions(r.metaPath, r.cfg.Worker.MetaOptions()); err != nil {
		r.log.Warn("could not record the synced metadata options", "err", err)
		return
	}
	r.metaFull = false
}

// settledBy selects the recorded failures a job settles when it applies
// without failing: every one for a crawl (the whole tree was reconciled),
// those of the IDs it worked on for a batch.
func settledBy(job *worker.Job, crawl bool) func(worker.Failure) bool {
	if crawl {
		return func(worker.Failure) bool { return true }
	}
	ids := jobIDs(job)
	return func(f worker.Failure) bool { return ids[f.ID] }
}

// retryDelay is the wait before the next attempt after one failed, and
// the backoff after it. The backoff starts again from initial only when
// the attempt made progress (applied a batch): a secondary that takes the
// connection but nothing else (a full disk) is retried ever more slowly,
// up to max, instead of being sent the same batch every second.
func retryDelay(backoff time.Duration, progressed bool, initial, max time.Duration) (wait, next time.Duration) {
	if progressed {
		backoff = initial
	}
	return backoff, min(2*backoff, max)
}
