package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/georep/georep/internal/continuous"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/status"
	"github.com/georep/georep/internal/transport"
	"github.com/georep/georep/internal/worker"
)

// runtime is one session in the daemon: its config as last applied, its
// supervisor (when started) and its report.
type runtime struct {
	d    *Daemon
	name string
	log  *slog.Logger // the daemon's log, with session=name

	paused   atomic.Bool
	level    slog.LevelVar
	resyncCh chan continuous.ResyncRequest

	saveMu      sync.Mutex // one status.json write at a time
	mu          sync.Mutex
	sess        *session.Session
	fingerprint string
	cfgStamp    string
	rep         status.Report
	dirty       bool
	faultySince time.Time
	activeSince time.Time // the worker of this run has been Active since (zero: not now)
	lastState   string
	applied     int64 // the worker's Applied count last seen (histograms observe each new one)
	cancel      context.CancelFunc
	done        chan struct{}
	logFile     *LogFile
}

func newRuntime(d *Daemon, name string) *runtime {
	rt := &runtime{d: d, name: name, log: d.log.With("session", name), resyncCh: make(chan continuous.ResyncRequest)}
	// The last report carries the checkpoint completion and the last error
	// across daemon restarts.
	_ = state.ReadJSON(d.store.StatusPath(name), &rt.rep)
	rt.rep.Session = name
	return rt
}

func (rt *runtime) configStamp() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.cfgStamp
}

func (rt *runtime) setStamp(s string) {
	rt.mu.Lock()
	rt.cfgStamp = s
	rt.mu.Unlock()
}

// fingerprintOf is what, when it changes, restarts a worker: the pair and
// every config key but the live ones.
func fingerprintOf(s *session.Session) string {
	cfg := map[string]string{}
	for k, v := range s.Config {
		if session.RestartKey(k) {
			cfg[k] = v
		}
	}
	b, _ := json.Marshal(struct {
		P, S string
		C    map[string]string
	}{s.Primary, s.Secondary, cfg})
	return string(b)
}

func (rt *runtime) running() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.done != nil
}

// apply brings the runtime in line with sess (under the daemon's
// reconcile lock).
func (rt *runtime) apply(sess *session.Session) error {
	eff, err := sess.Effective()
	if err != nil {
		return err
	}
	rt.level.Set(eff.LogLevel)
	rt.mu.Lock()
	prev := rt.sess
	rt.sess = sess
	rt.rep.Primary, rt.rep.Secondary = sess.Primary, sess.Secondary
	if rt.rep.UpdateCheckpoint(sess.Checkpoint, time.Now()) {
		rt.log.Info("checkpoint completed", "checkpoint", sess.Checkpoint.Format(time.RFC3339), "stime", time.Unix(0, rt.rep.StimeNS).Format(time.RFC3339Nano))
	}
	rt.dirty = true
	fp := fingerprintOf(sess)
	restart := rt.done != nil && fp != rt.fingerprint
	rt.mu.Unlock()
	if prev == nil || prev.State != sess.State {
		rt.log.Info("session state", "state", sess.State)
	}

	switch sess.State {
	case session.Started, session.Paused:
		wasPaused := rt.paused.Swap(sess.State == session.Paused)
		if restart {
			rt.log.Info("config changed: restarting the worker")
			rt.stop()
		}
		if !rt.running() {
			rt.start(sess, fp)
		} else if sess.State == session.Paused && !wasPaused {
			rt.waitStatus(30*time.Second, func(s string) bool { return s != status.Active })
		} else if sess.State == session.Started && wasPaused {
			rt.waitStatus(5*time.Second, func(s string) bool { return s != status.Paused })
		}
	default:
		rt.stop()
		rt.mu.Lock()
		rt.rep.Status = string(sess.State) // Created or Stopped
		rt.rep.CrawlStatus, rt.rep.Entry, rt.rep.Data, rt.rep.Meta, rt.rep.LagSeconds = "", 0, 0, 0, 0
		rt.rep.RemainingEntries, rt.rep.RemainingFiles, rt.rep.RemainingBytes, rt.rep.RateBytes, rt.rep.ETASeconds = 0, 0, 0, 0, 0
		rt.dirty = true
		rt.mu.Unlock()
	}
	rt.save()
	return nil
}

