package continuous

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/journal"
	"github.com/georep/georep/internal/journal/service"
	"github.com/georep/georep/internal/worker"
	"golang.org/x/sys/unix"
)

// attach registers the session with the journal process (starting it when
// none answers and cfg says how) and watches its changelog dir.
func (r *runner) attach(ctx context.Context, src string) (*extJournal, error) {
	jc := *r.cfg.Journal
	c := service.Client{Dir: jc.Dir}
	rs, err := c.Register(ctx, jc.Consumer, src, r.cfg.RolloverInterval)
	if errors.Is(err, service.ErrNotRunning) && jc.Start != nil {
		r.log.Info("no journal process; starting one", "dir", jc.Dir)
		if err := jc.Start(ctx); err != nil {
			return nil, err
		}
		rs, err = c.Register(ctx, jc.Consumer, src, r.cfg.RolloverInterval)
	}
	if err != nil {
		return nil, err
	}
	notify, err := watchDir(ctx, rs.Dir)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", rs.Dir, err)
	}
	r.clDir = rs.Dir
	ext := &extJournal{cfg: jc, rootID: rs.ID, notify: notify, root: src}
	r.cu.attached = time.Now()
	r.log.Info("reading the journal process", "changelogs", rs.Dir, "covered_since", rs.CoveredSince)
	r.update(func(s *Status) {
		s.JournalMode, s.JournalDir, s.JournalSince = "journal process", rs.Dir, rs.CoveredSince
	})
	return ext, nil
}

// idleRollover bounds how long a change made while the worker is idle
// (caught up) waits in the journal's open changelog: about the lag of a
// steady state, while a churn still makes changelogs of a few hundred
// milliseconds each rather than one per event.
const idleRollover = 200 * time.Millisecond

// idleWithin is the RollOver an idle worker asks for, given the session's
// rollover interval (0: unset).
func idleWithin(rollover time.Duration) time.Duration {
	if rollover > 0 && rollover < idleRollover {
		return rollover
	}
	return idleRollover
}

// flushJournal has the journal process write its open changelog now and
// waits for it: what it holds is part of the backlog a connected worker is
// about to list, so the first batch takes it rather than the next timed
// rollover's. Failing is not fatal (the changes wait for the rollover).
func (r *runner) flushJournal(ctx context.Context) { r.requestRollOver(ctx, r.ext, 0) }

// askRollOver asks the journal process to close the open changelog within
// (once until the next changelog is taken). A journal process that does
// not know the request (an older one) only delays the changes to its timed
// rollover: it is logged, not fatal.
func (r *runner) askRollOver(ctx context.Context, ext *extJournal, within time.Duration) {
	ext.rollAsked = true
	r.requestRollOver(ctx, ext, within)
}

// requestRollOver sends the journal process a RollOver of ext's root;
// a failure is logged (rollOverFailed), not returned.
func (r *runner) requestRollOver(ctx context.Context, ext *extJournal, within time.Duration) {
	if err := (service.Client{Dir: ext.cfg.Dir}).RollOver(ctx, ext.cfg.Consumer, ext.root, within); err != nil {
		r.rollOverFailed(ext, err)
	}
}

// rollOverFailed logs a refused or failed rollover request: a warning the
// first time, then at debug level (the changes only wait for the timed
// rollover).
func (r *runner) rollOverFailed(ext *extJournal, err error) {
	if !ext.rollWarned {
		ext.rollWarned = true
		r.log.Warn("the journal process did not take a rollover request; changes wait for its timed rollover", "err", err)
		return
	}
	r.log.Debug("journal rollover request", "err", err)
}

// watchDir signals (buffered, one pending at most) when a file lands in
// dir: a changelog or a new journal.state. It stops with ctx.
func watchDir(ctx context.Context, dir string) (<-chan struct{}, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "inotify:"+dir) // non-blocking: the runtime poller waits
	ch := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, nil
}

// journalCountersEvery is how often the worker asks the journal process
// for its counters (status and metrics only).
const journalCountersEvery = 5 * time.Second

