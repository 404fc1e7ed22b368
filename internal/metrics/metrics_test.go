package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/status"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func scrape(t *testing.T, m *Metrics) (map[string]Sample, string) {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	got, err := Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return got, ct
}

func TestReportMetrics(t *testing.T) {
	synced := time.Unix(1700000000, 500000000)
	cp := time.Unix(1699999999, 0)
	reports := []status.Report{
		{Session: "backup", Status: status.Active, LagSeconds: 1.5, Entry: 3, Data: 2, Meta: 1, FilesSynced: 10, BytesSynced: 4096,
			Failures: 1, JournalEvents: 100, JournalOverflows: 1, Crawls: 2, CrawlReasons: map[string]int64{status.CrawlFirstSync: 1, status.CrawlOverflow: 1}, StimeNS: synced.UnixNano(), LastSynced: &synced,
			CheckpointTime: &cp, CheckpointCompleted: true, RemainingFiles: 7, RemainingBytes: 700, ETASeconds: 3.5},
		{Session: `we"ird\name`, Status: status.Faulty},
	}
	m := New(func() []status.Report { return reports })
	got, ct := scrape(t, m)
	if !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("content type %q", ct)
	}
	want := map[string]float64{
		`georep_lag_seconds{session="backup"}`:                          1.5,
		`georep_pending_entries{session="backup"}`:                      3,
		`georep_pending_data{session="backup"}`:                         2,
		`georep_pending_meta{session="backup"}`:                         1,
		`georep_synced_files_total{session="backup"}`:                   10,
		`georep_synced_bytes_total{session="backup"}`:                   4096,
		`georep_failures{session="backup"}`:                             1,
		`georep_journal_events_total{session="backup"}`:                 100,
		`georep_journal_overflows_total{session="backup"}`:              1,
		`georep_crawls_total{reason="first sync",session="backup"}`:     1,
		`georep_crawls_total{reason="queue overflow",session="backup"}`: 1,
		`georep_crawls_total{reason="resync",session="backup"}`:         0,
		`georep_last_synced_timestamp_seconds{session="backup"}`:        1700000000.5,
		`georep_checkpoint_completed{session="backup"}`:                 1,
		`georep_remaining_files{session="backup"}`:                      7,
		`georep_remaining_bytes{session="backup"}`:                      700,
		`georep_eta_seconds{session="backup"}`:                          3.5,
		`georep_worker_state{session="backup",state="Active"}`:          1,
		`georep_worker_state{session="backup",state="Faulty"}`:          0,
		`georep_worker_state{session="we\"ird\\name",state="Faulty"}`:   1,
		`georep_checkpoint_completed{session="we\"ird\\name"}`:          0,
		`georep_sessions`: 2,
	}
	for k, v := range want {
		s, ok := got[k]
		if !ok {
			t.Errorf("missing %s", k)
		} else if s.Value != v {
			t.Errorf("%s = %v, want %v", k, s.Value, v)
		}
	}
	// The standard collectors are there too.
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines", "go_memstats_alloc_bytes"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	// The registry is consistent (client_golang's own lint and checks).
	if n, err := testutil.GatherAndCount(m.Registry(), "georep_worker_state"); err != nil || n != 2*len(States) {
		t.Errorf("georep_worker_state: %d samples, %v", n, err)
	}
}

func TestBatchHistograms(t *testing.T) {
	m := New(func() []status.Report { return nil })
	m.ObserveBatch("s", 0.2, 1.5)
	m.ObserveBatch("s", 0.4, -1) // lag unknown: not observed
	got, _ := scrape(t, m)
	if c := got[`georep_batch_apply_seconds_count{session="s"}`].Value; c != 2 {
		t.Errorf("apply count %v", c)
	}
	if s := got[`georep_batch_apply_seconds_sum{session="s"}`].Value; s < 0.59 || s > 0.61 {
		t.Errorf("apply sum %v", s)
	}
	if c := got[`georep_change_lag_seconds_count{session="s"}`].Value; c != 1 {
		t.Errorf("lag count %v", c)
	}
	m.Forget("s")
	if got, _ = scrape(t, m); len(got) > 0 {
		if _, ok := got[`georep_batch_apply_seconds_count{session="s"}`]; ok {
			t.Error("a forgotten session's histogram is still served")
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{
		"# TYPE a gauge\na{x=1} 1\n",
		"# TYPE a gauge\na one\n",
		"# TYPE a gauge\na 1\n# TYPE a counter\na 2\n",
	} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}
