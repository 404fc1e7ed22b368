package continuous

import (
	"slices"
	"testing"
	"time"
)

func TestIdleWithin(t *testing.T) {
	for _, c := range []struct{ rollover, want time.Duration }{
		{0, idleRollover},
		{time.Second, idleRollover},
		{50 * time.Millisecond, 50 * time.Millisecond},
	} {
		if got := idleWithin(c.rollover); got != c.want {
			t.Errorf("idleWithin(%s) = %s, want %s", c.rollover, got, c.want)
		}
	}
}

func TestCatchUpBreakdown(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := catchUp{started: t0, attached: t0.Add(10 * time.Millisecond), connected: t0.Add(60 * time.Millisecond)}
	c.notePhases(time.Millisecond, 2*time.Millisecond, 3*time.Millisecond)
	c.noteBatch(t0.Add(60*time.Millisecond), t0.Add(400*time.Millisecond), 2, 9000)
	c.notePhases(time.Hour, time.Hour, time.Hour) // a later batch's: not the first's
	c.noteBatch(t0.Add(400*time.Millisecond), t0.Add(500*time.Millisecond), 1, 10)
	got := c.fields(t0.Add(510 * time.Millisecond))
	want := []any{"worker_started", "2026-01-02T03:04:05Z", "attached_after", "10ms", "connected_after", "60ms", "first_batch_after", "400ms",
		"batches", 2, "changelogs", 3, "records", 9010, "replay", "440ms", "first_plan", "1ms", "first_execute", "2ms", "first_commit", "3ms",
		"caught_up_after", "510ms"}
	if !slices.Equal(got, want) {
		t.Errorf("fields\n got %v\nwant %v", got, want)
	}
	c.done = true
	c.noteBatch(t0, t0.Add(time.Hour), 5, 5)
	if c.batches != 2 {
		t.Errorf("a batch after caught up was counted")
	}
}
