package continuous

import (
	"time"
)

// catchUp follows a worker from its start until it first finds nothing
// pending in the journal process's changelogs: where the time of a restart
// goes (attaching to the journal, connecting to the secondary — the
// agent's index load included —, replaying the backlog). It is logged once,
// as "caught up".
type catchUp struct {
	started   time.Time // the worker began (Run)
	attached  time.Time // registered with the journal process
	connected time.Time // the first session's handshake answered
	// batches, changelogs and records replayed before caught up, and the
	// time spent applying them.
	batches, changelogs, records int
	replay                       time.Duration
	firstApplied                 time.Time // the first batch was applied
	// The first batch's phases: planning (the secondary's lookups
	// included), executing, committing the stime (syncfs on the secondary).
	plan, execute, commit time.Duration
	done                  bool // logged
}

// since is d's offset from the start, or 0 when t is not set.
func (c *catchUp) since(t time.Time) time.Duration {
	if t.IsZero() || c.started.IsZero() {
		return 0
	}
	return t.Sub(c.started)
}

// fields are the breakdown at now (the caught-up moment), for the log:
// offsets from the worker's start and the replay's totals.
func (c *catchUp) fields(now time.Time) []any {
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return []any{
		"worker_started", c.started.UTC().Format(time.RFC3339Nano),
		"attached_after", r(c.since(c.attached)),
		"connected_after", r(c.since(c.connected)),
		"first_batch_after", r(c.since(c.firstApplied)),
		"batches", c.batches, "changelogs", c.changelogs, "records", c.records,
		"replay", r(c.replay),
		"first_plan", r(c.plan), "first_execute", r(c.execute), "first_commit", r(c.commit),
		"caught_up_after", r(c.since(now)),
	}
}

// noteBatch adds one applied batch that began at start.
func (c *catchUp) noteBatch(start, end time.Time, changelogs, records int) {
	if c.done {
		return
	}
	c.batches++
	c.changelogs += changelogs
	c.records += records
	c.replay += end.Sub(start)
	if c.firstApplied.IsZero() {
		c.firstApplied = end
	}
}

// notePhases records the phases of a batch applied before the first one
// was noted.
func (c *catchUp) notePhases(plan, execute, commit time.Duration) {
	if c.done || !c.firstApplied.IsZero() {
		return
	}
	c.plan, c.execute, c.commit = plan, execute, commit
}
