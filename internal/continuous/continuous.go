// Package continuous owns continuous replication of one session: where its
// changelogs come from — the journal process (`georep journal`,
// internal/journal/service) when Config.Journal names one, else a change
// journal of its own in this process — and a worker loop that takes the
// closed changelogs after its position in batches, applies them, advances
// the stime on both sides and then records its position (the journal
// process deletes what every consumer applied) or deletes them (its own
// journal). A gap the changelogs cannot vouch for (the journal was not
// running, a queue overflow, changelogs dropped at the size limit, no
// position yet) is covered by a crawl, counted by reason. A lost secondary
// is reconnected with backoff. Without fanotify (no CAP_SYS_ADMIN, or no FID
// reporting) it says so and falls back to periodic crawls. `georep run` and
// the daemon's workers are built on it.
package continuous

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/journal"
	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/status"
	"github.com/georep/georep/internal/worker"
)

// Config describes one continuously replicated session.
type Config struct {
	// Worker is the replication setup (source, destination, ssh, jobs ...).
	Worker worker.Config
	// Dir is the session's state directory: changelogs/, stime,
	// failures.json are kept there.
	Dir string
	// RolloverInterval bounds how long a changelog stays open (default 1s).
	RolloverInterval time.Duration
	// ChangeInterval is the longest the worker waits before looking for new
	// changelogs when not notified (default 1s).
	ChangeInterval time.Duration
	// BatchSize is the most records taken into one batch (default 50000).
	BatchSize int
	// CrawlInterval is the period of crawls when the journal is unavailable
	// (default 10s).
	CrawlInterval time.Duration
	// MaxBackoff caps the reconnect backoff (default 30s).
	MaxBackoff time.Duration
	// IdleStimeInterval: when no changelog is pending, the secondary holds
	// everything up to the journal's watermark (every event before it is in
	// a changelog, and none is left); the stime is advanced to it once it is
	// this much ahead (default 2s, < 0 never), so an idle tree's stime keeps
	// up with the clock and a checkpoint completes without a change.
	IdleStimeInterval time.Duration
	// Paused, when it returns true, holds the worker between batches.
	Paused func() bool
	// FilterJob, when set, may drop operations from every job before it is
	// applied (the daemon's ignore-deletes).
	FilterJob func(*worker.Job)
	// Resync, when set, delivers requests to re-send the tree or a subtree
	// (`georep resync`); they are served between batches.
	Resync <-chan ResyncRequest
	Logger *slog.Logger
	// journalQueue is a test hook for the journal's queue size.
	JournalQueueSize int
	// Journal, when set, reads the changelogs of a journal process instead
	// of running a journal in this process: the worker can then stop and
	// start again (crash, restart, config change) and replay what was
	// journaled meanwhile without a crawl.
	Journal *ExternalJournal
}

// ExternalJournal names the journal process a session reads.
type ExternalJournal struct {
	Dir      string // its journal directory (STATE/journal)
	Consumer string // this session's name there (its position file)
	// Start starts the journal process when none answers; nil: do not.
	Start func(context.Context) error
}

// Worker states and crawl statuses, as `georep status` shows them.
const (
	StateInitializing = "Initializing"
	StateActive       = "Active"
	StatePaused       = "Paused"
	StateFaulty       = "Faulty"
	CrawlHybrid       = "Hybrid Crawl"
	CrawlChangelog    = "Changelog Crawl"
)

