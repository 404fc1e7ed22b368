package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georep/georep/internal/continuous"
	"github.com/georep/georep/internal/metrics"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/status"
)

// TestStatusListsNewSession: a session created and started without telling
// the daemon shows in the plain status at once, not after the next rescan
// or a `georep status NAME`.
func TestStatusListsNewSession(t *testing.T) {
	td := startDaemon(t, func(o *Options) { o.RescanInterval = time.Hour })
	td.create(t, "fresh", session.Started)
	resp, err := Call(context.Background(), td.dir, Request{Op: OpStatus})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Reports) != 1 || resp.Reports[0].Session != "fresh" {
		t.Fatalf("plain status lists %+v", resp.Reports)
	}
}

// syncBuffer is a log sink tests may read while the daemon writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCheckpointCompletedLoggedOnce: "checkpoint completed" is logged when
// the checkpoint completes, not on every state change, and never for a
// checkpoint that was reset.
func TestCheckpointCompletedLoggedOnce(t *testing.T) {
	var logs syncBuffer
	td := startDaemon(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	td.create(t, "cp", session.Created)
	td.set(t, "cp", func(s *session.Session) error {
		s.State, s.Checkpoint = session.Started, time.Now().Add(-time.Minute)
		return nil
	})
	td.waitFor(t, "cp", "checkpoint completed", 10*time.Second, func(r status.Report) bool { return r.CheckpointCompleted })
	for _, st := range []session.State{session.Paused, session.Started, session.Paused, session.Started} {
		td.set(t, "cp", func(s *session.Session) error { s.State = st; return nil })
	}
	td.set(t, "cp", func(s *session.Session) error { s.Checkpoint = time.Time{}; return nil })
	td.set(t, "cp", func(s *session.Session) error { s.State = session.Paused; return nil })
	td.set(t, "cp", func(s *session.Session) error { s.State = session.Started; return nil })
	td.waitFor(t, "cp", "active", 10*time.Second, func(r status.Report) bool { return r.Status == status.Active })
	out := logs.String()
	if n := strings.Count(out, "checkpoint completed"); n != 1 {
		t.Errorf("%d \"checkpoint completed\" lines:\n%s", n, out)
	}
	if strings.Contains(out, "0001-01-01") {
		t.Errorf("a zero checkpoint was logged:\n%s", out)
	}
}

// TestBatchHistogramsObserved: each job the worker reports applied is
// observed once in the apply-time and lag histograms.
func TestBatchHistogramsObserved(t *testing.T) {
	td := startDaemon(t, func(o *Options) {
		o.Run = func(ctx context.Context, cfg continuous.Config, report continuous.Reporter) error {
			for i := int64(1); i <= 3; i++ {
				report(continuous.Status{State: continuous.StateActive, Applied: i, LastApplySeconds: 0.5, LastApplyLagSeconds: 2})
				report(continuous.Status{State: continuous.StateActive, Applied: i, LastApplySeconds: 0.5, LastApplyLagSeconds: 2}) // no new job
			}
			<-ctx.Done()
			return nil
		}
	})
	td.create(t, "h", session.Started)
	td.set(t, "h", func(*session.Session) error { return nil })
	deadline := time.Now().Add(10 * time.Second)
	var m map[string]metrics.Sample
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + td.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, err = metrics.Parse(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		// One scrape gathers the collectors concurrently, so it may see
		// the third apply but not yet its lag: wait for both.
		if m[`georep_batch_apply_seconds_count{session="h"}`].Value >= 3 && m[`georep_change_lag_seconds_count{session="h"}`].Value >= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := m[`georep_batch_apply_seconds_count{session="h"}`].Value; c != 3 {
		t.Errorf("apply histogram count %v, want 3", c)
	}
	if s := m[`georep_change_lag_seconds_sum{session="h"}`].Value; s != 6 {
		t.Errorf("lag histogram sum %v, want 6", s)
	}
	if _, ok := m["process_cpu_seconds_total"]; !ok {
		t.Error("no process collector")
	}
}
