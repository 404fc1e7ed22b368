package journal

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNoRoot reports a root index the journal does not have.
var ErrNoRoot = errors.New("journal: no such root")

// MaxRollover bounds the intervals SetRolloverInterval and RollOver take.
const MaxRollover = time.Hour

func (j *Journal) root(i int) (*rootState, error) {
	if i < 0 || i >= len(j.roots) {
		return nil, fmt.Errorf("%w: %d of %d", ErrNoRoot, i, len(j.roots))
	}
	return j.roots[i], nil
}

// rootAnd is root i, once d (what: named in the error) is checked to be
// within [0, MaxRollover].
func (j *Journal) rootAnd(i int, what string, d time.Duration) (*rootState, error) {
	r, err := j.root(i)
	if err != nil {
		return nil, err
	}
	if d < 0 || d > MaxRollover {
		return nil, fmt.Errorf("journal: %s %s out of [0, %s]", what, d, MaxRollover)
	}
	return r, nil
}

// SetRolloverInterval makes root i's changelogs close at most d after
// their first record (0: Config.RolloverInterval), from the open one on.
// It is safe to call from any goroutine, before or while the journal runs.
func (j *Journal) SetRolloverInterval(i int, d time.Duration) error {
	r, err := j.rootAnd(i, "rollover interval", d)
	if err != nil {
		return err
	}
	r.rollover.Store(int64(d))
	j.poke()
	return nil
}

// RollOver asks that root i's open changelog — or, when none is open, the
// next one — be closed at most within after its first record (0: as soon
// as it has one), whatever the rollover interval. A consumer that attaches
// or has caught up asks for it so that the changes it waits for are not
// held in the open window until the next timed rollover. The request holds
// until a changelog of the root is written; a later one replaces it. It is
// safe to call from any goroutine.
func (j *Journal) RollOver(i int, within time.Duration) error {
	r, err := j.rootAnd(i, "rollover within", within)
	if err != nil {
		return err
	}
	r.eager.Store(int64(within))
	j.poke()
	return nil
}

type flushReq struct {
	root int
	at   int64 // when the processor received it
	done chan error
}

// flushWait bounds how long a Flush waits for the events queued before it
// to be processed (under a heavy churn the kernel queue is seldom empty):
// past it the open changelog is written with what was processed.
const flushWait = 200 * time.Millisecond

// flushPoll is a channel that fires while Flush requests wait (nil, which
// blocks, when none does).
func (p *processor) flushPoll() <-chan time.Time {
	if len(p.flushes) == 0 {
		return nil
	}
	return time.After(5 * time.Millisecond)
}

// serveFlushes serves the Flush requests whose events are all processed
// (vouch() has passed the request), or that waited flushWait.
func (p *processor) serveFlushes() {
	v := p.vouch()
	now := time.Now().UnixNano()
	keep := p.flushes[:0]
	for _, req := range p.flushes {
		if flushReady(v, now, req.at, int64(flushWait)) {
			req.done <- p.flushNow(req.root)
			continue
		}
		keep = append(keep, req)
	}
	clear(p.flushes[len(keep):])
	p.flushes = keep
}

// flushReady is the pure rule of when a Flush asked at `at` is served,
// given v = vouch() at now.
func flushReady(v, now, at, wait int64) bool {
	return v >= at || now-at >= wait
}

// ErrNotRunning reports a Flush to a journal that is not running.
var ErrNotRunning = errors.New("journal: not running")

// Flush writes root i's open changelog now, if it holds records, and
// returns once it is durable (or there was nothing to write): a consumer
// that attaches lists, right after, every change the journal read before
// the call. It waits for the journal's processor (ctx bounds the wait).
func (j *Journal) Flush(ctx context.Context, i int) error {
	if _, err := j.root(i); err != nil {
		return err
	}
	req := flushReq{root: i, done: make(chan error, 1)}
	select {
	case j.flushReq <- req:
	case <-j.exited:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-j.exited:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushNow writes root i's window if it has records (the processor's side
// of Flush).
func (p *processor) flushNow(i int) error {
	r := p.j.roots[i]
	if len(r.win.recs) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	v := p.vouch()
	err := p.flush(r, now, v, false)
	p.updateWatermark(v)
	if err == nil {
		p.signal()
	}
	return err
}

// poke wakes the processor to look at the deadlines again.
func (j *Journal) poke() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// rolloverOf is root r's rollover interval now.
func (j *Journal) rolloverOf(r *rootState) int64 {
	if d := r.rollover.Load(); d > 0 {
		return d
	}
	return int64(j.cfg.RolloverInterval)
}

// windowDeadline is the pure rule of when a window must be written: at
// most rollover after it opened, quiet after its last record, within after
// it opened when a RollOver is pending (eager >= 0), and never before a
// failed write's retry time.
func windowDeadline(opened, last, retryAt, rollover, quiet, eager int64) int64 {
	d := min(opened+rollover, last+quiet)
	if eager >= 0 {
		d = min(d, opened+eager)
	}
	return max(d, retryAt)
}