// Status is a snapshot of a running session.
type Status struct {
	State             string           `json:"state"`
	Crawl             string           `json:"crawl_status"`
	Stime             int64            `json:"stime_ns"`
	LastSynced        time.Time        `json:"last_synced"`
	LagSeconds        float64          `json:"lag_seconds"`
	PendingEntry      int              `json:"pending_entry"`
	PendingData       int              `json:"pending_data"`
	PendingMeta       int              `json:"pending_meta"`
	Failures          int              `json:"failures"`
	FilesSynced       int64            `json:"files_synced"`
	BytesSynced       int64            `json:"bytes_synced"`
	EntriesSynced     int64            `json:"entries_synced"`
	Batches           int64            `json:"batches"`
	Crawls            int64            `json:"crawls"`
	LastError         string           `json:"last_error,omitempty"`
	JournalMode       string           `json:"journal"` // "journal process", "fanotify" (in process) or "periodic crawl"
	JournalDir        string           `json:"journal_dir,omitempty"`
	JournalSince      time.Time        `json:"journal_since"`     // the journal covers the tree without a gap since
	LastCrawlReason   string           `json:"last_crawl_reason"` // why the last crawl happened
	CrawlReasons      map[string]int64 `json:"crawl_reasons,omitempty"`
	JournalEvents     uint64           `json:"journal_events"`
	JournalOverflows  uint64           `json:"journal_overflows"`
	PendingChangelogs int              `json:"pending_changelogs"`
	// Remaining work of the crawl or batch being applied: entry
	// operations, files to send and their bytes; the recent transfer rate
	// and the ETA it gives for the bytes (0 when idle or unknown).
	RemainingEntries int     `json:"remaining_entries"`
	RemainingFiles   int     `json:"remaining_files"`
	RemainingBytes   int64   `json:"remaining_bytes"`
	RateBytes        float64 `json:"rate_bytes_per_second"`
	ETASeconds       float64 `json:"eta_seconds"`
	// Applied counts the jobs (batches and crawls) applied; the last one
	// took LastApplySeconds, and its oldest change reached the secondary
	// LastApplyLagSeconds after it was made (-1: unknown).
	Applied             int64   `json:"applied"`
	LastApplySeconds    float64 `json:"last_apply_seconds"`
	LastApplyLagSeconds float64 `json:"last_apply_lag_seconds"`
	// Compression is what the data transfer's compression chose and why;
	// CompressionRatio what it achieved (see worker.Stats).
	Compression      string    `json:"compression,omitempty"`
	CompressionRatio float64   `json:"compression_ratio,omitempty"`
	Updated          time.Time `json:"updated"`
}

// ResyncRequest asks a running session to re-send part of the tree.
type ResyncRequest struct {
	// Path is the subtree, relative to the source root ("" = all of it).
	// Recorded failures at or under it are replaced by this resync's.
	Path string
	// Records name what to reconcile for a subtree (its entries with their
	// data and metadata). Nil means the whole tree: a crawl that re-applies
	// every file's metadata.
	Records []changelog.Record
	// Done receives the outcome; the sender gives it room for one result.
	Done chan<- ResyncResult
}

// ResyncResult is the outcome of a ResyncRequest.
type ResyncResult struct {
	Err      error
	Job      string // what was applied
	Failures int    // entries that failed again (kept in failures.json)
	Cleared  int    // earlier failures under Path that no longer fail
}

// Reporter receives status snapshots.
type Reporter func(Status)

type runner struct {
	cfg    Config
	log    *slog.Logger
	report Reporter
	mu     sync.Mutex
	st     Status
	jr     *journal.Journal
	ext    *extJournal
	clDir  string

	// Under mu: oldest is when the oldest change not yet on the secondary
	// was made (Unix ns, 0 = none), the LAG's origin; started is when this
	// runner began (the origin of an initial sync's LAG).
	oldest  int64
	started time.Time
	// rate follows the bytes sent, for the ETA; the job's base counters
	// let progress reports add to the synced totals as the job goes.
	rate                 status.RateWindow
	baseFiles, baseBytes int64
	// metaFull: the metadata options widened (or their record is
	// unreadable): the next crawl re-sends every file's metadata, and the
	// next batch is a crawl. metaPath is the record.
	metaFull bool
	metaPath string
	// pausedSeq/pausedStart: the first pending changelog seen while
	// paused and its start, so it is read once.
	pausedSeq   uint64
	pausedStart int64
	// cu times the start until the worker first caught up (journal process).
	cu catchUp
}

// setOldest sets the LAG's origin (0: nothing pending).
func (r *runner) setOldest(ns int64) {
	r.mu.Lock()
	r.oldest = ns
	r.mu.Unlock()
}

// extJournal is the journal process a runner reads.
type extJournal struct {
	cfg        ExternalJournal
	root       string // the primary root registered
	rootID     string
	rollAsked  bool // a RollOver is pending (asked since the last changelog taken)
	rollWarned bool // a failed rollover request was logged as a warning
	notify     <-chan struct{}
	countersAt time.Time // last journalCounters refresh
}

