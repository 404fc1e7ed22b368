package journal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/georep/georep/internal/changelog"
)

func TestWindowDeadline(t *testing.T) {
	const s = int64(time.Second)
	for _, c := range []struct {
		name                                          string
		opened, last, retryAt, rollover, quiet, eager int64
		want                                          int64
	}{
		{"rollover first", 0, 9 * s / 10, 0, s, s / 2, -1, s},
		{"quiet first", 0, s / 10, 0, s, s / 10, -1, s / 5},
		{"roll over at once", 10 * s, 10 * s, 0, s, s, 0, 10 * s},
		{"roll over within", 10 * s, 10 * s, 0, s, s, s / 5, 10*s + s/5},
		{"a pending RollOver does not delay", 0, 0, 0, s, s / 20, s / 5, s / 20},
		{"not before a retry", 0, 0, 3 * s, s, s / 20, 0, 3 * s},
	} {
		if got := windowDeadline(c.opened, c.last, c.retryAt, c.rollover, c.quiet, c.eager); got != c.want {
			t.Errorf("%s: deadline %d, want %d", c.name, got, c.want)
		}
	}
}

// RollOver closes the open changelog at once (the timed rollover is an
// hour away) and only once; SetRolloverInterval shortens the root's own.
func TestRollOverOnRequest(t *testing.T) {
	r := newRoot(t)
	h := startJournal(t, Config{Roots: []Root{r}, RolloverInterval: time.Hour, QuietInterval: time.Hour}, nil)
	files := func() int {
		l, err := changelog.List(r.Dir)
		must(t, err)
		return len(l)
	}
	write := func(name string) { must(t, os.WriteFile(filepath.Join(r.Path, name), []byte(name), 0o644)) }
	write("a")
	time.Sleep(300 * time.Millisecond)
	if n := files(); n != 0 {
		t.Fatalf("%d changelogs before any rollover, want 0", n)
	}
	asked := time.Now()
	must(t, h.j.RollOver(0, 0))
	waitRecords(t, r.Dir, "a after RollOver", func(recs []changelog.Record) bool { return entryNamed(recs, "a") })
	t.Logf("RollOver: a's changelog written %s after the request", time.Since(asked).Round(time.Millisecond))

	// Served: the next change waits again.
	write("b")
	time.Sleep(300 * time.Millisecond)
	if recs := allRecords(readChangelogs(t, r.Dir)); entryNamed(recs, "b") {
		t.Fatal("b was written without a rollover: the request was not cleared")
	}
	// Asked while the window is open: within bounds it from its first record.
	must(t, h.j.RollOver(0, 100*time.Millisecond))
	waitRecords(t, r.Dir, "b after RollOver within", func(recs []changelog.Record) bool { return entryNamed(recs, "b") })

	must(t, h.j.SetRolloverInterval(0, 100*time.Millisecond))
	write("c")
	waitRecords(t, r.Dir, "c after SetRolloverInterval", func(recs []changelog.Record) bool { return entryNamed(recs, "c") })

	// Flush: the change made before it is in a changelog when it returns.
	must(t, h.j.SetRolloverInterval(0, 0)) // back to the hour
	write("d")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	asked = time.Now()
	must(t, h.j.Flush(ctx, 0))
	if recs := allRecords(readChangelogs(t, r.Dir)); !entryNamed(recs, "d") {
		t.Fatal("d is not in a changelog when Flush returned")
	}
	t.Logf("Flush: returned %s after the request", time.Since(asked).Round(time.Millisecond))
	must(t, h.j.Flush(ctx, 0)) // nothing open: returns at once
	if err := h.j.Flush(ctx, 3); !errors.Is(err, ErrNoRoot) {
		t.Errorf("Flush of root 3 of 1: %v, want ErrNoRoot", err)
	}

	if err := h.j.RollOver(1, 0); !errors.Is(err, ErrNoRoot) {
		t.Errorf("RollOver of root 1 of 1: %v, want ErrNoRoot", err)
	}
	if err := h.j.RollOver(0, -time.Second); err == nil {
		t.Error("RollOver within -1s: no error")
	}
	if err := h.j.SetRolloverInterval(0, 2*MaxRollover); err == nil {
		t.Error("SetRolloverInterval of 2h: no error")
	}
}

func TestFlushReady(t *testing.T) {
	for _, c := range []struct {
		v, now, at, wait int64
		want             bool
	}{
		{v: 100, now: 100, at: 90, wait: 50, want: true}, // every event before it processed
		{v: 80, now: 100, at: 90, wait: 50, want: false}, // some may still be queued
		{v: 80, now: 140, at: 90, wait: 50, want: true},  // waited long enough
		{v: 90, now: 90, at: 90, wait: 50, want: true},
	} {
		if got := flushReady(c.v, c.now, c.at, c.wait); got != c.want {
			t.Errorf("flushReady(%+v) = %v", c, got)
		}
	}
}
