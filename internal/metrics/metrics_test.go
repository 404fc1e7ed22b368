package metrics

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/status"
)

func TestWriteParses(t *testing.T) {
	synced := time.Unix(1700000000, 500000000)
	cp := time.Unix(1699999999, 0)
	reports := []status.Report{
		{Session: "backup", Status: status.Active, LagSeconds: 1.5, Entry: 3, Data: 2, Meta: 1, FilesSynced: 10, BytesSynced: 4096,
			Failures: 1, JournalEvents: 100, JournalOverflows: 1, Crawls: 2, CrawlReasons: map[string]int64{status.CrawlFirstSync: 1, status.CrawlOverflow: 1}, StimeNS: synced.UnixNano(), LastSynced: &synced,
			CheckpointTime: &cp, CheckpointCompleted: true},
		{Session: `we"ird\name`, Status: status.Faulty},
	}
	var b bytes.Buffer
	if err := Write(&b, reports); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(&b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
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
	if len(got) != 1+2*len(families)+2*len(States)+2*len(status.CrawlReasonList) {
		t.Errorf("%d samples", len(got))
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{
		"georep_x 1\n",
		"# HELP a h\n# TYPE a gauge\na 1\n# HELP b h\n# TYPE b gauge\nb 1\na 2\n",
		"# HELP a h\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
		"# HELP a h\n# TYPE a counter\na -1\n",
		"# HELP a h\n# TYPE a gauge\na{x=1} 1\n",
		"# HELP a h\n# TYPE a gauge\na one\n",
	} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler(func() []status.Report { return []status.Report{{Session: "s", Status: status.Paused}} }))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("content type %q", ct)
	}
	body, _ := io.ReadAll(resp.Body)
	m, err := Parse(bytes.NewReader(body))
	if err != nil || m[`georep_worker_state{session="s",state="Paused"}`].Value != 1 {
		t.Errorf("%v\n%s", err, body)
	}
}