// waitStatus waits until the worker's status satisfies ok: after a pause,
// until it holds (or is not working anyway), so that once `session pause`
// returns nothing more is applied; after a resume, until it goes on.
func (rt *runtime) waitStatus(timeout time.Duration, ok func(string) bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		rt.mu.Lock()
		s := rt.rep.Status
		rt.mu.Unlock()
		if ok(s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	rt.log.Warn("the worker did not change its status in time; it will after its batch", "timeout", timeout)
}

// start launches the supervisor.
func (rt *runtime) start(sess *session.Session, fp string) {
	ctx, cancel := context.WithCancel(rt.d.ctx)
	done := make(chan struct{})
	rt.mu.Lock()
	rt.cancel, rt.done, rt.fingerprint = cancel, done, fp
	rt.rep.Status, rt.rep.CrawlStatus = status.Initializing, ""
	rt.faultySince = time.Time{}
	rt.dirty = true
	rt.mu.Unlock()
	go rt.supervise(ctx, sess, done)
}

// stop ends the supervisor and its worker and waits for them.
func (rt *runtime) stop() {
	rt.mu.Lock()
	cancel, done := rt.cancel, rt.done
	rt.cancel, rt.done = nil, nil
	rt.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	rt.log.Info("worker stopped")
}

// supervise runs the worker and restarts it when it fails.
func (rt *runtime) supervise(ctx context.Context, sess *session.Session, done chan struct{}) {
	defer close(done)
	o := rt.d.opts
	backoff := o.InitialBackoff
	var failures []time.Time
	for {
		cfg, err := rt.config(sess)
		healthy := false
		if err == nil {
			rt.log.Info("starting worker", "primary", sess.Primary, "secondary", sess.Secondary)
			healthy, err = rt.runOnce(ctx, cfg)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the worker stopped by itself")
		}
		if healthy {
			// It worked for a while: this failure starts a new series.
			failures, backoff = nil, o.InitialBackoff
		}
		now := time.Now()
		keep := failures[:0]
		for _, t := range failures {
			if now.Sub(t) < o.FailureWindow {
				keep = append(keep, t)
			}
		}
		failures = append(keep, now)
		delay := backoff
		backoff = min(2*backoff, o.MaxBackoff)
		if len(failures) >= o.FaultyAfter {
			delay = o.SlowRetry
		}
		state := status.Faulty
		if errors.Is(err, protocol.ErrFenced) {
			state, delay = status.Fenced, o.SlowRetry // until it is demoted
		}
		rt.mu.Lock()
		rt.rep.Status, rt.rep.CrawlStatus = state, ""
		rt.rep.Entry, rt.rep.Data, rt.rep.Meta = 0, 0, 0
		rt.rep.RemainingEntries, rt.rep.RemainingFiles, rt.rep.RemainingBytes, rt.rep.RateBytes, rt.rep.ETASeconds = 0, 0, 0, 0, 0
		rt.rep.LastError, rt.rep.LastErrorTime = err.Error(), status.TimePtr(now)
		rt.lastState = state
		rt.dirty = true
		rt.mu.Unlock()
		rt.save()
		if len(failures) >= o.FaultyAfter {
			rt.log.Error("worker failed repeatedly; retrying slowly", "failures", len(failures), "window", o.FailureWindow, "retry_in", delay, "err", err)
		} else {
			rt.log.Warn("worker failed; restarting", "in", delay, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		rt.mu.Lock()
		rt.rep.WorkerRestarts++
		rt.mu.Unlock()
	}
}

// healthyAfter is how long a worker must have been Active for its failure
// not to count with the ones before.
const healthyAfter = 30 * time.Second

// runOnce runs the worker until it returns, or restarts it when it has
// been Faulty for FaultyRestart. healthy says it was Active for
// healthyAfter at some point.
func (rt *runtime) runOnce(ctx context.Context, cfg continuous.Config) (healthy bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rt.mu.Lock()
	rt.activeSince = time.Time{}
	rt.applied = 0 // a new worker counts from 0
	rt.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- rt.d.opts.Run(wctx, cfg, rt.onStatus) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			return healthy, err
		case <-tick.C:
			rt.mu.Lock()
			since, last, active := rt.faultySince, rt.rep.LastError, rt.activeSince
			rt.mu.Unlock()
			if !active.IsZero() && time.Since(active) >= healthyAfter {
				healthy = true
			}
			if !since.IsZero() && time.Since(since) > rt.d.opts.FaultyRestart {
				cancel()
				<-errc
				return healthy, fmt.Errorf("faulty for %s: %s", time.Since(since).Round(time.Second), last)
			}
		}
	}
}

// config builds the worker's configuration.
func (rt *runtime) config(sess *session.Session) (continuous.Config, error) {
	eff, err := sess.Effective()
	if err != nil {
		return continuous.Config{}, err
	}
	dst, err := transport.ParseDestination(sess.Secondary)
	if err != nil {
		return continuous.Config{}, err
	}
	rt.mu.Lock()
	if rt.logFile == nil {
		if rt.logFile, err = OpenLog(rt.d.store.LogPath(rt.name)); err != nil {
			rt.mu.Unlock()
			return continuous.Config{}, fmt.Errorf("session log: %w", err)
		}
	}
	lf := rt.logFile
	rt.mu.Unlock()
	log := NewLogger(lf, eff.LogFormat, &rt.level).With("session", rt.name)
	cfg := continuous.Config{
		Worker: worker.Config{Source: sess.Primary, Dest: dst, SSHCommand: eff.SSHCommand, RemoteGeorep: eff.RemoteGeorep,
			Logger: log, SyncJobs: eff.SyncJobs, FakeSuper: eff.FakeSuper, NoXattrs: !eff.SyncXattrs, NoACLs: !eff.SyncACLs, Excludes: eff.Exclude, DeleteExcluded: eff.DeleteExcluded,
			ExcludePaths: []string{rt.d.absState}, Stderr: lf, Compression: eff.Compression, BandwidthLimit: eff.BandwidthLimit},
		Dir:              rt.d.store.Dir(rt.name),
		RolloverInterval: eff.RolloverInterval,
		ChangeInterval:   eff.ChangeInterval,
		BatchSize:        eff.BatchSize,
		CrawlInterval:    eff.CrawlInterval,
		MaxBackoff:       rt.d.opts.MaxBackoff,
		Paused:           rt.paused.Load,
		Logger:           log,
		Resync:           rt.resyncCh,
		Journal:          rt.d.external(rt.name),
	}
	if eff.IgnoreDeletes {
		cfg.FilterJob = session.IgnoreDeletes
	}
	return cfg, nil
}

// onStatus takes the worker's status snapshots.
func (rt *runtime) onStatus(st continuous.Status) {
	now := time.Now()
	rt.mu.Lock()
	before := rt.rep
	r := &rt.rep
	r.Status, r.CrawlStatus = st.State, st.Crawl
	if st.Stime > 0 {
		r.StimeNS, r.LastSynced = st.Stime, status.TimePtr(time.Unix(0, st.Stime))
	}
	r.LagSeconds = st.LagSeconds
	r.Entry, r.Data, r.Meta = st.PendingEntry, st.PendingData, st.PendingMeta
	r.RemainingEntries, r.RemainingFiles, r.RemainingBytes = st.RemainingEntries, st.RemainingFiles, st.RemainingBytes
	r.RateBytes, r.ETASeconds = st.RateBytes, st.ETASeconds
	r.Failures = st.Failures
	r.FilesSynced, r.BytesSynced, r.EntriesSynced = st.FilesSynced, st.BytesSynced, st.EntriesSynced
	r.Batches, r.Crawls, r.PendingChangelogs = st.Batches, st.Crawls, st.PendingChangelogs
	r.Journal, r.JournalEvents, r.JournalOverflows = st.JournalMode, st.JournalEvents, st.JournalOverflows
	r.Compression, r.CompressionRatio = st.Compression, st.CompressionRatio
	r.JournalDir, r.LastCrawlReason, r.CrawlReasons = st.JournalDir, st.LastCrawlReason, st.CrawlReasons
	if !st.JournalSince.IsZero() {
		r.JournalSince = status.TimePtr(st.JournalSince)
	}
	if st.State == continuous.StateFaulty {
		if st.LastError != "" && st.LastError != r.LastError {
			r.LastError, r.LastErrorTime = st.LastError, status.TimePtr(now)
		}
		if rt.faultySince.IsZero() {
			rt.faultySince = now
		}
	} else {
		rt.faultySince = time.Time{}
	}
	if st.State == continuous.StateActive {
		if rt.activeSince.IsZero() {
			rt.activeSince = now
		}
	} else if st.State != continuous.StatePaused {
		rt.activeSince = time.Time{}
	}
	newBatches := st.Applied > rt.applied
	rt.applied = st.Applied
	from := rt.lastState
	rt.lastState = st.State
	var cp time.Time
	if rt.sess != nil {
		cp = rt.sess.Checkpoint
	}
	completed := r.UpdateCheckpoint(cp, now)
	if !reflect.DeepEqual(before, rt.rep) {
		rt.dirty = true
	}
	rt.mu.Unlock()
	if newBatches {
		rt.d.metrics.ObserveBatch(rt.name, st.LastApplySeconds, st.LastApplyLagSeconds)
	}
	if from != st.State {
		rt.log.Info("worker status change", "from", from, "to", st.State, "crawl", st.Crawl, "err", st.LastError)
	}
	if completed {
		rt.log.Info("checkpoint completed", "checkpoint", cp.Format(time.RFC3339), "stime", time.Unix(0, st.Stime).Format(time.RFC3339Nano))
	}
	if completed || from != st.State {
		rt.save()
	}
}

// report returns the current report.
func (rt *runtime) report() status.Report {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	r := rt.rep
	r.Session, r.Live = rt.name, true
	r.Updated = status.TimePtr(time.Now())
	if !status.Running(r.Status) {
		r.CrawlStatus = ""
	}
	return r
}

func (rt *runtime) saveIfDirty() {
	rt.mu.Lock()
	dirty := rt.dirty
	rt.mu.Unlock()
	if dirty {
		rt.save()
	}
}

// save writes status.json (not for a session being deleted). Saves are
// serialized and each takes the report inside, so a periodic save that
// started before a state change cannot land after it with the old state.
func (rt *runtime) save() {
	rt.saveMu.Lock()
	defer rt.saveMu.Unlock()
	r := rt.report()
	rt.mu.Lock()
	rt.dirty = false
	rt.mu.Unlock()
	if err := status.Save(rt.d.store, r); err != nil {
		rt.log.Debug("status.json not written", "err", err)
	}
}

func (rt *runtime) reopenLog() {
	rt.mu.Lock()
	lf := rt.logFile
	rt.mu.Unlock()
	if lf != nil {
		if err := lf.Reopen(); err != nil {
			rt.log.Error("reopen the session log", "err", err)
		}
	}
}

func (rt *runtime) closeLog() {
	rt.mu.Lock()
	lf := rt.logFile
	rt.logFile = nil
	rt.mu.Unlock()
	if lf != nil {
		lf.Close()
	}
}

// resync asks the running worker to re-send path and waits for the result.
func (rt *runtime) resync(path string, timeout time.Duration) (*ResyncResult, error) {
	rt.mu.Lock()
	sess, running, st := rt.sess, rt.done != nil, rt.rep.Status
	rt.mu.Unlock()
	if sess == nil || !running {
		return nil, fmt.Errorf("session %s is not running (status %s): start it first", rt.name, st)
	}
	if st != status.Active && st != status.Paused {
		return nil, fmt.Errorf("session %s is %s: a resync needs the secondary connected (see georep status %s --detail)", rt.name, st, rt.name)
	}
	rel, err := ResyncPath(sess.Primary, path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(rt.d.ctx, timeout)
	defer cancel()
	req := continuous.ResyncRequest{Path: rel}
	if rel != "" {
		if req.Records, err = subtreeRecords(ctx, sess.Primary, rel, []string{rt.d.absState}); err != nil {
			return nil, err
		}
	}
	done := make(chan continuous.ResyncResult, 1)
	req.Done = done
	rt.log.Info("resync requested", "path", rel)
	select {
	case rt.resyncCh <- req:
	case <-ctx.Done():
		return nil, fmt.Errorf("the worker did not take the resync within %s (status %s)", timeout, st)
	}
	select {
	case res := <-done:
		if res.Err != nil {
			return nil, res.Err
		}
		return &ResyncResult{Path: rel, Job: res.Job, Failures: res.Failures, Cleared: res.Cleared}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("the resync did not finish within %s", timeout)
	}
}
