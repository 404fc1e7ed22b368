package continuous

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/worker"
)

func TestLagSeconds(t *testing.T) {
	s := int64(time.Second)
	for _, c := range []struct {
		now, oldest int64
		want        float64
	}{{10 * s, 0, 0}, {10 * s, 2 * s, 8}, {2 * s, 10 * s, 0}} {
		if got := lagSeconds(c.now, c.oldest); got != c.want {
			t.Errorf("lagSeconds(%d, %d) = %v, want %v", c.now, c.oldest, got, c.want)
		}
	}
}

func TestRemaining(t *testing.T) {
	job := &worker.Job{Plan: plan.Plan{Ops: make([]plan.Op, 3), NewFiles: []plan.NewFile{{Entry: &tree.Entry{Size: 100}}, {Entry: &tree.Entry{Size: 20}}}},
		Data: []worker.DataItem{{Entry: &tree.Entry{Size: 5}}}}
	if w := Remaining(job); w != (Work{Entries: 3, Files: 3, Bytes: 125}) {
		t.Errorf("Remaining = %+v", w)
	}
}

// TestPausedLagIsReal: a change waiting while the session is paused shows
// in the LAG, growing with its age (it used to read 0s).
func TestPausedLagIsReal(t *testing.T) {
	ts := startTestSession(t, nil)
	first := ts.waitFor(t, "the first sync", 20*time.Second, func(s Status) bool {
		return s.State == StateActive && s.Crawl == CrawlChangelog && s.Stime > 0
	})
	if first.JournalMode != "fanotify" {
		t.Skipf("no fanotify journal here (%s)", first.JournalMode)
	}
	ts.paused.Store(true)
	ts.waitFor(t, "Paused", 5*time.Second, func(s Status) bool { return s.State == StatePaused })
	os.WriteFile(filepath.Join(ts.src, "waiting"), []byte("held back"), 0o644)
	ts.waitFor(t, "the LAG to show the waiting change", 10*time.Second, func(s Status) bool {
		return s.State == StatePaused && s.LagSeconds >= 2
	})
	ts.paused.Store(false)
	ts.waitFor(t, "the change applied and the LAG back to 0", 10*time.Second, func(s Status) bool {
		_, err := os.Stat(filepath.Join(ts.dst, "waiting"))
		return err == nil && s.State == StateActive && s.LagSeconds == 0
	})
}

