package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georep/georep/internal/continuous"
	"github.com/georep/georep/internal/metrics"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/status"
)

// fakeWorker stands for continuous.Run: it fails while broken is set, else
// reports Active (or Paused) with an advancing stime until stopped.
type fakeWorker struct {
	broken  atomic.Bool
	faulty  atomic.Bool // report Faulty (a lost secondary) instead of failing
	runs    atomic.Int32
	running atomic.Int32
	mu      sync.Mutex
	last    continuous.Config
}

func (f *fakeWorker) Run(ctx context.Context, cfg continuous.Config, report continuous.Reporter) error {
	f.runs.Add(1)
	f.mu.Lock()
	f.last = cfg
	f.mu.Unlock()
	report(continuous.Status{State: continuous.StateInitializing, Crawl: continuous.CrawlHybrid})
	if f.broken.Load() {
		return errors.New("secondary unreachable: connection refused")
	}
	f.running.Add(1)
	defer f.running.Add(-1)
	for {
		st := continuous.Status{State: continuous.StateActive, Crawl: continuous.CrawlChangelog, Stime: time.Now().UnixNano(),
			LastSynced: time.Now(), FilesSynced: 3, BytesSynced: 300, JournalMode: "fanotify", JournalEvents: 42}
		if cfg.Paused != nil && cfg.Paused() {
			st.State = continuous.StatePaused
		}
		if f.faulty.Load() {
			st = continuous.Status{State: continuous.StateFaulty, LastError: "ssh: connect to host: Connection refused", Crawl: continuous.CrawlHybrid}
		}
		report(st)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type testDaemon struct {
	dir     string
	store   session.Store
	fw      *fakeWorker
	metrics string
	cancel  context.CancelFunc
	done    chan error
}

func startDaemon(t *testing.T, mod func(*Options)) *testDaemon {
	t.Helper()
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "gd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	td := &testDaemon{dir: dir, store: session.Store{Root: dir}, fw: &fakeWorker{}, done: make(chan error, 1)}
	ready := make(chan string, 1)
	opts := Options{StateDir: dir, MetricsListen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Run: td.fw.Run, MaxBackoff: 100 * time.Millisecond, InitialBackoff: 20 * time.Millisecond, FaultyAfter: 3,
		SlowRetry: 300 * time.Millisecond, StatusInterval: 50 * time.Millisecond, RescanInterval: 100 * time.Millisecond,
		Ready: func(a string) { ready <- a }}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	td.cancel = cancel
	go func() { td.done <- Run(ctx, opts) }()
	select {
	case td.metrics = <-ready:
	case err := <-td.done:
		t.Fatalf("daemon: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not ready")
	}
	t.Cleanup(td.stop)
	return td
}

func (td *testDaemon) stop() {
	td.cancel()
	select {
	case <-td.done:
	case <-time.After(10 * time.Second):
	}
}

func (td *testDaemon) create(t *testing.T, name string, st session.State) {
	t.Helper()
	src := filepath.Join(td.dir, "src-"+name)
	os.MkdirAll(src, 0o755)
	if err := td.store.Create(&session.Session{Name: name, Primary: src, Secondary: filepath.Join(td.dir, "dst-"+name), State: st}); err != nil {
		t.Fatal(err)
	}
}

func (td *testDaemon) set(t *testing.T, name string, fn func(*session.Session) error) {
	t.Helper()
	if _, err := td.store.Update(name, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := Call(context.Background(), td.dir, Request{Op: OpReload, Session: name}); err != nil {
		t.Fatal(err)
	}
}

func (td *testDaemon) report(t *testing.T, name string) status.Report {
	t.Helper()
	resp, err := Call(context.Background(), td.dir, Request{Op: OpStatus, Session: name})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Reports) != 1 {
		t.Fatalf("%d reports", len(resp.Reports))
	}
	return resp.Reports[0]
}

func (td *testDaemon) waitFor(t *testing.T, name, what string, timeout time.Duration, ok func(status.Report) bool) status.Report {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var r status.Report
	for time.Now().Before(deadline) {
		if r = td.report(t, name); ok(r) {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %+v", what, r)
	return r
}

func TestLifecycle(t *testing.T) {
	td := startDaemon(t, nil)
	fi, err := os.Stat(td.store.SocketPath())
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v %v", fi.Mode(), err)
	}
	if resp, err := Call(context.Background(), td.dir, Request{Op: OpPing}); err != nil || resp.PID != os.Getpid() {
		t.Fatalf("ping %+v %v", resp, err)
	}
	// A second daemon on the same state dir is refused.
	if err := Run(context.Background(), Options{StateDir: td.dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil ||
		!strings.Contains(err.Error(), "another georep daemon") {
		t.Fatalf("second daemon: %v", err)
	}

	td.create(t, "s1", session.Created)
	if r := td.report(t, "s1"); r.Status != status.Created || !r.Live {
		t.Fatalf("created: %+v", r)
	}
	td.set(t, "s1", func(s *session.Session) error { s.State = session.Started; return s.Set("ignore-deletes", "true") })
	r := td.waitFor(t, "s1", "Active", 5*time.Second, func(r status.Report) bool { return r.Status == status.Active })
	if r.CrawlStatus != continuous.CrawlChangelog || r.LastSynced == nil || r.FilesSynced != 3 {
		t.Errorf("active report %+v", r)
	}
	td.fw.mu.Lock()
	cfg := td.fw.last
	td.fw.mu.Unlock()
	if cfg.FilterJob == nil || cfg.Dir != td.store.Dir("s1") || cfg.Resync == nil || cfg.Paused == nil {
		t.Errorf("worker config %+v", cfg)
	}

	// Pause: the call returns once the worker holds.
	td.set(t, "s1", func(s *session.Session) error { s.State = session.Paused; return nil })
	if r := td.report(t, "s1"); r.Status != status.Paused {
		t.Errorf("after pause returned: %s", r.Status)
	}
	runs := td.fw.runs.Load()
	td.set(t, "s1", func(s *session.Session) error { s.State = session.Started; return nil })
	if r := td.report(t, "s1"); r.Status != status.Active {
		t.Errorf("after resume returned: %s", r.Status)
	}
	if td.fw.runs.Load() != runs {
		t.Errorf("pause/resume restarted the worker")
	}
	// A live key does not restart; another does.
	td.set(t, "s1", func(s *session.Session) error { return s.Set("log-level", "debug") })
	if td.fw.runs.Load() != runs {
		t.Errorf("log-level restarted the worker")
	}
	td.set(t, "s1", func(s *session.Session) error { return s.Set("sync-jobs", "2") })
	td.waitFor(t, "s1", "Active after a restart", 5*time.Second, func(r status.Report) bool { return r.Status == status.Active })
	if td.fw.runs.Load() != runs+1 {
		t.Errorf("sync-jobs change: %d runs, want %d", td.fw.runs.Load(), runs+1)
	}

	// A checkpoint in the past completes at once; one in the future later.
	cp := time.Now().Add(300 * time.Millisecond)
	td.set(t, "s1", func(s *session.Session) error { s.Checkpoint = cp; return nil })
	r = td.waitFor(t, "s1", "checkpoint completed", 5*time.Second, func(r status.Report) bool { return r.CheckpointCompleted })
	if !r.CheckpointTime.Equal(cp) || r.CheckpointCompletionTime == nil || r.CheckpointCompletionTime.Before(cp) {
		t.Errorf("checkpoint %+v", r)
	}

	// Metrics.
	resp, err := http.Get("http://" + td.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.Parse(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if m[`georep_worker_state{session="s1",state="Active"}`].Value != 1 || m[`georep_checkpoint_completed{session="s1"}`].Value != 1 ||
		m[`georep_journal_events_total{session="s1"}`].Value != 42 {
		t.Errorf("metrics: %v", m)
	}

	// Stop: the worker ends before the call returns; status.json says so.
	td.set(t, "s1", func(s *session.Session) error { s.State = session.Stopped; return nil })
	if n := td.fw.running.Load(); n != 0 {
		t.Errorf("%d workers still running after stop", n)
	}
	if r := td.report(t, "s1"); r.Status != status.Stopped {
		t.Errorf("after stop: %+v", r)
	}
	var saved status.Report
	td.waitForFile(t, func() bool {
		b, _ := os.ReadFile(td.store.StatusPath("s1"))
		return strings.Contains(string(b), `"status": "Stopped"`) && strings.Contains(string(b), `"checkpoint_completed": true`)
	})
	_ = saved

	// Delete: the daemon forgets it.
	if err := td.store.Delete("s1"); err != nil {
		t.Fatal(err)
	}
	Call(context.Background(), td.dir, Request{Op: OpReload, Session: "s1"})
	if _, err := Call(context.Background(), td.dir, Request{Op: OpStatus, Session: "s1"}); err == nil {
		t.Errorf("deleted session still reported")
	}
}

func (td *testDaemon) waitForFile(t *testing.T, ok func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if ok() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("status.json never showed the expected state")
}

// A failing worker is restarted with backoff, shows Faulty with its error,
// switches to slow retries, and comes back by itself once the cause is
// fixed. A worker stuck Faulty is restarted.
func TestMonitor(t *testing.T) {
	td := startDaemon(t, func(o *Options) { o.FaultyRestart = 400 * time.Millisecond })
	td.fw.broken.Store(true)
	td.create(t, "s2", session.Started)
	Call(context.Background(), td.dir, Request{Op: OpReload, Session: "s2"})
	r := td.waitFor(t, "s2", "Faulty after repeated failures", 5*time.Second, func(r status.Report) bool {
		return r.Status == status.Faulty && r.WorkerRestarts >= 3
	})
	if !strings.Contains(r.LastError, "connection refused") || r.LastErrorTime == nil {
		t.Errorf("faulty report %+v", r)
	}
	// Slow retries now: few runs in a short while.
	n := td.fw.runs.Load()
	time.Sleep(250 * time.Millisecond)
	if d := td.fw.runs.Load() - n; d > 1 {
		t.Errorf("%d restarts in 250ms after going slow", d)
	}
	td.fw.broken.Store(false)
	r = td.waitFor(t, "s2", "Active once fixed", 5*time.Second, func(r status.Report) bool { return r.Status == status.Active })
	if !strings.Contains(r.LastError, "connection refused") {
		t.Errorf("last error not kept after recovery: %+v", r)
	}

	// Faulty for long inside a running worker: restarted.
	n = td.fw.runs.Load()
	td.fw.faulty.Store(true)
	td.waitFor(t, "s2", "restart of a worker stuck Faulty", 5*time.Second, func(status.Report) bool { return td.fw.runs.Load() > n })
	td.fw.faulty.Store(false)
	td.waitFor(t, "s2", "Active", 5*time.Second, func(r status.Report) bool { return r.Status == status.Active })
}

// Sessions started before the daemon are run when it starts; SIGTERM-like
// shutdown stops them and records Stopped.
func TestStartupAndShutdown(t *testing.T) {
	dir, _ := os.MkdirTemp("", "gd")
	defer os.RemoveAll(dir)
	st := session.Store{Root: dir}
	os.MkdirAll(filepath.Join(dir, "p"), 0o755)
	for _, n := range []string{"a", "b"} {
		if err := st.Create(&session.Session{Name: n, Primary: filepath.Join(dir, "p"), Secondary: "/x/" + n, State: session.Started}); err != nil {
			t.Fatal(err)
		}
	}
	st.Update("b", func(s *session.Session) error { s.State = session.Paused; return nil })
	fw := &fakeWorker{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		done <- Run(ctx, Options{StateDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Run: fw.Run,
			StatusInterval: 20 * time.Millisecond, Ready: func(a string) { ready <- a }})
	}()
	<-ready
	deadline := time.Now().Add(5 * time.Second)
	for fw.running.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := Call(ctx, dir, Request{Op: OpStatus})
	if err != nil || len(resp.Reports) != 2 {
		t.Fatalf("%+v %v", resp, err)
	}
	// A config edited behind the daemon's back is noticed by the rescan.
	st.Update("a", func(s *session.Session) error { s.State = session.Stopped; return nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fw.running.Load() != 0 {
		t.Errorf("workers left running")
	}
	for _, n := range []string{"a", "b"} {
		b, _ := os.ReadFile(st.StatusPath(n))
		if !strings.Contains(string(b), `"status": "Stopped"`) {
			t.Errorf("%s status.json after shutdown: %s", n, b)
		}
	}
	if _, err := os.Stat(st.SocketPath()); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	if _, err := Call(context.Background(), dir, Request{Op: OpPing}); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("ping after shutdown: %v", err)
	}
}

func TestResyncPath(t *testing.T) {
	for in, want := range map[string]string{"": "", ".": "", "a/b": "a/b", "a/../b": "b", "/srv/data/x": "x", "/srv/data": ""} {
		if got, err := ResyncPath("/srv/data", in); err != nil || got != want {
			t.Errorf("ResyncPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"..", "../x", "/srv/other", "/srv/data/../x"} {
		if got, err := ResyncPath("/srv/data", bad); err == nil {
			t.Errorf("ResyncPath(%q) = %q", bad, got)
		}
	}
}

func TestSubtreeRecords(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(root, "a", "b", "f"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "a", "g"), []byte("y"), 0o644)
	os.Symlink("a", filepath.Join(root, "link"))
	recs, err := subtreeRecords(context.Background(), root, "a", nil)
	if err != nil {
		t.Skipf("file handles here? %v", err)
	}
	var names []string
	for _, r := range recs {
		names = append(names, string(r.Type)+":"+r.Name)
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"E:a", "M:a", "E:b", "E:f", "D:f", "M:f", "E:g", "D:g"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("records %s lack %s", got, want)
		}
	}
	if strings.Contains(got, "D:a") || strings.Contains(got, "D:b") {
		t.Errorf("data records for directories: %s", got)
	}
	// Gone from the primary: just the slot.
	recs, err = subtreeRecords(context.Background(), root, "a/gone", nil)
	if err != nil || len(recs) != 1 || recs[0].Name != "gone" || recs[0].Parent == "" {
		t.Errorf("missing path: %+v %v", recs, err)
	}
	// Not through a symlink.
	if _, err := subtreeRecords(context.Background(), root, "link/b", nil); err == nil {
		t.Errorf("followed a symlink")
	}
}
