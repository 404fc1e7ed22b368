package continuous

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/transport"
	"github.com/georep/georep/internal/worker"
)

// session runs continuous.Run on a fresh local pair in the background and
// keeps the last status.
type testSession struct {
	src, dst, dir string
	mu            sync.Mutex
	st            Status
	paused        atomic.Bool
	cancel        context.CancelFunc
	done          chan error
}

func startTestSession(t *testing.T, mod func(*Config)) *testSession {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the change journal (fanotify) needs root")
	}
	base := t.TempDir()
	ts := &testSession{src: filepath.Join(base, "src"), dst: filepath.Join(base, "dst"), dir: filepath.Join(base, "state"), done: make(chan error, 1)}
	for _, d := range []string{ts.src, ts.dst} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(ts.src, "a"), []byte("hello"), 0o644)
	dst, err := transport.ParseDestination(ts.dst)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Worker: worker.Config{Source: ts.src, Dest: dst}, Dir: ts.dir,
		RolloverInterval: 200 * time.Millisecond, ChangeInterval: 200 * time.Millisecond, Paused: ts.paused.Load}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() {
		ts.done <- Run(ctx, cfg, func(s Status) {
			ts.mu.Lock()
			ts.st = s
			ts.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-ts.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ts
}

func (ts *testSession) status() Status {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.st
}

func (ts *testSession) waitFor(t *testing.T, what string, timeout time.Duration, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if st := ts.status(); ok(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; status %+v", what, ts.status())
	return Status{}
}

func secondaryStime(t *testing.T, dst string) int64 {
	b, err := os.ReadFile(filepath.Join(dst, ".georep", "stime"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// On an idle tree the stime keeps up with the clock (so that a checkpoint
// set "now" completes without any change), on both sides; a paused session
// does not advance it.
func TestIdleStimeAdvances(t *testing.T) {
	ts := startTestSession(t, func(c *Config) { c.IdleStimeInterval = 500 * time.Millisecond })
	first := ts.waitFor(t, "the first sync", 20*time.Second, func(s Status) bool {
		return s.State == StateActive && s.Crawl == CrawlChangelog && s.Stime > 0
	})
	if first.JournalMode != "fanotify" {
		t.Skipf("no fanotify journal here (%s)", first.JournalMode)
	}
	// No change at all: the stime still moves past a point set now.
	mark := time.Now().UnixNano()
	st := ts.waitFor(t, "the stime to pass an idle checkpoint", 10*time.Second, func(s Status) bool { return s.Stime >= mark })
	if lag := time.Since(time.Unix(0, st.Stime)); lag > 3*time.Second {
		t.Errorf("stime %v behind the clock while idle", lag)
	}
	if sec := secondaryStime(t, ts.dst); sec < mark {
		t.Errorf("the secondary's stime %d was not advanced (want >= %d)", sec, mark)
	}
	if b, err := os.ReadFile(filepath.Join(ts.dir, "stime")); err != nil || !strings.HasPrefix(string(b), strconv.FormatInt(st.Stime, 10)[:10]) {
		t.Errorf("local stime file %q (err %v), status stime %d", b, err, st.Stime)
	}

	// Paused: no advance.
	ts.paused.Store(true)
	ts.waitFor(t, "Paused", 5*time.Second, func(s Status) bool { return s.State == StatePaused })
	held := ts.status().Stime
	time.Sleep(1500 * time.Millisecond)
	if now := ts.status().Stime; now != held {
		t.Errorf("paused session advanced its stime from %d to %d", held, now)
	}
	// A change made while paused: after resume it is applied before the
	// stime passes it.
	os.WriteFile(filepath.Join(ts.src, "b"), []byte("while paused"), 0o644)
	changed := time.Now().UnixNano()
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(ts.dst, "b")); err == nil {
		t.Errorf("a change made while paused reached the secondary")
	}
	ts.paused.Store(false)
	ts.waitFor(t, "the stime to pass the paused change", 10*time.Second, func(s Status) bool { return s.Stime >= changed })
	if b, err := os.ReadFile(filepath.Join(ts.dst, "b")); err != nil || string(b) != "while paused" {
		t.Errorf("after resume the secondary has %q (err %v)", b, err)
	}
}

// A negative IdleStimeInterval keeps the old behaviour: the stime moves only
// with changelogs.
func TestIdleStimeDisabled(t *testing.T) {
	ts := startTestSession(t, func(c *Config) { c.IdleStimeInterval = -1 })
	first := ts.waitFor(t, "the first sync", 20*time.Second, func(s Status) bool {
		return s.State == StateActive && s.Crawl == CrawlChangelog && s.Stime > 0
	})
	if first.JournalMode != "fanotify" {
		t.Skipf("no fanotify journal here (%s)", first.JournalMode)
	}
	time.Sleep(1500 * time.Millisecond)
	if st := ts.status(); st.Stime != first.Stime {
		t.Errorf("stime moved from %d to %d with the idle advance disabled", first.Stime, st.Stime)
	}
}

// An entry the secondary refuses is recorded in failures.json and counted;
// once the cause is gone, a resync re-sends it and clears the record.
func TestResyncClearsFailures(t *testing.T) {
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		t.Skip("chattr not found")
	}
	resync := make(chan ResyncRequest)
	ts := startTestSession(t, func(c *Config) { c.Resync = resync })
	os.Mkdir(filepath.Join(ts.src, "d"), 0o755)
	ts.waitFor(t, "the first sync", 20*time.Second, func(s Status) bool {
		_, err := os.Stat(filepath.Join(ts.dst, "d"))
		return s.State == StateActive && s.Crawl == CrawlChangelog && err == nil
	})
	if out, err := exec.Command(chattr, "+i", filepath.Join(ts.dst, "d")).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command(chattr, "-i", filepath.Join(ts.dst, "d")).Run() })
	os.WriteFile(filepath.Join(ts.src, "d", "x"), []byte("x"), 0o644)
	ts.waitFor(t, "a failure", 10*time.Second, func(s Status) bool { return s.Failures > 0 })
	var recorded []worker.Failure
	if err := state.ReadJSON(filepath.Join(ts.dir, "failures.json"), &recorded); err != nil || len(recorded) == 0 {
		t.Fatalf("failures.json: %v %v", recorded, err)
	}
	if recorded[0].Path != "d/x" {
		t.Errorf("failure recorded for %q, want d/x: %+v", recorded[0].Path, recorded[0])
	}
	// Still failing: the resync keeps the record (once).
	done := make(chan ResyncResult, 1)
	resync <- ResyncRequest{Path: "d", Done: done}
	res := <-done
	var now []worker.Failure
	state.ReadJSON(filepath.Join(ts.dir, "failures.json"), &now)
	t.Logf("recorded %+v; after a failing resync %+v", recorded, now)
	if res.Err != nil || res.Failures == 0 || res.Cleared != 0 {
		t.Errorf("resync while failing: %+v", res)
	}
	exec.Command(chattr, "-i", filepath.Join(ts.dst, "d")).Run()
	resync <- ResyncRequest{Path: "d", Done: done}
	if res := <-done; res.Err != nil || res.Failures != 0 || res.Cleared != len(recorded) {
		t.Errorf("resync after the fix: %+v (recorded %d)", res, len(recorded))
	}
	if b, err := os.ReadFile(filepath.Join(ts.dst, "d", "x")); err != nil || string(b) != "x" {
		t.Errorf("d/x on the secondary: %q %v", b, err)
	}
	var left []worker.Failure
	state.ReadJSON(filepath.Join(ts.dir, "failures.json"), &left)
	if len(left) != 0 || ts.status().Failures != 0 {
		t.Errorf("failures left after the resync: %+v (status %d)", left, ts.status().Failures)
	}
}

func TestUnderPath(t *testing.T) {
	for _, c := range []struct {
		p, dir string
		want   bool
	}{{"a/b", "", true}, {"a", "a", true}, {"a/b", "a", true}, {"ab", "a", false}, {"b/a", "a", false}, {"a", "a/b", false}} {
		if got := underPath(c.p, c.dir); got != c.want {
			t.Errorf("underPath(%q, %q) = %v", c.p, c.dir, got)
		}
	}
}
