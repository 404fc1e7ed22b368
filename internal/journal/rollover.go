package journal

import (
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

// SetRolloverInterval makes root i's changelogs close at most d after
// their first record (0: Config.RolloverInterval), from the open one on.
// It is safe to call from any goroutine, before or while the journal runs.
func (j *Journal) SetRolloverInterval(i int, d time.Duration) error {
	r, err := j.root(i)
	if err != nil {
		return err
	}
	if d < 0 || d > MaxRollover {
		return fmt.Errorf("journal: rollover interval %s out of [0, %s]", d, MaxRollover)
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
	r, err := j.root(i)
	if err != nil {
		return err
	}
	if within < 0 || within > MaxRollover {
		return fmt.Errorf("journal: rollover within %s out of [0, %s]", within, MaxRollover)
	}
	r.eager.Store(int64(within))
	j.poke()
	return nil
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