// TestInitialSyncProgress: during an initial sync (slowed by a bandwidth
// limit) the files synced grow, the remaining work and an ETA are shown,
// and the LAG grows from the session's start instead of standing still.
func TestInitialSyncProgress(t *testing.T) {
	ts := startTestSession(t, func(c *Config) {
		os.MkdirAll(filepath.Join(c.Worker.Source, "big"), 0o755)
		for i := range 40 {
			os.WriteFile(filepath.Join(c.Worker.Source, "big", fmt.Sprintf("f%02d", i)), bytes.Repeat([]byte{byte(i)}, 128<<10), 0o644)
		}
		c.Worker.BandwidthLimit = 1 << 20 // 5 MiB: about 5 s
		c.Worker.SyncJobs = 1
	})
	var sawFiles, sawRemaining, sawETA, sawLag bool
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		s := ts.status()
		if s.Stime > 0 && s.State == StateActive {
			break
		}
		if s.FilesSynced > 0 && s.RemainingFiles > 0 {
			sawFiles = true
		}
		if s.RemainingBytes > 0 {
			sawRemaining = true
		}
		if s.ETASeconds > 0 {
			sawETA = true
		}
		if s.LagSeconds >= 1 {
			sawLag = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !sawFiles || !sawRemaining || !sawETA || !sawLag {
		t.Errorf("during the initial sync: files synced grew %v, bytes remaining %v, ETA %v, LAG >= 1s %v (last %+v)",
			sawFiles, sawRemaining, sawETA, sawLag, ts.status())
	}
	// The crawl's job is counted applied (with its duration and lag) right
	// after its stime is recorded; later small batches may follow.
	var crawlApply Status
	ts.waitFor(t, "the crawl counted applied", 10*time.Second, func(s Status) bool {
		if s.Applied == 1 {
			crawlApply = s
		}
		return s.Applied >= 1
	})
	if crawlApply.Applied == 1 && (crawlApply.LastApplySeconds < 1 || crawlApply.LastApplyLagSeconds < crawlApply.LastApplySeconds) {
		t.Errorf("the initial crawl's apply time and lag: %+v", crawlApply)
	}
	if st := ts.status(); st.FilesSynced < 40 || st.RemainingFiles != 0 || st.ETASeconds != 0 {
		t.Errorf("after the initial sync: %+v", st)
	}
}

func TestRetryDelay(t *testing.T) {
	initial, maxB := 500*time.Millisecond, 30*time.Second
	b := initial
	var waits []time.Duration
	for range 8 { // a full disk: every attempt fails without progress
		var w time.Duration
		w, b = retryDelay(b, false, initial, maxB)
		waits = append(waits, w)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if w, _ := retryDelay(b, true, initial, maxB); w != initial {
		t.Errorf("after progress the wait is %v, want %v", w, initial)
	}
}

// TestConvergedCrawlClearsFailures: failures recorded earlier (a full disk,
// since freed) are no longer counted or kept once a crawl reconciles the
// whole tree without failing.
func TestConvergedCrawlClearsFailures(t *testing.T) {
	ts := startTestSession(t, func(c *Config) {
		os.MkdirAll(c.Dir, 0o700)
		old := []worker.Failure{{ID: "01", Path: "gone/a", Op: "DATA", Error: "no space left on device", Errno: 28},
			{ID: "02", Path: "gone/b", Op: "META", Error: "no space left on device", Errno: 28}}
		if err := state.WriteJSON(filepath.Join(c.Dir, "failures.json"), old); err != nil {
			t.Fatal(err)
		}
	})
	ts.waitFor(t, "the first sync, and the failures cleared", 20*time.Second, func(s Status) bool {
		return s.State == StateActive && s.Stime > 0 && s.Failures == 0
	})
	var left []worker.Failure
	if err := state.ReadJSON(filepath.Join(ts.dir, "failures.json"), &left); err != nil || len(left) != 0 {
		t.Errorf("failures.json still holds %d failures (%v)", len(left), err)
	}
}

// TestJournalAppliesExcludes: the journal's batches apply the same exclude
// rules as the crawl: new excluded entries do not travel, and an excluded
// name the secondary holds is kept when the primary's is deleted.
func TestJournalAppliesExcludes(t *testing.T) {
	ts := startTestSession(t, func(c *Config) {
		c.Worker.Excludes = []string{"/cache/", "*.tmp"}
		os.MkdirAll(filepath.Join(c.Worker.Source, "cache"), 0o755)
		os.WriteFile(filepath.Join(c.Worker.Source, "cache", "old"), []byte("x"), 0o644)
	})
	first := ts.waitFor(t, "the first sync", 20*time.Second, func(s Status) bool {
		return s.State == StateActive && s.Crawl == CrawlChangelog && s.Stime > 0
	})
	if first.JournalMode != "fanotify" {
		t.Skipf("no fanotify journal here (%s)", first.JournalMode)
	}
	if _, err := os.Stat(filepath.Join(ts.dst, "cache")); err == nil {
		t.Error("the crawl sent an excluded directory")
	}
	// The secondary holds an excluded name of its own.
	os.WriteFile(filepath.Join(ts.dst, "kept.tmp"), []byte("secondary's"), 0o644)
	os.MkdirAll(filepath.Join(ts.src, "sub"), 0o755)
	for _, p := range []string{"a.tmp", "sub/b.tmp", "cache/new", "kept.tmp"} {
		os.WriteFile(filepath.Join(ts.src, p), []byte("primary's"), 0o644)
	}
	os.Remove(filepath.Join(ts.src, "kept.tmp"))
	os.WriteFile(filepath.Join(ts.src, "sub", "ok"), []byte("y"), 0o644)
	ts.waitFor(t, "sub/ok on the secondary", 20*time.Second, func(Status) bool {
		_, err := os.Stat(filepath.Join(ts.dst, "sub", "ok"))
		return err == nil
	})
	ts.waitFor(t, "the batch done", 10*time.Second, func(s Status) bool { return s.PendingChangelogs == 0 && s.LagSeconds == 0 })
	for _, p := range []string{"a.tmp", "sub/b.tmp", "cache/new", "cache"} {
		if _, err := os.Stat(filepath.Join(ts.dst, p)); err == nil {
			t.Errorf("excluded %s reached the secondary", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(ts.dst, "kept.tmp")); err != nil || string(b) != "secondary's" {
		t.Errorf("the secondary's excluded kept.tmp: %q, %v", b, err)
	}
}