// journalCounters refreshes the journal's event and overflow counters in
// the status, at most every journalCountersEvery.
func (r *runner) journalCounters(ctx context.Context) {
	ext := r.ext
	if time.Since(ext.countersAt) < journalCountersEvery {
		return
	}
	ext.countersAt = time.Now()
	st, err := service.Client{Dir: ext.cfg.Dir}.Status(ctx)
	if err != nil {
		r.log.Debug("journal process status", "err", err)
		return
	}
	for _, rs := range st.Roots {
		if rs.Dir == r.clDir {
			r.update(func(s *Status) { s.JournalEvents, s.JournalOverflows = rs.Events, rs.Overflows })
		}
	}
}

// extBatch takes the changelogs of the journal process after this
// session's position, applies them (crawling for a gap), advances the
// stime and then the position. It reports whether more are waiting.
func (r *runner) extBatch(ctx context.Context, sess *worker.Session) (bool, error) {
	ext := r.ext
	// journal.state before the listing: a changelog it counts is listed
	// (or gone), and its End vouches for the changelogs listed.
	st, _, err := journal.ReadState(r.clDir)
	if err != nil {
		return false, err
	}
	files, err := changelog.List(r.clDir)
	if err != nil {
		return false, err
	}
	pos, have, err := service.ReadPosition(r.clDir, ext.cfg.Consumer)
	if err != nil {
		r.log.Warn("unreadable journal position; crawling", "err", err)
		have = false
	}
	sel := service.Select(pos, have, ext.rootID, st, files)
	r.journalCounters(ctx)
	r.update(func(s *Status) {
		s.PendingChangelogs = len(sel.Take)
		if st.Since > 0 {
			s.JournalSince = time.Unix(0, st.Since)
		}
		if len(sel.Take) == 0 && sel.Gap == "" {
			s.LagSeconds = 0
			if s.Stime > 0 {
				s.Crawl = CrawlChangelog
			}
		}
	})
	if len(sel.Take) == 0 && sel.Gap == "" {
		if !r.cu.done {
			r.log.Info("caught up", r.cu.fields(time.Now())...)
			r.cu.done = true
		}
		if !ext.rollAsked {
			r.askRollOver(ctx, ext, idleWithin(r.cfg.RolloverInterval))
		}
		if r.cfg.IdleStimeInterval > 0 && r.st.Stime > 0 && st.End-r.st.Stime >= int64(r.cfg.IdleStimeInterval) {
			return false, r.commit(ctx, sess, st.End)
		}
		return false, nil
	}
	startT := time.Now()
	start := startT.UnixNano()
	var recs []changelog.Record
	if sel.Gap != "" {
		recs = append(recs, changelog.Record{Type: changelog.Gap, From: r.st.Stime, To: start, Reason: sel.Gap})
	}
	var end, oldest int64
	through := sel.Through
	taken := 0
	for _, f := range sel.Take {
		h, rs, tr, err := changelog.ReadFile(f.Path)
		if err != nil {
			reason := gapUnreadable
			if errors.Is(err, fs.ErrNotExist) {
				reason = service.GapDropped // deleted at the size limit meanwhile
			}
			r.log.Error("changelog not readable; crawling instead", "file", f.Path, "err", err)
			rs = []changelog.Record{{Type: changelog.Gap, From: r.st.Stime, To: start, Reason: reason}}
			tr.End = start
		}
		if oldest == 0 {
			oldest = h.Start
		}
		recs = append(recs, rs...)
		end = tr.End
		taken++
		through = f.Seq
		if len(recs) >= r.cfg.BatchSize {
			break
		}
	}
	if taken == 0 {
		end = start // a crawl alone: it covers everything before it started
	}
	job, crawled, err := r.applyRecords(ctx, sess, recs, oldest, end)
	if err != nil {
		return false, err
	}
	if err := service.WritePosition(r.clDir, ext.cfg.Consumer, service.Position{Root: ext.rootID, Seq: through}); err != nil {
		return false, err
	}
	more := taken < len(sel.Take)
	if taken > 0 {
		ext.rollAsked = false // served (or overtaken by a timed rollover)
	}
	r.cu.noteBatch(startT, time.Now(), taken, len(recs))
	r.update(func(s *Status) {
		s.Batches++
		if !crawled {
			s.Crawl = CrawlChangelog
		}
		s.PendingChangelogs = len(sel.Take) - taken
	})
	if !more {
		r.setOldest(0)
		r.update(func(*Status) {})
	}
	r.log.Debug("batch applied", "changelogs", taken, "records", len(recs), "through", through, "job", job.String(), "crawl", crawled)
	return more, nil
}