func (r *runner) update(fn func(*Status)) {
	r.mu.Lock()
	fn(&r.st)
	r.st.Updated = time.Now()
	r.st.LagSeconds = lagSeconds(r.st.Updated.UnixNano(), r.oldest)
	if r.jr != nil {
		js := r.jr.Stats()
		r.st.JournalEvents, r.st.JournalOverflows = js.Events, js.Overflows
	}
	st := r.st
	st.CrawlReasons = maps.Clone(r.st.CrawlReasons)
	r.mu.Unlock()
	if r.report != nil {
		r.report(st)
	}
}

// Run replicates until ctx is done (returns nil) or a fatal error.
func Run(ctx context.Context, cfg Config, report Reporter) error {
	if cfg.RolloverInterval <= 0 {
		cfg.RolloverInterval = time.Second
	}
	if cfg.ChangeInterval <= 0 {
		cfg.ChangeInterval = time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50000
	}
	if cfg.CrawlInterval <= 0 {
		cfg.CrawlInterval = 10 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.IdleStimeInterval == 0 {
		cfg.IdleStimeInterval = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	src, err := filepath.Abs(cfg.Worker.Source)
	if err != nil {
		return err
	}
	cfg.Worker.Source = src
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("session directory: %w", err)
	}
	r := &runner{cfg: cfg, log: log, report: report, clDir: filepath.Join(cfg.Dir, "changelogs"), started: time.Now()}
	r.st.State, r.st.Crawl = StateInitializing, CrawlHybrid
	r.cu.started = r.started
	if st, err := state.ReadStime(filepath.Join(cfg.Dir, "stime")); err == nil && st > 0 {
		r.st.Stime, r.st.LastSynced = st, time.Unix(0, st)
	}
	var failed []worker.Failure
	if state.ReadJSON(filepath.Join(cfg.Dir, "failures.json"), &failed) == nil {
		r.st.Failures = len(failed)
	}
	absDir, _ := filepath.Abs(cfg.Dir)
	cfg.Worker.ExcludePaths = append(cfg.Worker.ExcludePaths, absDir)
	if next := cfg.Worker.Progress; true {
		cfg.Worker.Progress = func(p worker.Progress) {
			r.onProgress(p)
			if next != nil {
				next(p)
			}
		}
	}
	r.cfg = cfg
	r.metaPath = filepath.Join(cfg.Dir, worker.MetaOptionsFile)
	if rec, known, err := worker.ReadMetaOptions(r.metaPath); err != nil {
		log.Warn("unreadable record of the synced metadata options; every file's metadata is re-sent", "err", err)
		r.metaFull = true
	} else if worker.MetaCrawlStime(1, rec, known, cfg.Worker.MetaOptions()) == 0 {
		log.Info("xattrs or ACLs switched on: the next crawl re-sends every file's metadata")
		r.metaFull = true
	}
	r.update(func(*Status) {})

	if cfg.Journal != nil {
		ext, err := r.attach(ctx, src)
		if err != nil {
			if !errors.Is(err, journal.ErrUnsupported) {
				return fmt.Errorf("journal process: %w", err)
			}
			log.Warn("no change journal; falling back to a periodic crawl", "every", cfg.CrawlInterval, "reason", err)
			r.update(func(s *Status) { s.JournalMode = "periodic crawl" })
			return r.loop(ctx, nil)
		}
		r.ext = ext
		return r.loop(ctx, nil)
	}

	jr, err := journal.Open(journal.Config{Roots: []journal.Root{{Path: src, Dir: r.clDir}}, Exclude: []string{absDir},
		RolloverInterval: cfg.RolloverInterval, QueueSize: cfg.JournalQueueSize, Logger: log.With("part", "journal")})
	if err != nil {
		if !errors.Is(err, journal.ErrUnsupported) {
			return fmt.Errorf("journal: %w", err)
		}
		log.Warn("no change journal; falling back to a periodic crawl", "every", cfg.CrawlInterval, "reason", err)
		r.update(func(s *Status) { s.JournalMode = "periodic crawl" })
		return r.loop(ctx, nil)
	}
	r.jr = jr
	r.update(func(s *Status) { s.JournalMode, s.JournalDir, s.JournalSince = "fanotify", r.clDir, time.Now() })
	jctx, stopJournal := context.WithCancel(context.Background())
	jdone := make(chan error, 1)
	go func() { jdone <- jr.Run(jctx) }()
	defer func() {
		stopJournal()
		<-jdone
	}()
	select {
	case <-jr.Ready():
	case err := <-jdone:
		return fmt.Errorf("journal: %w", err)
	case <-ctx.Done():
		return nil
	}
	return r.loop(ctx, jdone)
}

// loop keeps a session connected and processes batches; connection losses
// are retried with exponential backoff.
func (r *runner) loop(ctx context.Context, jdone chan error) error {
	const initialBackoff = 500 * time.Millisecond
	backoff := initialBackoff
	for {
		r.mu.Lock()
		appliedBefore := r.st.Applied
		r.mu.Unlock()
		sess, err := worker.Connect(ctx, r.cfg.Worker)
		if err == nil {
			if r.cu.connected.IsZero() {
				r.cu.connected = time.Now()
			}
			r.update(func(s *Status) { s.State, s.LastError = StateActive, "" })
			err = r.serve(ctx, sess, jdone)
			sess.Close()
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !worker.IsConnectionError(err) && !errors.Is(err, errRetry) {
			r.update(func(s *Status) { s.State, s.LastError = StateFaulty, err.Error() })
			return err
		}
		r.mu.Lock()
		progressed := r.st.Applied > appliedBefore
		r.mu.Unlock()
		var wait time.Duration
		wait, backoff = retryDelay(backoff, progressed, initialBackoff, r.cfg.MaxBackoff)
		r.log.Warn("secondary unavailable; retrying", "in", wait, "err", err)
		r.update(func(s *Status) { s.State, s.LastError = StateFaulty, errString(err) })
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
	}
}

var errRetry = errors.New("retry")

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// serve processes batches on one connection until it breaks.
func (r *runner) serve(ctx context.Context, sess *worker.Session, jdone chan error) error {
	var notify <-chan struct{}
	if r.jr != nil {
		notify = r.jr.Notify()
	}
	if r.ext != nil {
		notify = r.ext.notify
	}
	if r.jr == nil && r.ext == nil {
		// Periodic crawls only.
		for {
			if !r.cfg.paused() {
				r.update(func(s *Status) {
					if s.State == StatePaused {
						s.State = StateActive
					}
				})
				if err := r.crawl(ctx, sess); err != nil {
					return err
				}
			} else {
				r.update(func(s *Status) { s.State = StatePaused })
			}
			wait := r.cfg.CrawlInterval
			if r.cfg.paused() {
				wait = 200 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return nil
			case req := <-r.cfg.Resync:
				if err := r.resync(ctx, sess, req); err != nil {
					return err
				}
			case <-time.After(wait):
			}
		}
	}
	if r.ext != nil {
		r.flushJournal(ctx)
	}
	tick := time.NewTicker(r.cfg.ChangeInterval)
	defer tick.Stop()
	for {
		for r.cfg.paused() {
			r.notePausedLag()
			r.update(func(s *Status) { s.State = StatePaused })
			select {
			case <-ctx.Done():
				return nil
			case req := <-r.cfg.Resync:
				if err := r.resync(ctx, sess, req); err != nil {
					return err
				}
			case <-time.After(200 * time.Millisecond):
			}
		}
		r.update(func(s *Status) {
			if s.State == StatePaused {
				s.State = StateActive
			}
		})
		more, err := r.batch(ctx, sess)
		if err != nil {
			return err
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-jdone:
			return fmt.Errorf("journal stopped: %w", err)
		case <-notify:
		case <-tick.C:
		case req := <-r.cfg.Resync:
			if err := r.resync(ctx, sess, req); err != nil {
				return err
			}
		case <-sess.Conn().Done():
			return sess.Conn().Err()
		}
	}
}

func (c *Config) paused() bool { return c.Paused != nil && c.Paused() }

// resync serves a ResyncRequest: the subtree's records (or a crawl of the
// whole tree) are applied, and the failures recorded under the path are
// replaced by this run's. A broken connection is returned (after answering).
func (r *runner) resync(ctx context.Context, sess *worker.Session, req ResyncRequest) error {
	var job *worker.Job
	var err error
	if req.Records != nil {
		job, err = sess.BatchJob(ctx, req.Records)
	}
	if req.Records == nil || errors.Is(err, worker.ErrNeedCrawl) {
		r.log.Info("resync: crawling the whole tree", "path", req.Path)
		r.update(func(s *Status) { s.Crawl = CrawlHybrid })
		job, err = sess.Crawl(ctx, 0)
		r.update(func(s *Status) { s.countCrawl(ReasonResync); s.Crawl = CrawlChangelog })
	}
	res := ResyncResult{}
	if err == nil {
		ids := jobIDs(job)
		drop := func(f worker.Failure) bool { return underPath(f.Path, req.Path) || ids[f.ID] }
		res.Job = job.String()
		res.Failures, res.Cleared, err = r.executeClearing(ctx, sess, job, drop)
	}
	res.Err = err
	r.log.Info("resync done", "path", req.Path, "job", res.Job, "failures", res.Failures, "cleared", res.Cleared, "err", err)
	if req.Done != nil {
		req.Done <- res
	}
	if err != nil && (worker.IsConnectionError(err) || errors.Is(err, errRetry)) {
		return err
	}
	return nil
}

// jobIDs lists the IDs a job works on.
func jobIDs(job *worker.Job) map[fileid.ID]bool {
	ids := map[fileid.ID]bool{}
	for _, op := range job.Plan.Ops {
		ids[op.ID] = true
	}
	for _, nf := range job.Plan.NewFiles {
		ids[nf.Entry.ID] = true
	}
	for _, d := range job.Data {
		ids[d.Entry.ID] = true
	}
	for _, m := range job.Meta {
		ids[m.Entry.ID] = true
	}
	return ids
}

// underPath reports whether the source-relative path p is dir or below it
// ("" is the whole tree).
func underPath(p, dir string) bool {
	return dir == "" || p == dir || len(p) > len(dir) && p[:len(dir)] == dir && p[len(dir)] == '/'
}

// batch takes the next changelogs, applies them and advances the stime. It
// reports whether more changelogs are waiting.
func (r *runner) batch(ctx context.Context, sess *worker.Session) (bool, error) {
	if r.ext != nil {
		return r.extBatch(ctx, sess)
	}
	// The watermark is read before the listing: a changelog holding events
	// before it was durable by then, so it is listed (or already applied).
	var watermark int64
	if r.jr != nil {
		if w := r.jr.Stats().Watermark; !w.IsZero() {
			watermark = w.UnixNano()
		}
	}
	files, err := changelog.List(r.clDir)
	if err != nil {
		return false, err
	}
	if len(files) == 0 {
		r.setOldest(0)
	}
	r.update(func(s *Status) {
		s.PendingChangelogs = len(files)
		if len(files) == 0 {
			if s.Stime > 0 { // not before the first crawl (its gap is not written yet)
				s.Crawl = CrawlChangelog
			}
		}
	})
	if len(files) == 0 {
		// Idle: nothing happened between the stime and the watermark that
		// the secondary lacks.
		if r.cfg.IdleStimeInterval > 0 && r.st.Stime > 0 && watermark-r.st.Stime >= int64(r.cfg.IdleStimeInterval) {
			if err := r.commit(ctx, sess, watermark); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	var recs []changelog.Record
	var taken []changelog.FileInfo
	var end, oldest int64
	for _, f := range files {
		h, rs, tr, err := changelog.ReadFile(f.Path)
		if err != nil {
			// A corrupt changelog cannot be trusted: crawl instead.
			r.log.Error("unreadable changelog; crawling instead", "file", f.Path, "err", err)
			rs = []changelog.Record{{Type: changelog.Gap, From: 0, To: time.Now().UnixNano(), Reason: gapUnreadable}}
			tr.End = time.Now().UnixNano()
		}
		if oldest == 0 {
			oldest = h.Start
		}
		recs = append(recs, rs...)
		taken = append(taken, f)
		end = tr.End
		if len(recs) >= r.cfg.BatchSize {
			break
		}
	}
	job, crawled, err := r.applyRecords(ctx, sess, recs, oldest, end)
	if err != nil {
		return false, err
	}
	for _, f := range taken {
		os.Remove(f.Path)
	}
	r.update(func(s *Status) {
		s.Batches++
		if !crawled {
			s.Crawl = CrawlChangelog
		}
		s.PendingChangelogs = len(files) - len(taken)
	})
	if len(taken) == len(files) {
		r.setOldest(0)
		r.update(func(*Status) {})
	}
	r.log.Debug("batch applied", "changelogs", len(taken), "records", len(recs), "job", job.String(), "crawl", crawled)
	return len(taken) < len(files), nil
}

// applyRecords applies a batch's records (crawling when they cannot cover
// it) and records end as the stime on both sides; oldest is the time of the
// batch's oldest change (0: not known), from which the lag is counted.
func (r *runner) applyRecords(ctx context.Context, sess *worker.Session, recs []changelog.Record, oldest, end int64) (*worker.Job, bool, error) {
	if oldest > 0 {
		r.setOldest(oldest)
		r.update(func(s *Status) {})
	}
	applyStart := time.Now()
	job, crawled, err := r.plan(ctx, sess, recs, oldest)
	if err != nil {
		return nil, false, err
	}
	planned := time.Now()
	if err := r.execute(ctx, sess, job, crawled); err != nil {
		return nil, false, err
	}
	executed := time.Now()
	if err := r.commit(ctx, sess, end); err != nil {
		return nil, false, err
	}
	r.cu.notePhases(planned.Sub(applyStart), executed.Sub(planned), time.Since(executed))
	if crawled {
		r.metaSynced()
	}
	r.applied(applyStart)
	return job, crawled, nil
}

// plan turns a batch's records into a job, or crawls since the stime when
// they cannot cover it (a gap, an entry whose parent the secondary lacks).
func (r *runner) plan(ctx context.Context, sess *worker.Session, recs []changelog.Record, oldest int64) (*worker.Job, bool, error) {
	recs = DropCoveredGaps(recs, r.st.Stime)
	var job *worker.Job
	var err error
	reason := ""
	if r.metaFull {
		// sync-xattrs or sync-acls were set back to true: every file's
		// metadata goes again, which only a crawl sees.
		err, reason = fmt.Errorf("%w (metadata options widened)", worker.ErrNeedCrawl), ReasonOptions
	} else if job, err = sess.BatchJob(ctx, recs); !errors.Is(err, worker.ErrNeedCrawl) {
		return job, false, err
	}
	if reason == "" {
		reason = CrawlReason(recs, r.st.Stime)
	}
	r.log.Info("crawling", "reason", reason, "why", err)
	r.setOldest(r.crawlOrigin(oldest))
	r.update(func(s *Status) { s.Crawl = CrawlHybrid })
	job, err = sess.Crawl(ctx, r.crawlStime())
	if err == nil {
		r.update(func(s *Status) { s.countCrawl(reason) })
	}
	return job, true, err
}

func (r *runner) crawl(ctx context.Context, sess *worker.Session) error {
	start := time.Now().UnixNano()
	r.setOldest(r.crawlOrigin(0))
	r.update(func(s *Status) { s.Crawl = CrawlHybrid })
	job, err := sess.Crawl(ctx, r.crawlStime())
	if err != nil {
		return err
	}
	if err := r.execute(ctx, sess, job, true); err != nil {
		return err
	}
	reason := ReasonNoJournal
	if r.st.Stime == 0 {
		reason = ReasonFirstSync
	}
	r.update(func(s *Status) { s.countCrawl(reason) })
	if err := r.commit(ctx, sess, start); err != nil {
		return err
	}
	r.metaSynced()
	r.applied(time.Unix(0, start))
	r.setOldest(0)
	r.update(func(*Status) {})
	return nil
}

// execute applies a job; items that fail are recorded and counted, and
// replication goes on (they are retried by `georep resync` or the next
// change). A broken connection is returned.
//
// Recorded failures the job shows settled are dropped: all of them after a
// crawl that met none (it reconciled the whole tree), those of the IDs it
// applied after a batch.
func (r *runner) execute(ctx context.Context, sess *worker.Session, job *worker.Job, crawl bool) error {
	_, _, err := r.executeClearing(ctx, sess, job, settledBy(job, crawl))
	return err
}

// executeClearing is execute; recorded failures for which drop is true are
// dropped first (a resync replaces them with its own). It returns this
// job's failures and how many recorded ones were cleared.
func (r *runner) executeClearing(ctx context.Context, sess *worker.Session, job *worker.Job, drop func(worker.Failure) bool) (failed, cleared int, err error) {
	if r.cfg.FilterJob != nil {
		r.cfg.FilterJob(job)
	}
	work := Remaining(job)
	r.mu.Lock()
	r.baseFiles, r.baseBytes = r.st.FilesSynced, r.st.BytesSynced
	r.rate = status.RateWindow{}
	r.mu.Unlock()
	r.update(func(s *Status) {
		s.PendingEntry, s.PendingData, s.PendingMeta = len(job.Plan.Ops), len(job.Plan.NewFiles)+len(job.Data), len(job.Meta)
		s.RemainingEntries, s.RemainingFiles, s.RemainingBytes = work.Entries, work.Files, work.Bytes
		s.RateBytes, s.ETASeconds = 0, 0
	})
	before := sess.Stats()
	sess.ResetFailures()
	err = sess.Execute(ctx, job)
	after := sess.Stats()
	r.update(func(s *Status) {
		s.PendingEntry, s.PendingData, s.PendingMeta = 0, 0, 0
		s.RemainingEntries, s.RemainingFiles, s.RemainingBytes, s.RateBytes, s.ETASeconds = 0, 0, 0, 0, 0
		s.FilesSynced = r.baseFiles + int64(after.DataFiles-before.DataFiles)
		s.BytesSynced = r.baseBytes + after.DataBytes - before.DataBytes
		s.EntriesSynced += int64(after.Entries - before.Entries)
		s.Compression, s.CompressionRatio = after.Compression, after.CompressionRatio
	})
	failures := err != nil && worker.IsFailures(err)
	r.mu.Lock()
	recorded := r.st.Failures > 0
	r.mu.Unlock()
	if failures || drop != nil && err == nil && recorded {
		var list []worker.Failure
		if failures {
			list = after.FailureList
		}
		cleared = r.recordFailures(list, drop)
		failed = len(list)
	}
	if failures {
		for _, f := range after.FailureList {
			if isEnvironmental(f.Errno) {
				// The secondary cannot take anything now (full disk, read-only,
				// I/O error): do not advance the stime past data it lacks.
				return failed, cleared, fmt.Errorf("%w: %s %s: %s", errRetry, f.Op, f.Path, f.Error)
			}
		}
		return failed, cleared, nil
	}
	return failed, cleared, err
}

// recordFailures adds list to failures.json, replacing the earlier records
// of the IDs it names and, first, dropping those drop selects. It
// returns how many earlier records were dropped and not failing again.
func (r *runner) recordFailures(list []worker.Failure, drop func(worker.Failure) bool) int {
	path := filepath.Join(r.cfg.Dir, "failures.json")
	var old []worker.Failure
	state.ReadJSON(path, &old)
	again := map[fileid.ID]bool{}
	for _, f := range list {
		again[f.ID] = true
	}
	all := make([]worker.Failure, 0, len(old)+len(list))
	cleared := 0
	for _, f := range old {
		k := f.ID
		if drop != nil && drop(f) {
			if !again[k] {
				cleared++
			}
			continue
		}
		if !again[k] {
			all = append(all, f)
		}
	}
	all = append(all, list...)
	if len(all) > 10000 {
		all = all[len(all)-10000:]
	}
	state.WriteJSON(path, all)
	r.update(func(s *Status) { s.Failures = len(all) })
	return cleared
}

// commit records the stime on the secondary (after syncfs) and here.
func (r *runner) commit(ctx context.Context, sess *worker.Session, stime int64) error {
	if stime <= r.st.Stime {
		return nil
	}
	if err := sess.CommitStime(ctx, stime); err != nil {
		return err
	}
	if err := state.WriteStime(filepath.Join(r.cfg.Dir, "stime"), stime); err != nil {
		return err
	}
	r.update(func(s *Status) { s.Stime, s.LastSynced = stime, time.Unix(0, stime) })
	return nil
}

// isEnvironmental reports errnos that say the secondary as a whole cannot
// take changes now, as opposed to one entry being unsyncable.
func isEnvironmental(errno uint32) bool {
	switch syscallErrno(errno) {
	case "ENOSPC", "EDQUOT", "EROFS", "EIO":
		return true
	}
	return false
}
